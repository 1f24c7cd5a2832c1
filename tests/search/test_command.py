"""`qla search` end to end on tiny checkpoints and the tiny SST-2 / SQuAD fixtures."""

import csv
import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from qla_sdk.cli import main
from qla_sdk.data import classification_features, load_classification, load_tokenizer
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.search.pareto import dominates

FIXTURES = Path(__file__).parent.parent / "fixtures"
FAST = ["--iterations", "2", "--mutations", "4", "--crossovers", "4", "--constant-rate", "3", "--no-progress"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls on a shared, busy machine run far faster on one thread than fighting over two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_vocab(path: Path, texts: list[str], size: int = 120) -> Path:
    words = Counter(w for t in texts for w in t.lower().replace("?", " ").replace(".", " ").split())
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for w, _ in words.most_common(size - len(vocab))]
    path.write_text("\n".join(vocab) + "\n")
    return path


def lat_checkpoint(folder: Path, task: str, length_adaptive: bool = True) -> Path:
    meta = {"task": task, "labels": ["0", "1"] if task == "text-classification" else None}
    if length_adaptive:
        meta["length_adaptive"] = {"length_drop_prob": 0.2, "layer_drop_prob": 0.2, "num_sandwich": 2}
    (folder / "qla.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def sst(tiny_checkpoint, tmp_path_factory):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    root = tmp_path_factory.mktemp("search-sst")
    model = root / "model"
    model.mkdir()
    for file in folder.iterdir():
        (model / file.name).write_bytes(file.read_bytes())
    lat_checkpoint(model, "text-classification")
    data = FIXTURES / "sst2_tiny.tsv"
    vocab = write_vocab(root / "vocab.txt", [line.split("\t")[0] for line in data.read_text().splitlines()[1:]])
    return {"model": model, "data": data, "vocab": vocab}


def search(sst, output, *extra):
    argv = ["search", "--model", str(sst["model"]), "--data", str(sst["data"]), "--tokenizer", str(sst["vocab"])]
    return main([*argv, "--output", str(output), "--seq-len", "24", *FAST, *extra])


def padded_accuracy(sst, length_config: LengthConfig, seq_len: int = 24) -> float:
    """The test's own evaluation: every input padded to seq_len, one batch."""
    model = from_pretrained(sst["model"]).eval()
    features = classification_features(
        load_classification(sst["data"], label_names=["0", "1"]), load_tokenizer(sst["vocab"]), max_length=seq_len
    )
    ids = torch.zeros(len(features), seq_len, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate(features.input_ids):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    with torch.inference_mode():
        predictions = model(ids, mask, length_config=length_config).argmax(-1)
    return (predictions == torch.tensor(features.labels)).float().mean().item()


@pytest.fixture(scope="module")
def searched(sst, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "search"
    copy = output.parent / "best-model"
    assert (
        search(
            sst,
            output,
            "--max-macs",
            "92%",
            "--measure-latency",
            "--latency-runs",
            "1",
            "--latency-warmup",
            "0",
            "--write-to",
            str(copy),
        )
        == 0
    )
    return output, copy


def test_outputs_hold_a_consistent_front_and_the_best_gene_within_budget(searched):
    output, _ = searched
    front = json.loads((output / "front.json").read_text())
    best = json.loads((output / "best.json").read_text())
    assert {p.name for p in output.iterdir()} >= {"front.json", "front.csv", "scored.csv", "best.json", "search.png"}
    scored = list(csv.DictReader((output / "scored.csv").open()))
    points = [(float(r["macs"]), float(r["metric"])) for r in scored]
    front_points = [(r["macs"], r["metric"]) for r in front["front"]]
    assert all(not any(dominates(q, p) for q in points) for p in front_points)
    assert len(scored) >= len(front["constant_rate"]) > 2
    assert best["best"]["macs"] <= front["budget"]["max_macs"] == pytest.approx(0.92 * front["full"]["macs"])
    assert all(r["latency_ms"] > 0 for r in front["front"])  # --measure-latency timed the front
    rows = list(csv.DictReader((output / "front.csv").open()))
    assert [r["gene"] for r in rows] == [" ".join(map(str, r["gene"])) for r in front["front"]]
    assert (output / "search.png").read_bytes()[:4] == b"\x89PNG"


def test_fitness_is_the_dev_metric_of_the_padded_sub_model(sst, searched):
    output, _ = searched
    front = json.loads((output / "front.json").read_text())
    for row in [front["full"], *front["front"]]:
        assert row["metric"] == pytest.approx(padded_accuracy(sst, LengthConfig(tuple(row["length_config"]))))


def test_write_to_saves_a_copy_running_the_best_gene(sst, searched):
    output, copy = searched
    best = json.loads((output / "best.json").read_text())
    model = from_pretrained(copy)
    assert model.length_config == LengthConfig.parse(best["length_config"])
    meta = json.loads((copy / "qla.json").read_text())
    assert meta["length_adaptive"]["length_drop_prob"] == 0.2  # the LAT record travels with the copy
    assert meta["search"]["value"] == best["best"]["metric"]
    assert from_pretrained(sst["model"]).length_config is None  # the input model is untouched


def test_resume_continues_to_the_uninterrupted_result(sst, tmp_path):
    longer = ["--iterations", "4"]
    assert search(sst, tmp_path / "straight", *longer) == 0
    assert search(sst, tmp_path / "resumed") == 0  # 2 iterations, then stopped
    assert search(sst, tmp_path / "resumed", *longer, "--resume") == 0

    def front(name):
        doc = json.loads((tmp_path / name / "front.json").read_text())
        return doc["front"], doc["best"], doc["search"]

    assert front("straight") == front("resumed")
    resumed, straight = (json.loads((tmp_path / name / "front.json").read_text()) for name in ("resumed", "straight"))
    assert resumed["resumed"] and not straight["resumed"] and resumed["search"]["completed_iterations"] == 4


def test_ratio_genes_average_macs_over_real_lengths(sst, tmp_path):
    assert search(sst, tmp_path / "ratio", "--ratio", "--max-macs", "95%") == 0
    doc = json.loads((tmp_path / "ratio" / "front.json").read_text())
    assert doc["genes"] == "ratio" and doc["full"]["length_config"] == [1.0, 1.0]
    assert all(isinstance(v, float) and 0 < v <= 1 for r in doc["front"] for v in r["length_config"])
    assert 3 < doc["macs_seq_len"] < 24  # unpadded: the mean real length, not the padded one


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-macs", "10%"], "below the smallest sub-model"),
        (["--max-macs", "150%"], "above the full-length model"),
        (["--max-macs", "lots"], "is not a number"),
        (["--metric", "bleu"], "'bleu' is not a text-classification metric"),
        (["--max-macs", "90%", "--max-latency-ms", "3"], "not both"),
        (["--iterations", "-1"], "iterations=-1"),
        (["--device", "nonsense"], "is not a torch device"),
        (["--latency-precision", "bf16"], "applies to latency_backend openvino only"),
        (["--latency-int8"], "latency_int8 applies to latency_backend openvino only"),
        (["--max-metric-drop", "-1"], "max_metric_drop=-1.0: must be >= 0"),
    ],
)
def test_bad_input_is_a_clear_error(sst, tmp_path, capsys, extra, message):
    assert search(sst, tmp_path / "bad", *extra) == 2
    assert message in capsys.readouterr().err


def test_a_reference_model_sets_where_the_metric_drop_counts_from(sst, tmp_path):
    copy = tmp_path / "best"
    drop = ["--max-metric-drop", "0", "--reference-model", str(sst["model"]), "--write-to", str(copy)]
    assert search(sst, tmp_path / "out", *drop) == 0
    front = json.loads((tmp_path / "out" / "front.json").read_text())
    # the reference here is the searched model itself, so it scores what the full length scores
    assert front["reference"] == {"model": str(sst["model"]), "metric": front["full"]["metric"]}
    assert front["budget"]["reference_metric"] == front["full"]["metric"]
    assert front["best"]["metric"] >= front["full"]["metric"]
    assert json.loads((copy / "qla.json").read_text())["search"]["reference"] == front["reference"]


def test_no_gene_within_the_drop_of_the_reference_is_a_clear_error(sst, tmp_path, capsys, monkeypatch):
    import qla_sdk.search.job as job

    monkeypatch.setattr(job, "_reference_metric", lambda *args: 2.0)  # above any accuracy
    extra = ["--max-metric-drop", "0.1", "--reference-model", str(sst["model"]), "--write-to", str(tmp_path / "m")]
    assert search(sst, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert "no gene scores within 0.1 of the reference model's accuracy (2.0000" in err
    assert "allow a larger max_metric_drop" in err
    assert not (tmp_path / "m").exists()
    monkeypatch.setattr(job, "_reference_metric", lambda *args: 0.05)  # now any gene keeps a drop of 0.1
    assert search(sst, tmp_path / "out", "--resume", "--max-metric-drop", "0.1", "--reference-model",
                  str(sst["model"]), "--write-to", str(tmp_path / "m")) == 0  # fmt: skip


def test_the_search_length_defaults_to_the_length_the_model_was_trained_at(sst, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(sst["model"], model)
    meta = json.loads((model / "qla.json").read_text())
    (model / "qla.json").write_text(json.dumps({**meta, "max_length": 16}))
    argv = ["search", "--model", str(model), "--data", str(sst["data"]), "--tokenizer", str(sst["vocab"]), *FAST]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "front.json").read_text())["seq_len"] == 16  # not the default 128


def test_a_search_resumed_without_seq_len_goes_on_at_its_own_length(sst, tmp_path):
    """A search started at another length than the model's recorded max_length (e.g. before --seq-len defaulted to
    it) resumes at its own, not refused as changed."""
    model = tmp_path / "model"
    shutil.copytree(sst["model"], model)
    meta = json.loads((model / "qla.json").read_text())
    (model / "qla.json").write_text(json.dumps({**meta, "max_length": 16}))
    argv = ["search", "--model", str(model), "--data", str(sst["data"]), "--tokenizer", str(sst["vocab"]), *FAST]
    assert main([*argv, "--output", str(tmp_path / "out"), "--seq-len", "24"]) == 0
    assert main([*argv, "--output", str(tmp_path / "out"), "--resume", "--iterations", "2"]) == 0
    assert json.loads((tmp_path / "out" / "front.json").read_text())["seq_len"] == 24


def test_token_genes_on_inputs_mostly_padding_are_warned(sst, tmp_path):
    """Token counts of inputs padded far past their real length save MACs of padding only (ratios do not)."""
    with pytest.warns(UserWarning, match=r"padded to 64, and the dev rows average \d+ real tokens: .* --ratio"):
        assert search(sst, tmp_path / "tokens", "--seq-len", "64") == 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="token-count genes")
        assert search(sst, tmp_path / "ratio", "--seq-len", "64", "--ratio") == 0


