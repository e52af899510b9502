"""bench.harness: stdlib only, its statistics, and the one results shape written where asked."""

from __future__ import annotations

import json
import subprocess
import sys

from bench import harness


def test_imports_only_the_standard_library():
    # -S: no site-packages at all, as on a host without this project's dependencies.
    code = "import bench.harness as h; h.machine(); print('ok')"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_timing_stats():
    stats = harness.timing_stats([0.004, 0.001, 0.003, 0.002])
    assert stats == {"n": 4, "best_ms": 1.0, "mean_ms": 2.5, "p50_ms": 2.5, "p99_ms": 3.97}
    assert harness.timing_stats([])["p50_ms"] is None
    assert harness.percentile([5.0], 99) == 5.0


def test_best_of_warms_up_then_takes_the_fastest(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # timed calls of 5, 2 and 3 s
    monkeypatch.setattr(harness.time, "perf_counter", lambda: next(clock))
    calls = []
    assert harness.best_of(lambda: calls.append(1), 3, warmup=2) == 2.0
    assert len(calls) == 5


def test_report_written_to_results_and_out(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("OUT", str(out))
    report = harness.report(
        "demo",
        config={"quick": True},
        tables={"rows": [{"name": "a", "value": 1.5}, {"name": "bb", "value": None}]},
        summary={"ratio": 0.5},
        created_at="20260101T000000Z",
    )
    paths = harness.write_report(report, tag="quick", out_dir=tmp_path / "results")
    assert [p.parent for p in paths] == [tmp_path / "results", out]
    for path in paths:
        assert path.name == "demo-quick-20260101T000000Z.json"
        data = json.loads(path.read_text())
        assert set(data) == {"benchmark", "created_at", "machine", "config", "tables", "summary"}
        assert data["machine"]["cpus"] >= 1
    harness.print_table(
        report["tables"]["rows"],
        [harness.Column("name", "run"), harness.Column("value", "v", ".2f")],
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4:] == ["run     v", "---------", "a    1.50", "bb      -"]
