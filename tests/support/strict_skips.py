"""``PLAYGROUND_STRICT_SKIPS=1``: a run that skipped anything not expected fails.

Skips come from two places: a test that skips while it runs (``pytest_runtest_logreport``)
and a whole module skipped while it is collected, as a module-level ``pytest.importorskip``
of a missing package does (``pytest_collectreport``; no test of it ever reports). Both count.

Registered by tests/conftest.py with its ``EXPECTED_SKIPS`` (substrings of the reasons a full
run may report); tests/test_strict_skips.py runs inner sessions against it.
"""

from __future__ import annotations

import os

import pytest

PLUGIN_NAME = "playground-strict-skips"


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(longrepr[-1])
    return str(longrepr or "")


class StrictSkips:
    def __init__(self, expected: tuple[str, ...]) -> None:
        self.expected = expected
        self.unexpected: list[str] = []

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = _reason(report)
        if not any(expected in reason for expected in self.expected):
            self.unexpected.append(f"{report.nodeid}: {reason}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # A run whose only "tests" were skipped modules would otherwise end as "no tests
        # collected" (5): it fails as any other run with an unexpected skip.
        passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.unexpected and exitstatus in passing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.unexpected:
            terminalreporter.section(
                "unexpected skips (PLAYGROUND_STRICT_SKIPS=1): failing the run"
            )
            for line in self.unexpected:
                terminalreporter.line(line)


def register(config: pytest.Config, expected: tuple[str, ...]) -> None:
    """Watch this session's skips when ``PLAYGROUND_STRICT_SKIPS=1``."""
    if os.environ.get("PLAYGROUND_STRICT_SKIPS") == "1":
        config.pluginmanager.register(StrictSkips(expected), PLUGIN_NAME)