def test_question_answering_data_for_a_classifier_is_named(sst, tmp_path, capsys):
    argv = ["search", "--model", str(sst["model"]), "--data", str(FIXTURES / "squad_tiny.json"), *FAST]
    assert main([*argv, "--tokenizer", str(sst["vocab"]), "--output", str(tmp_path / "out")]) == 2
    assert "looks like question-answering data, and the model is a text-classification model" in (
        capsys.readouterr().err
    )


def test_a_min_length_past_the_search_length_is_named(sst, tmp_path, capsys):
    assert search(sst, tmp_path / "out", "--min-length", "500") == 2
    assert "min_length 500 (--min-length) is more than a layer can keep here: 24" in capsys.readouterr().err


def test_a_model_trained_for_another_task_is_not_searched_with_a_random_head(sst, tmp_path, capsys):
    assert search(sst, tmp_path / "qa", "--task", "question-answering") == 2
    assert "has no trained question-answering head (text-classification in its qla.json)" in capsys.readouterr().err


def test_a_classifiers_drop_is_a_fraction_and_one_meant_in_points_is_named(sst, tmp_path, capsys):
    """Accuracy runs 0-1: a drop of 1 (one point, as SQuAD's F1 reads it) would let every gene through."""
    assert search(sst, tmp_path / "one", "--max-metric-drop", "1") == 2
    assert "max_metric_drop 1 on accuracy, a fraction, is 100 points: any gene keeps it; for 1 point give 0.01" in (
        capsys.readouterr().err
    )
    with pytest.warns(UserWarning, match=r"max_metric_drop 0.5 on accuracy, a fraction, is 50 points; for 0.5 points"):
        assert search(sst, tmp_path / "half", "--max-metric-drop", "0.5") == 0


