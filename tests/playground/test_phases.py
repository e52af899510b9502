"""`up`'s start-up phases: the engine log's marks, timed when first seen (playground/phases.py)."""

from __future__ import annotations

import time

from playground.phases import ENGINE_MARKS, LogPhases, format_phases


def test_marks_are_timed_when_first_seen_and_only_after_the_start(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("(MainProcess pid=1) INFO an earlier start's line\n")
    watch = LogPhases(log, ENGINE_MARKS)  # from the log's current end
    with log.open("a") as out:
        out.write("INFO:     Started server process [2]\n(MainProcess pid=2) INFO resolved\n")
        out.flush()
        time.sleep(0.05)
        watch.poll()
        out.write("(EngineCore pid=3) INFO up\n(Worker pid=4) INFO Loading weights took 0.7")
        out.flush()
        watch.poll()  # the worker's line is not complete yet: not seen
        assert set(watch.seen) == {"imports", "engine core"}
        out.write(" seconds\n(EngineCore pid=3) INFO Loading weights took 9 seconds\n")
        out.write("INFO:     Application startup complete.\n")
    time.sleep(0.05)
    watch.poll()
    phases = watch.phases()
    assert [name for name, _ in phases] == [
        "imports",
        "engine core",
        "worker",
        "model load",
        "serving",
    ]
    assert all(seconds >= 0 for _, seconds in phases)
    assert phases[0][1] >= 0.05  # the first mark counts from the watch's start
    assert sum(s for _, s in phases) == watch.seen["serving"]
    assert format_phases(phases).startswith("imports ")
