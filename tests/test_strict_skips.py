"""PLAYGROUND_STRICT_SKIPS=1 counts every skip, the ones made while collecting too (issue 19):
inner pytest sessions (pytester) with the plugin tests/conftest.py registers
(tests/support/strict_skips.py), a passing test beside a module skipped at import time by a
module-level ``pytest.importorskip`` of a package that is not installed."""

from __future__ import annotations

import pytest

from tests import conftest as root_conftest
from tests.support import strict_skips

pytest_plugins = ["pytester"]

MISSING = "playground_no_such_package_19"
CONFTEST = """
from tests.support import strict_skips

def pytest_configure(config):
    strict_skips.register(config, {expected!r})
"""
SKIPPED_AT_IMPORT = f"""
import pytest

pytest.importorskip("{MISSING}")

def test_never_collected():
    pass
"""
PASSING = """
def test_passes():
    pass
"""
SKIPPED_WHILE_RUNNING = """
import pytest

def test_skips():
    pytest.skip("no {what} here")
"""


def inner(pytester: pytest.Pytester, monkeypatch, expected: tuple[str, ...], strict: bool, **mods):
    monkeypatch.setenv("PLAYGROUND_STRICT_SKIPS", "1" if strict else "0")
    pytester.makeconftest(CONFTEST.format(expected=expected))
    pytester.makepyfile(**mods)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-rs")


def test_a_module_skipped_at_collection_fails_a_strict_run(pytester, monkeypatch):
    result = inner(pytester, monkeypatch, (), True,
                   test_ok=PASSING, test_optional=SKIPPED_AT_IMPORT)  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*unexpected skips*", f"*test_optional.py*{MISSING}*"])


def test_only_skipped_modules_fail_a_strict_run(pytester, monkeypatch):
    """Without another test the run would end as "no tests collected" (5), not as failed."""
    result = inner(pytester, monkeypatch, (), True, test_optional=SKIPPED_AT_IMPORT)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_same_skip_expected_passes(pytester, monkeypatch):
    result = inner(pytester, monkeypatch, (f"could not import '{MISSING}'",), True,
                   test_ok=PASSING, test_optional=SKIPPED_AT_IMPORT)  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    assert "unexpected skips" not in result.stdout.str()


def test_without_strict_mode_a_skip_passes(pytester, monkeypatch):
    result = inner(pytester, monkeypatch, (), False,
                   test_ok=PASSING, test_optional=SKIPPED_AT_IMPORT)  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


def test_runtime_skips_still_count(pytester, monkeypatch):
    mods = {"test_ok": PASSING, "test_runtime": SKIPPED_WHILE_RUNNING.format(what="GPU")}
    failing = inner(pytester, monkeypatch, ("no CPU",), True, **mods)
    failing.assert_outcomes(passed=1, skipped=1)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["*unexpected skips*", "*test_runtime.py::test_skips*no GPU*"])


def test_the_suite_registers_the_plugin(pytester, monkeypatch):
    """tests/conftest.py's own hook wires the plugin with its EXPECTED_SKIPS."""
    monkeypatch.setenv("PLAYGROUND_STRICT_SKIPS", "1")
    config = pytester.parseconfigure()
    assert config.pluginmanager.get_plugin(strict_skips.PLUGIN_NAME) is None  # no conftest here
    root_conftest.pytest_configure(config)
    plugin = config.pluginmanager.get_plugin(strict_skips.PLUGIN_NAME)
    assert isinstance(plugin, strict_skips.StrictSkips)
    assert plugin.expected == root_conftest.EXPECTED_SKIPS
