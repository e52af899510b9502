"""docs/configuration.md and the settings classes agree: every field of every pydantic-settings
class has its environment variable documented there, and every variable documented there is
either some class's field or one of the few read elsewhere (listed below, each with the file that
reads it). A new settings class is found by its `class X(BaseSettings)` line."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"

# (module, class): every pydantic-settings class of the source packages.
SETTINGS_CLASSES = [
    ("backend.settings", "Settings"),
    ("engine.generation.settings", "EngineSettings"),
    ("engine.sae.settings", "Settings"),
    ("playground.settings", "UpSettings"),
]
SOURCE = ["backend", "engine", "common", "playground", "modal_deploy.py"]

# Documented variables no settings class holds: the file that reads each, and why.
READ_ELSEWHERE = {
    "PLAYGROUND_ENV": ("modal_deploy.py", "deploy-time: names the Modal apps, volumes, secrets"),
    "PLAYGROUND_PRUNE_RETENTION": ("modal_deploy.py", "the scheduled prune's age, Modal only"),
    "PLAYGROUND_LOG_FORMAT": ("common/logging_setup.py", "read before any settings object"),
    "PLAYGROUND_URL": ("backend/export_cli.py", "the export client's target"),
    "HF_TOKEN": ("modal_deploy.py", "Hugging Face's own; the Modal secret's key"),
    "VLLM_PLUGINS": ("bench/engine.py", "vLLM's own"),
    "VLLM_USE_V2_MODEL_RUNNER": ("engine/generation/runtime.py", "vLLM's own; set for steering"),
    "OUT": ("bench/harness.py", "benchmarks' extra output folder"),
    "UPDATE_OPENAPI": ("tests/openapi/test_snapshots.py", "tests: regenerate the snapshots"),
}

# An environment-variable-looking name: upper case, digits, at least one inner underscore.
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def _classes() -> list[type[BaseSettings]]:
    return [getattr(importlib.import_module(m), c) for m, c in SETTINGS_CLASSES]


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables a settings class reads: each field's alias(es) if it has any, else the
    prefix + the field name; upper-cased (the classes are case-insensitive)."""
    prefix = cls.model_config.get("env_prefix", "")
    assert not cls.model_config.get("case_sensitive"), cls
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                assert isinstance(choice, str), (cls, field_name, choice)
                names.add(choice.upper())
        else:  # an AliasPath reads inside another variable: not expected here
            raise AssertionError(f"{cls.__name__}.{field_name}: unsupported alias {alias!r}")
    return names


def settings_env_names() -> set[str]:
    return set().union(*(env_names(cls) for cls in _classes()))


def documented_names(text: str) -> set[str]:
    return set(ENV_NAME.findall(text))


def test_every_settings_class_is_listed():
    found = set()
    for entry in SOURCE:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            for cls in re.findall(r"^class (\w+)\([^)]*BaseSettings", file.read_text(), re.M):
                module = ".".join(file.relative_to(ROOT).with_suffix("").parts)
                found.add((module, cls))
    assert found == set(SETTINGS_CLASSES)
    assert all(issubclass(cls, BaseSettings) for cls in _classes())


@pytest.mark.parametrize(("module", "name"), SETTINGS_CLASSES)
def test_every_setting_is_documented(module, name):
    cls = getattr(importlib.import_module(module), name)
    documented = documented_names(DOC.read_text())
    missing = sorted(env_names(cls) - documented)
    assert not missing, f"{module}.{name}: not in docs/configuration.md: {missing}"


def test_every_documented_variable_exists():
    documented = documented_names(DOC.read_text())
    unknown = sorted(documented - settings_env_names() - set(READ_ELSEWHERE))
    assert not unknown, f"docs/configuration.md names variables nothing reads: {unknown}"


def test_read_elsewhere_is_documented_and_read():
    text = DOC.read_text()
    for name, (reader, _why) in READ_ELSEWHERE.items():
        assert f"`{name}`" in text, name
        assert name in (ROOT / reader).read_text(), (name, reader)
        assert name not in settings_env_names(), f"{name} is a setting now: drop it from the list"


def test_env_names_follow_prefix_and_aliases():
    from engine.generation.settings import EngineSettings
    from engine.sae.settings import Settings as SaeSettings

    engine = env_names(EngineSettings)
    assert {"ENGINE_MODEL", "ENGINE_API_TOKEN", "PLAYGROUND_DEPLOYED"} <= engine
    assert "ENGINE_DEPLOYED" not in engine
    assert "SAE_SERVICE_SAE_DIRS" in env_names(SaeSettings)


def test_docs_links_resolve():
    """Relative links of the README and docs/*.md point at files that exist."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)}: broken link {target}"
