"""What `playground up` shows: where the metrics are, and one line per run read from the
backend's log (text or JSON), including a line written in two pieces."""

from __future__ import annotations

import json
import stat

from playground.observability import RunLines, metrics_lines, run_line, write_token


def test_run_lines_follow_the_backend_log(tmp_path):
    log = tmp_path / "backend.log"
    log.write_text("2026-01-01 00:00:00,000 INFO backend.runs [old] run old ok\n")
    runs = RunLines(log)  # starts at the end: lines from before `up` are not shown
    assert runs.poll() == []
    with log.open("a") as out:
        out.write("2026-01-01 00:00:01,000 INFO uvicorn.access [a] GET /health 200\n")
        out.write("2026-01-01 00:00:02,000 INFO backend.runs [abc] run r1 ok engine=1.0ms")
    assert runs.poll() == []  # the line is not complete yet
    with log.open("a") as out:
        out.write(" sae=2.0ms db=0.5ms total=3.5ms\n")
        entry = {"logger": "backend.runs", "message": "run r2 failed", "request_id": "x"}
        out.write(json.dumps(entry, separators=(",", ":")) + "\n")
    assert runs.poll() == [
        "[abc] run r1 ok engine=1.0ms sae=2.0ms db=0.5ms total=3.5ms",
        "run r2 failed",
    ]
    assert runs.poll() == []


def test_run_line_ignores_other_lines():
    assert run_line(b"2026 INFO backend.app [x] started") is None
    assert run_line(b'{"logger":"backend.runs", broken') is None


def test_token_file_is_owner_only(tmp_path):
    path = write_token(tmp_path / "run" / "service-token", "tok")
    assert path.read_text() == "tok"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_metrics_lines_name_each_service(tmp_path):
    lines = metrics_lines(
        {"engine": "http://e:1", "sae": "http://s:2/", "backend": "http://b:3"},
        tmp_path / "tok",
        backend_token_set=False,
    )
    assert lines[1:] == [
        f"  engine   http://e:1/metrics (bearer token in {tmp_path / 'tok'})",
        f"  sae      http://s:2/metrics (bearer token in {tmp_path / 'tok'})",
        "  backend  http://b:3/metrics (open)",
    ]
