"""Smoke benchmark: a ``--quick`` bench through the CLI. Checks the table, not the timings."""

import json
import math

import pytest

from keras_normed import bench, cli

pytest.importorskip("pytest_benchmark")


def test_quick_bench_through_cli(benchmark, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--jit", "off", "--markdown", "--output", str(out)]
    code = benchmark.pedantic(cli.main, args=(argv,), rounds=1, iterations=1)
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = result["rows"]

    q = bench.QUICK
    (n,) = q["sizes"]
    h, w, c = q["conv_shape"]
    dense_blocks = [16, n]  # QUICK["blocks"] is ("16", "n")
    expected = {("dense", "dense", None)}
    expected |= {("dense", impl, b) for impl in ("circulant", "materialise") for b in dense_blocks}
    expected |= {("conv", "dense", None)}
    expected |= {("conv", impl, b) for impl in ("circulant", "materialise")
                 for b in q["conv_blocks"]}
    assert {(r["case"], r["impl"], r["block"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(r["jit"] is False for r in rows)

    for r in rows:
        for key in ("fwd_ms", "fwdbwd_ms", "fwd_ratio", "fwdbwd_ratio"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        if r["impl"] == "dense":
            assert r["fwd_ratio"] == 1.0 and r["fwdbwd_ratio"] == 1.0
        # Parameter bytes are exact: float32 kernel + bias.
        if r["case"] == "dense":
            want = 4 * (n * n + n) if r["block"] is None else 4 * (n * n // r["block"] + n)
        else:
            want = (4 * (9 * c * c + c) if r["block"] is None
                    else 4 * (9 * c * c // r["block"] + c))
        assert r["param_bytes"] == want, r

    # The markdown table has a header, a rule and one line per row.
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert "fwd+bwd / base" in table[0] and "param bytes" in table[0]
    assert f"{4 * (n * n // 16 + n):,}" in printed


def test_param_byte_formulas():
    assert bench.dense_param_bytes(4096, 4096) == 4 * (4096 * 4096 + 4096)
    assert bench.circulant_dense_param_bytes(4096, 4096, 256) == 4 * (16 * 16 * 256 + 4096)
    # Zero-padded blocks: 784 inputs in 13 blocks of 64.
    assert bench.circulant_dense_param_bytes(784, 512, 64) == 4 * (13 * 8 * 64 + 512)
    assert bench.conv_param_bytes(3, 256, 256) == 4 * (9 * 256 * 256 + 256)
    assert bench.circulant_conv_param_bytes(3, 256, 256, 64) == 4 * (9 * 4 * 4 * 64 + 256)


def test_blocks_that_do_not_divide_are_skipped():
    assert bench._blocks_for(1024, ["16", "64", "256", "1024", "n"]) == [16, 64, 256, 1024]
    assert bench._blocks_for(96, ["64", "32", "n"]) == [32, 96]


def test_target_verdict():
    def row(impl, ratio, ms):
        return {"case": "dense", "jit": True, "impl": impl, "n": 4096, "batch": 256,
                "block": 256, "fwdbwd_ratio": ratio, "fwdbwd_ms": ms}

    ok = bench.check_targets([row("circulant", 0.05, 5.0), row("materialise", 1.2, 120.0)])
    assert ok.count("NOT met") == 0
    bad = bench.check_targets([row("circulant", 0.2, 5.0), row("materialise", 0.04, 4.0)])
    assert bad.count("NOT met") == 2
    assert bench.check_targets([]) is None


def test_rescale_case_reports_ratios():
    from keras_normed.bench import bench_rescale, format_rescale

    row = bench_rescale(depth=4, width=16, batch=32, repeats=1)
    assert row["probe_s"] > 0 and row["first_fit_s"] > 0 and row["analytic_s"] > 0
    assert row["probe_over_first_fit"] == row["probe_s"] / row["first_fit_s"]
    assert row["probe_checked_over_first_fit"] == row["probe_checked_s"] / row["first_fit_s"]
    text = format_rescale(row)
    assert "probe / first fit" in text and f"{row['probe_checked_s']:.3f} s" in text


def test_issue13_verdicts():
    def row(case, n, block, batch, jit, ratio):
        return {"case": case, "impl": "circulant", "n": n, "block": block, "batch": batch,
                "jit": jit, "fwdbwd_ratio": ratio,
                "shape": "14x14x256->256 k3" if case == "conv" else f"{n}->{n}"}

    lines = bench.check_issue13([row("conv", 256, 256, 32, False, 0.2),
                                 row("conv", 256, 256, 32, True, 0.5),
                                 row("dense", 4096, 1024, 256, True, 0.04)])
    assert len(lines) == 3
    assert "met" in lines[0] and "NOT met" not in lines[0]
    assert "NOT met" in lines[1] and "NOT met" not in lines[2]
    assert bench.check_issue13([]) == []


def test_block_sizes_that_do_not_divide_n_are_named_as_skipped(capsys):
    argv = ["bench", "--cases", "dense", "--sizes", "8", "--blocks", "3,16,n", "--jit", "off",
            "--repeats", "1", "--warmup", "0", "--batch", "2"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: dense n=8: block sizes 3, 16 skipped (a block size must divide n)." in printed
    assert "| 8 |" in printed or " 8 " in printed  # the block n = 8 ran
