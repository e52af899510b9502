"""`playground up` reads its configuration through one settings object; flags win."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from playground.settings import UpSettings
from playground.up_args import add_arguments


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_environment_is_read_once_through_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLAYGROUND_PORT", "8123")
    monkeypatch.setenv("PLAYGROUND_SAE_DIRS", " /a/sae1, /b/sae2 ,")
    monkeypatch.setenv("PLAYGROUND_SAE_URL", "")  # empty means unset
    monkeypatch.setenv("SAE_SERVICE_TORCH_THREADS", "3")
    args = _parse([])
    assert args.data_dir == tmp_path
    assert args.port == 8123
    assert args.env_sae_dirs == [Path("/a/sae1"), Path("/b/sae2")]
    assert args.sae_url is None
    assert args.sae_torch_threads == 3
    assert _parse(["--port", "9000"]).port == 9000


def test_defaults_without_environment(monkeypatch):
    for name in UpSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    args = _parse([])
    assert (args.port, args.host, args.model, args.database_url) == (8000, "127.0.0.1", None, None)
    assert args.startup_timeout == 900.0 and args.env_sae_dirs == []


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_PORT", "70000")
    with pytest.raises(ValueError, match="playground_port"):
        UpSettings()