def test_confirm_rescores_the_chosen_gene_on_every_dev_example(sst, tmp_path):
    """A subset picks candidates; the kept gene is the cheapest of the front, from the subset's choice up, whose
    metric on every dev example stays within the drop."""
    copy = tmp_path / "best"
    extra = ["--subset", "5", "--max-metric-drop", "0", "--confirm", "--write-to", str(copy)]
    assert search(sst, tmp_path / "out", *extra) == 0
    front = json.loads((tmp_path / "out" / "front.json").read_text())
    confirmed = front["confirmed"]
    full_all = padded_accuracy(sst, LengthConfig(tuple(front["full"]["length_config"])))
    assert confirmed["dev_rows"] == 10 and confirmed["floor"] == pytest.approx(full_all)
    by_gene = {tuple(r["gene"]): r for r in [*front["front"], front["full"]]}
    for tried in confirmed["tried"]:  # scored on all 10 rows, not on the subset of 5
        config = LengthConfig(tuple(by_gene[tuple(tried["gene"])]["length_config"]))
        assert tried["metric"] == pytest.approx(padded_accuracy(sst, config))
    assert [t["metric"] >= confirmed["floor"] for t in confirmed["tried"]] == [False] * (
        len(confirmed["tried"]) - 1
    ) + [True]
    assert front["best"]["gene"] == confirmed["kept"]["gene"]
    assert list(from_pretrained(copy).length_config.lengths) == front["best"]["length_config"]
    # every metric of the kept gene, as the written copy scores on every dev example (a recipe reuses them)
    written = from_pretrained(copy).length_config
    assert confirmed["kept"]["scores"]["accuracy"] == pytest.approx(padded_accuracy(sst, written))
    # best.json and the copy's record say which rows each figure is on: the subset's 5, and all 10 when confirmed
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["dev_rows"] == 5 and best["confirmed"]["dev_rows"] == 10
    assert best["confirmed"]["metric"] == confirmed["kept"]["metric"]
    record = json.loads((copy / "qla.json").read_text())["search"]
    assert (record["value"], record["dev_rows"]) == (confirmed["kept"]["metric"], 10)
    assert (record["subset_value"], record["subset_dev_rows"]) == (front["best"]["metric"], 5)


