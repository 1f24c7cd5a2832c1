"""Results files: the JSON with machine, versions, command and date, and the markdown table beside it."""

import json
import sys

import pytest

from qla_bench import publish_table


def test_publish_table_writes_both_files_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["benchmarks/example.py", "--steps", "3"])
    out = tmp_path / "example.json"
    markdown = publish_table(out, {"figure": 1.5}, ["mode", "GB"], [["in_turn", 10.25], ["summed", 19.65]])
    record = json.loads(out.read_text())
    assert record["figure"] == 1.5 and record["command"].endswith("benchmarks/example.py --steps 3")
    assert {"machine", "versions", "date"} <= set(record)
    table = out.with_suffix(".md").read_text()
    assert table.startswith("_Measured ") and "| in_turn | 10.25 |" in table and markdown in table
    assert "| summed | 19.65 |" in capsys.readouterr().out


def test_runs_land_beside_each_other_and_a_file_of_another_layout_is_refused(tmp_path):
    from qla_bench.report import runs_with

    out = tmp_path / "results.json"
    assert list(runs_with(out, "a", {"f1": 1.0})) == ["a"]  # no file yet
    out.write_text(json.dumps({"runs": {"a": {"f1": 1.0}, "b": {"f1": 2.0}}}))
    runs = runs_with(out, "a", {"f1": 3.0})
    assert list(runs) == ["a", "b"] and runs["a"]["f1"] == 3.0 and runs["b"] == {"f1": 2.0}
    assert runs["a"]["machine"]["cpu_model"] and runs["a"]["command"] and runs["a"]["date"]
    out.write_text(json.dumps({"student_f1": 62.21}))  # the layout before runs
    with pytest.raises(ValueError, match="holds no 'runs' mapping .* its figures would be lost"):
        runs_with(out, "a", {"f1": 3.0})
