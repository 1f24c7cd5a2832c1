"""Results files: the JSON with machine, versions, command and date, and the markdown table beside it."""

import json
import sys

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