def test_confirm_steps_up_the_front_until_a_gene_keeps_the_floor(sst, tmp_path, monkeypatch):
    import qla_sdk.search.job as job

    subset_scorer = job._scorer

    def scorer(model, task, data, *args):  # on every row, a metric that grows with the tokens kept
        if len(data["features"]) < 10:
            return subset_scorer(model, task, data, *args)
        return lambda gene: {"accuracy": sum(gene) / 48}

    monkeypatch.setattr(job, "_scorer", scorer)
    # the subset's reference lets the cheapest gene through; every row's demands 0.9 (1.0 less the drop)
    monkeypatch.setattr(job, "_reference_metric", lambda args, task, data, *rest: float(len(data["features"]) == 10))
    extra = ["--subset", "5", "--max-metric-drop", "0.1", "--confirm", "--reference-model", str(sst["model"])]
    assert search(sst, tmp_path / "out", *extra) == 0
    front = json.loads((tmp_path / "out" / "front.json").read_text())
    tried = front["confirmed"]["tried"]
    assert [t["metric"] for t in tried] == sorted(t["metric"] for t in tried)  # cheapest first
    assert all(t["metric"] < 0.9 for t in tried[:-1]) and tried[-1]["metric"] >= 0.9
    costs = {tuple(r["gene"]): r["macs"] for r in [*front["front"], front["full"]]}
    cheaper = [r for r in front["front"] if r["macs"] < costs[tuple(tried[-1]["gene"])]]
    assert all(sum(r["gene"]) / 48 < 0.9 for r in cheaper)  # no cheaper front gene would have kept it
    assert front["best"]["gene"] == tried[-1]["gene"]


