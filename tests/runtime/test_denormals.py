import torch

from qla_sdk.runtime.denormals import flush_denormals, flushing_denormals


def _denormal_survives() -> bool:
    return torch.tensor(1e-39, dtype=torch.float32).mul(1.0).item() != 0.0


def test_flush_denormals_flushes_inside_and_restores_the_mode_after():
    torch.set_flush_denormal(False)
    assert _denormal_survives()
    with flush_denormals():
        assert flushing_denormals()
        assert not _denormal_survives()
    assert _denormal_survives()


def test_flush_denormals_leaves_a_mode_the_caller_set():
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            assert flushing_denormals()
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)


def test_flush_denormals_disabled_changes_nothing():
    torch.set_flush_denormal(False)
    with flush_denormals(enabled=False):
        assert _denormal_survives()


def test_flush_denormals_restores_the_mode_when_the_block_raises():
    torch.set_flush_denormal(False)
    try:
        with flush_denormals():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _denormal_survives()


def test_an_eager_forward_leaves_the_callers_mode(tiny_checkpoint):
    from qla_sdk.modeling import from_pretrained

    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval()
    ids = torch.randint(5, 50, (2, 12))
    torch.set_flush_denormal(False)
    with torch.inference_mode():
        model(ids, torch.ones_like(ids), length_config="8,4")
    assert _denormal_survives()
