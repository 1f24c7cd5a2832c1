"""What the artifact loader refuses (tampered, truncated, added, linked or escaping files; edited manifests; TorchScript
without opt-in) and what a failed export leaves behind (the earlier artifact, intact and loadable)."""

import collections
import errno
import json
import os
import shutil

import pytest
import torch
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qla_sdk
from qla_sdk.backends.ipex import IPEXBackend
from qla_sdk.deploy import read_manifest
from qla_sdk.errors import CheckpointError, IntegrityError
from qla_sdk.io import OutputError, sha256_file

TOKENIZER_FILE = "tokenizer/tokenizer.json"
WEIGHTS = "model/model.safetensors"


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    return tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"))


@pytest.fixture(scope="module")
def pristine(classifier, tokenizer, tmp_path_factory):
    return export_fp32(classifier, tokenizer, tmp_path_factory.mktemp("pristine") / "art")


@pytest.fixture()
def artifact(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "art", symlinks=True)


def _edit(artifact, change):
    data = json.loads((artifact / "qla.json").read_text())
    change(data)
    (artifact / "qla.json").write_text(json.dumps(data))


def _fingerprint(folder):
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- file checks


@pytest.mark.parametrize("rel", [WEIGHTS, TOKENIZER_FILE, "model/config.json"])
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_file_is_refused_by_name(artifact, rel, keep):
    data = (artifact / rel).read_bytes()
    (artifact / rel).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IntegrityError, match=f"{rel} was modified"):
        qla_sdk.load(artifact)


@pytest.mark.parametrize("rel", ["model/pytorch_model.bin", "model/model.safetensors.index.json", "tokenizer/x.json"])
def test_unlisted_file_where_loaders_look_is_refused(artifact, rel):
    (artifact / rel).write_bytes(b"{}")
    with pytest.raises(IntegrityError, match=f"{rel} is not recorded in qla.json"):
        qla_sdk.load(artifact)


def test_unlisted_file_beside_the_manifest_is_only_reported(artifact):
    (artifact / "NOTES.md").write_text("deployed on Monday")
    with pytest.warns(UserWarning, match="NOTES.md"):
        predictor = qla_sdk.load(artifact)
    assert predictor.predict("fine")["label"] in ("negative", "positive")


def test_listed_file_replaced_by_a_symlink_out_of_the_folder_is_refused(artifact, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(artifact / WEIGHTS, outside)  # the very same bytes: only the link is wrong
    (artifact / WEIGHTS).unlink()
    (artifact / WEIGHTS).symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside the artifact"):
        qla_sdk.load(artifact)


def test_symlinked_tokenizer_folder_is_refused(artifact, tmp_path):
    shutil.move(artifact / "tokenizer", tmp_path / "tokenizer")
    (artifact / "tokenizer").symlink_to(tmp_path / "tokenizer", target_is_directory=True)
    with pytest.raises(CheckpointError, match="outside the artifact"):
        qla_sdk.load(artifact)


ESCAPES = ["/etc/passwd", "../x", "model/../../x", "..", "a\\..\\b", "", "x\x00y"]


@pytest.mark.parametrize("rel", ESCAPES)
def test_manifest_paths_cannot_leave_the_folder(artifact, rel):
    _edit(artifact, lambda d: d["files"].update({rel: "0" * 64}))
    with pytest.raises(CheckpointError, match="refused"):
        read_manifest(artifact)


@pytest.mark.parametrize("rel", ["../../etc/passwd", "/etc/passwd", "../tokenizer/tokenizer.json"])
def test_model_file_names_cannot_leave_the_model_folder(artifact, rel):
    _edit(artifact, lambda d: d["model"].update(files=[rel]))
    with pytest.raises(CheckpointError, match="refused"):
        read_manifest(artifact)


@pytest.mark.parametrize("seq_lens", [["../../x"], [0], [True], "64", []])
def test_graph_lengths_are_positive_integers(artifact, seq_lens):
    # Loaders build file names from them (seq64.xml): a string could point anywhere.
    _edit(artifact, lambda d: d["model"].update(seq_lens=seq_lens))
    with pytest.raises(CheckpointError, match="model.seq_lens"):
        read_manifest(artifact)


@pytest.mark.parametrize("backend", ["openvino", "inductor"])
def test_manifest_naming_another_backend_is_refused_clearly(artifact, backend):
    _edit(artifact, lambda d: d.update(backend=backend))
    with pytest.raises(CheckpointError, match=f"its {backend} model cannot be loaded"):
        qla_sdk.load(artifact)


# ---------------------------------------------------------------------------------------------- edited manifests

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
KEYS = ["task", "labels", "length_config", "max_length", "doc_stride", "backend", "model", "files", "format_version"]
RAN = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request):
    yield
    if getattr(request.config, "cache", None) is not None:
        request.config.cache.set(f"qla/hypothesis/{__name__}", dict(RAN))
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{__name__}: {sum(RAN.values())} generated examples {dict(RAN)}")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key=st.sampled_from(KEYS + [f"model.{k}" for k in ("files", "seq_lens")]), value=JSON, drop=st.booleans())
def test_an_edited_manifest_loads_or_is_refused_clearly(pristine, tmp_path_factory, key, value, drop):
    RAN["edited manifests"] += 1
    artifact = shutil.copytree(pristine, tmp_path_factory.mktemp("edited") / "art")
    data = json.loads((artifact / "qla.json").read_text())
    target, name = (data["model"], key[6:]) if key.startswith("model.") else (data, key)
    if drop:
        target.pop(name, None)
    else:
        target[name] = value
    (artifact / "qla.json").write_text(json.dumps(data))
    try:
        predictor = qla_sdk.load(artifact)
    except (ValueError, TypeError) as exc:  # CheckpointError / ConfigError are ValueErrors
        assert str(exc)
        return
    try:
        result = predictor.predict("a fine film")
    except (ValueError, TypeError):
        return
    assert 0.0 <= result["score"] <= 1.0