def test_confirm_with_measured_latency_tries_the_fastest_genes_first(sst, tmp_path, monkeypatch):
    """MACs miss what a runtime pays for a layer that prunes at all: with timings, the ladder runs by them."""
    import qla_sdk.search.job as job

    subset_scorer = job._scorer

    def scorer(model, task, data, *args):
        if len(data["features"]) < 10:
            return subset_scorer(model, task, data, *args)
        return lambda gene: {"accuracy": 0.0 if sum(gene) < 48 else 1.0}  # on every row only the full length holds

    monkeypatch.setattr(job, "_scorer", scorer)
    monkeypatch.setattr(job, "_reference_metric", lambda args, task, data, *rest: float(len(data["features"]) == 10))
    extra = ["--subset", "5", "--max-metric-drop", "0.1", "--confirm", "--reference-model", str(sst["model"])]
    timing = ["--measure-latency", "--latency-runs", "1", "--latency-warmup", "0"]
    assert search(sst, tmp_path / "out", *extra, *timing) == 0
    confirmed = json.loads((tmp_path / "out" / "front.json").read_text())["confirmed"]
    assert confirmed["order"] == "latency_ms, timed side by side"
    times = [t["latency_ms"] for t in confirmed["tried"]]
    assert all(t > 0 for t in times) and times == sorted(times)
    assert confirmed["kept"]["gene"] == [24, 24]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--confirm"], "give max_metric_drop too"),
        (["--reference-model", "REF"], "give --max-metric-drop too"),
        (["--max-metric-drop", "0.1", "--reference-model", "nowhere"], "is not a checkpoint folder"),
    ],
)
def test_bad_reference_model_is_a_clear_error(sst, tmp_path, capsys, extra, message):
    extra = [str(sst["model"]) if e == "REF" else str(tmp_path / e) if e == "nowhere" else e for e in extra]
    assert search(sst, tmp_path / "bad", *extra) == 2
    assert message in capsys.readouterr().err


def test_existing_search_needs_resume_and_write_to_needs_a_new_folder(sst, tmp_path, capsys):
    assert search(sst, tmp_path / "out", "--iterations", "0") == 0
    assert search(sst, tmp_path / "out") == 2
    assert "pass --resume" in capsys.readouterr().err
    assert search(sst, tmp_path / "out", "--resume", "--metric", "f1") == 2  # scores of another metric
    assert "context.metric was 'accuracy', now 'f1'" in capsys.readouterr().err
    assert search(sst, tmp_path / "other", "--write-to", str(sst["model"])) == 2
    assert "never modifies a model in place" in capsys.readouterr().err


def test_outputs_that_are_files_are_refused_before_the_search(sst, tmp_path, capsys, monkeypatch):
    import qla_sdk.modeling

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(qla_sdk.modeling, "from_pretrained", no_loading)
    (tmp_path / "a-file").write_text("kept")
    users = tmp_path / "users"
    users.mkdir()
    (users / "best.json").write_text("the user's")
    cases = [
        ((tmp_path / "a-file",), "--output {} is a file: give a folder"),
        ((tmp_path / "a-file" / "out",), "lies under"),
        ((tmp_path / "out", "--write-to", str(tmp_path / "a-file")), "--write-to {} is a file: give a folder"),
        ((users,), f"--output {users} holds files that no search wrote (best.json)"),
        ((tmp_path / "out", "--write-to", str(tmp_path / "out")), "is the --output folder"),
    ]
    for args, message in cases:
        assert search(sst, *args) == 2
        assert message.format(tmp_path / "a-file") in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "kept" and not (tmp_path / "out").exists()
    assert (users / "best.json").read_text() == "the user's"


def test_a_killed_writes_leftover_is_no_users_file_and_a_classifier_takes_no_stride(sst, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".front.json.k1ll3d.tmp").write_text("{")  # what an atomic write killed halfway leaves
    assert search(sst, out, "--iterations", "0") == 0
    assert search(sst, tmp_path / "other", "--doc-stride", "64") == 2
    assert "the stride only splits question-answering contexts" in capsys.readouterr().err


def test_a_resumed_search_on_edited_data_is_refused(sst, tmp_path, capsys):
    """The data file keeps its name; its labels change: the saved scores are of another dev set."""
    data = tmp_path / "dev.tsv"
    data.write_text(sst["data"].read_text())
    edited = {**sst, "data": data}
    assert search(edited, tmp_path / "out", "--iterations", "1") == 0
    header, *rows = data.read_text().splitlines()
    flipped = [f"{text}\t{1 - int(label)}" for text, label in (row.rsplit("\t", 1) for row in rows)]
    data.write_text("\n".join([header, *flipped]) + "\n")
    assert search(edited, tmp_path / "out", "--resume") == 2
    assert "data_digest" in capsys.readouterr().err


