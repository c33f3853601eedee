"""`python -m examples.paper growth`: the growth spread of the paper's nets, per initialization."""

import json

from examples.paper import __main__ as paper_cli
from examples.paper import growth


def test_growth_spread_on_offline_digits(tmp_path, capsys):
    out = tmp_path / "growth.json"
    code = paper_cli.main(["growth", "--nets", "a", "--inits", "he_normal", "normed-local",
                           "normed-all", "--source", "sklearn", "--n-train", "256",
                           "--n-test", "32", "--probe-size", "64", "--output", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| init | net (a) |" in text and "| normed-all |" in text
    rows = {r["init"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"he_normal", "normed-local", "normed-all"}
    # The probe rule equalizes the growth on its own batch (tol 1.5); the others are not rescaled.
    assert rows["normed-all"]["spread_probe"] <= 1.5 + 1e-6
    assert rows["normed-all"]["scales"] is not None
    assert rows["he_normal"]["scales"] is None and rows["normed-local"]["scales"] is None
    for r in rows.values():
        assert r["spread_other"] >= 1.0 and len(r["growth_other"]) == len(r["layers"]) == 4


def test_format_table_marks_missing_cells():
    rows = [{"net": "a", "init": "he", "spread_other": 12.345},
            {"net": "b", "init": "normed", "spread_other": 1.1}]
    assert growth.format_table(rows).splitlines()[2:] == ["| he | 12.3 | - |",
                                                          "| normed | - | 1.1 |"]