# ---------------------------------------------------------------------------------------------- TorchScript


def _as_ipex_artifact(artifact):
    script = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(script, str(artifact / "model" / "seq64.torchscript"))

    def change(data):
        data["backend"] = "ipex"
        data["model"] = {"seq_lens": [64], "files": ["seq64.torchscript"]}
        data["files"]["model/seq64.torchscript"] = sha256_file(artifact / "model" / "seq64.torchscript")

    _edit(artifact, change)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_artifact_is_refused_unless_trusted(artifact, monkeypatch):
    _as_ipex_artifact(artifact)
    opened = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append(a))  # a spy: nothing may reach it
    with pytest.raises(CheckpointError, match="trust_torchscript=True"):
        qla_sdk.load(artifact)
    with pytest.raises(CheckpointError, match="trust_torchscript=True"):
        IPEXBackend().load(artifact / "model", {"seq_lens": [64]})
    assert not opened
    # Trusted, it goes on to the IPEX runtime (absent here, so a clear error about IPEX instead).
    if not _has_ipex():
        with pytest.raises(Exception, match="intel-extension-for-pytorch"):
            qla_sdk.load(artifact, trust_torchscript=True)
        assert not opened


def _has_ipex() -> bool:
    try:
        import intel_extension_for_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- failed exports


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_weights_keeps_the_earlier_artifact(artifact, classifier, tokenizer, monkeypatch):
    import qla_sdk.modeling.checkpoint as checkpoint

    before = _fingerprint(artifact)

    def half_then_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)  # some bytes made it before the disk filled
        _disk_full()

    monkeypatch.setattr(checkpoint, "save_file", half_then_full)
    with pytest.raises(OutputError, match=f"cannot write {artifact}: No space left on device") as err:
        export_fp32(classifier, tokenizer, artifact)
    assert "writable folder with free space" in str(err.value)
    assert _fingerprint(artifact) == before and sorted(p.name for p in artifact.parent.iterdir()) == ["art"]
    assert qla_sdk.load(artifact).predict("fine")["label"] in ("negative", "positive")


def test_disk_full_while_writing_the_tokenizer_keeps_the_earlier_artifact(artifact, classifier, tokenizer):
    before = _fingerprint(artifact)

    class FillsTheDisk:
        pad_token_id = tokenizer.pad_token_id

        def __len__(self):  # export checks the vocabulary against the model's embeddings
            return len(tokenizer)

        def save_pretrained(self, folder):
            tokenizer.save_pretrained(folder)
            _disk_full()

    with pytest.raises(OutputError, match="No space left on device"):
        export_fp32(classifier, FillsTheDisk(), artifact)
    assert _fingerprint(artifact) == before and sorted(p.name for p in artifact.parent.iterdir()) == ["art"]
    qla_sdk.load(artifact)


@pytest.mark.parametrize("failing", ["move aside", "move in"])
def test_failed_rename_puts_the_earlier_artifact_back(artifact, classifier, tokenizer, monkeypatch, failing):
    import qla_sdk.io as io

    before, real_replace = _fingerprint(artifact), os.replace

    def replace(src, dst):
        moving_in = str(src).endswith(".partial") and os.fspath(dst) == str(artifact)
        moving_aside = os.fspath(src) == str(artifact)
        if (failing == "move in" and moving_in) or (failing == "move aside" and moving_aside):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(OutputError, match=f"cannot write {artifact}: Permission denied"):
        export_fp32(classifier, tokenizer, artifact)
    monkeypatch.undo()
    assert _fingerprint(artifact) == before and sorted(p.name for p in artifact.parent.iterdir()) == ["art"]
    qla_sdk.load(artifact)


def test_unwritable_parent_is_a_clear_error(artifact, classifier, tokenizer, monkeypatch):
    import qla_sdk.io as io

    before = _fingerprint(artifact)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(io.tempfile, "mkdtemp", refuse)  # what mkdir in a 0o500 folder does for a non-root user
    with pytest.raises(OutputError, match=f"cannot write {artifact}: Permission denied"):
        export_fp32(classifier, tokenizer, artifact)
    assert _fingerprint(artifact) == before