def test_model_without_length_adaptive_training_warns(sst, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for file in sst["model"].iterdir():
        (plain / file.name).write_bytes(file.read_bytes())
    lat_checkpoint(plain, "text-classification", length_adaptive=False)
    argv = ["search", "--model", str(plain), "--data", str(sst["data"]), "--tokenizer", str(sst["vocab"])]
    with pytest.warns(UserWarning, match="not length-adaptively trained"):
        assert main([*argv, "--output", str(tmp_path / "o"), "--seq-len", "24", *FAST, "--iterations", "0"]) == 0


@pytest.mark.parametrize(("flag", "whole"), [((), 1), (("--full-length-layers", "0"), 0)])
def test_the_first_layers_lat_kept_whole_stay_whole_in_the_initial_genes(sst, tmp_path, flag, whole):
    model = tmp_path / "whole"
    shutil.copytree(sst["model"], model)
    meta = json.loads((model / "qla.json").read_text())
    meta["length_adaptive"]["full_length_layers"] = 1
    (model / "qla.json").write_text(json.dumps(meta))
    argv = ["search", "--model", str(model), "--data", str(sst["data"]), "--tokenizer", str(sst["vocab"])]
    assert main([*argv, "--output", str(tmp_path / "o"), "--seq-len", "24", *FAST, "--iterations", "0", *flag]) == 0
    front = json.loads((tmp_path / "o" / "front.json").read_text())
    initial = [front["smallest"]["gene"], *(c["gene"] for c in front["constant_rate"])]
    assert all(gene[0] == 24 for gene in initial) == bool(whole)


def test_question_answering_search_scores_f1(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    lat_checkpoint(folder, "question-answering")
    data = FIXTURES / "squad_tiny.json"
    squad = json.loads(data.read_text())
    texts = [p["context"] + " " + q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]
    vocab = write_vocab(tmp_path / "vocab.txt", texts)
    argv = ["search", "--model", str(folder), "--data", str(data), "--tokenizer", str(vocab)]
    output = tmp_path / "qa"
    assert main([*argv, "--output", str(output), "--seq-len", "48", "--doc-stride", "16", *FAST]) == 0
    doc = json.loads((output / "front.json").read_text())
    assert doc["metric"] == "f1" and all(0 <= r["metric"] <= 100 for r in doc["front"])

    # windows as qla export cuts them: the default stride fits the length, a stride above half of it is refused
    assert main([*argv, "--output", str(tmp_path / "qa2"), "--seq-len", "48", *FAST, "--iterations", "0"]) == 0
    state = json.loads((tmp_path / "qa2" / "search_state.json").read_text())
    assert state["search"]["context"]["doc_stride"] == 24
    assert main([*argv, "--output", str(tmp_path / "qa3"), "--seq-len", "48", "--doc-stride", "30", *FAST]) == 2


# ---------------------------------------------------------------------------------------- the dev set's columns


@pytest.fixture(scope="module")
def reviews(sst, tmp_path_factory):
    """A dev file whose detected text column ("sentence", by name) holds one word a row, and whose "review" column
    holds the SST sentences: the mean token count of the scored rows tells which column the search read. ``record``
    is the model recording that its training read "review" (as qla finetune / lat-train write it)."""
    root = tmp_path_factory.mktemp("reviews")
    rows = [line.rsplit("\t", 1) for line in sst["data"].read_text().splitlines()[1:]]
    data = root / "reviews.tsv"
    data.write_text("sentence\treview\tlabel\n" + "".join(f"ok\t{text}\t{label}\n" for text, label in rows))
    record = root / "record"
    shutil.copytree(sst["model"], record)
    meta = json.loads((record / "qla.json").read_text())
    (record / "qla.json").write_text(json.dumps({**meta, "text_columns": ["review"], "label_column": "label"}))
    return {"data": data, "record": record, "length": {c: mean_length(sst, data, c) for c in ("sentence", "review")}}


def mean_length(sst, data: Path, column: str, seq_len: int = 24) -> float:
    features = classification_features(
        load_classification(data, "validation", [column], label_names=["0", "1"]),
        load_tokenizer(sst["vocab"]),
        max_length=seq_len,
    )
    return round(sum(features.lengths) / len(features), 2)


def search_reviews(sst, reviews, model, output, *extra):
    job = {**sst, "model": model, "data": reviews["data"]}
    return search(job, output, "--iterations", "0", *extra)


def test_a_classifiers_dev_set_is_read_in_the_columns_training_read(sst, reviews, tmp_path, capsys, monkeypatch):
    """Detection picks "sentence" by name; the model's qla.json records "review": genes are scored on it, in the
    search and in --confirm's rescoring of every row (the search scored detection's pick, silently)."""
    import qla_sdk.data

    assert reviews["length"]["sentence"] < reviews["length"]["review"]
    loaded, load = [], qla_sdk.data.load_classification

    def spy(*args, **kwargs):
        data = load(*args, **kwargs)
        loaded.append(data.text_columns)
        return data

    monkeypatch.setattr(qla_sdk.data, "load_classification", spy)
    import qla_sdk.search.job as job

    monkeypatch.setattr(job, "_reference_metric", lambda *args: 0.0)  # any gene keeps the drop, on the subset or all
    confirm = ["--subset", "5", "--max-metric-drop", "0.1", "--confirm"]
    assert search_reviews(sst, reviews, reviews["record"], tmp_path / "out", *confirm) == 0
    front = json.loads((tmp_path / "out" / "front.json").read_text())
    assert front["dev_mean_length"] > reviews["length"]["sentence"]  # every "sentence" row is [CLS] ok [SEP]
    assert loaded == [("review",), ("review",)]  # the subset's rows, then every row for --confirm
    assert "warning" not in capsys.readouterr().err


def test_given_columns_win_with_a_warning_where_unlike_the_record(sst, reviews, tmp_path, capsys):
    assert search_reviews(sst, reviews, reviews["record"], tmp_path / "a", "--text-columns", "sentence") == 0
    assert json.loads((tmp_path / "a" / "front.json").read_text())["dev_mean_length"] == reviews["length"]["sentence"]
    err = capsys.readouterr().err
    assert f"qla search: warning: --text-columns 'sentence': {reviews['record']} was trained on 'review'" in err
    assert "--label-column" not in err
    # a model recording nothing: the flags are read, without a warning
    assert search_reviews(sst, reviews, sst["model"], tmp_path / "b", "--text-columns", "review") == 0
    assert json.loads((tmp_path / "b" / "front.json").read_text())["dev_mean_length"] == reviews["length"]["review"]
    assert "warning: --text-columns" not in capsys.readouterr().err


def test_the_recorded_label_column_is_read_and_one_the_data_lacks_is_named(sst, reviews, tmp_path, capsys):
    verdicts = tmp_path / "verdicts.tsv"
    verdicts.write_text(reviews["data"].read_text().replace("\tlabel\n", "\tverdict\n", 1))
    model = shutil.copytree(reviews["record"], tmp_path / "model")
    meta = json.loads((model / "qla.json").read_text())
    (model / "qla.json").write_text(json.dumps({**meta, "label_column": "verdict"}))
    job = {**sst, "model": model, "data": verdicts}
    assert search(job, tmp_path / "a", "--iterations", "0") == 0  # detection would look for "label"
    assert search(job, tmp_path / "b", "--iterations", "0", "--label-column", "sentence") == 2
    err = capsys.readouterr().err
    assert f"warning: --label-column 'sentence': {model} was trained on 'verdict'" in err
    assert search({**job, "data": reviews["data"]}, tmp_path / "c", "--iterations", "0") == 2
    err = capsys.readouterr().err
    assert f"{reviews['data']} has no column 'verdict', the label column {model} was trained on" in err
    assert "--label-column <name>" in err


def test_column_flags_for_a_question_answering_model_are_refused(tiny_checkpoint, sst, tmp_path, capsys):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    lat_checkpoint(folder, "question-answering")
    argv = ["search", "--model", str(folder), "--data", str(FIXTURES / "squad_tiny.json"), "--output", str(tmp_path)]
    assert main([*argv, "--text-columns", "question"]) == 2
    err = capsys.readouterr().err
    assert "--text-columns / --label-column pick classification columns" in err and "drop them" in err
