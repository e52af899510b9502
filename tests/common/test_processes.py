"""Processes that die with their parent, even a SIGKILLed one, and the embedded Postgres's
password auth and private socket: real processes, a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support.servers import REPO_ROOT

# A parent that starts the embedded server, prints its URI, then waits to be killed.
PARENT = """
import sys, time
from common.pgembed import embedded_postgres
with embedded_postgres(sys.argv[1]) as uri:
    print(uri, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} outlived its parent"
        time.sleep(0.2)


@pytest.fixture
def pg_dir():
    # Outside pytest's temp root (see tests/conftest.py): the server's own user must enter it.
    root = Path(tempfile.mkdtemp(prefix="playground-test-pgembed-"))
    os.chmod(root, 0o755)
    yield root / "pg"
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_embedded_postgres_password_auth_private_socket_dies_with_sigkilled_owner(pg_dir):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(pg_dir)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        uri = parent.stdout.readline().strip()
        assert uri.startswith("postgresql://postgres:"), uri
        hba = (pg_dir / "pg_hba.conf").read_text()
        assert "trust" not in hba.split("\n", 1)[1] and "scram-sha-256" in hba
        password_file = pg_dir.parent / "pg.password"
        assert password_file.stat().st_mode & 0o077 == 0
        socket_dir = Path(urlsplit(uri).query.split("host=")[1].split("&")[0])
        assert socket_dir.stat().st_mode & 0o077 == 0  # only the server's user enters it

        async def probe() -> None:
            conn = await asyncpg.connect(uri)
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            parts = urlsplit(uri)
            no_password = urlunsplit(parts._replace(netloc="postgres@"))
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(no_password)
            wrong = urlunsplit(parts._replace(netloc="postgres:wrong@"))
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(wrong)

        asyncio.run(probe())
        postmaster = int((pg_dir / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)
        parent.send_signal(signal.SIGKILL)  # no atexit hook, no finally: the reaper's job
        parent.wait(timeout=30)
        wait_gone(postmaster)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_service_children_die_with_a_sigkilled_parent(tmp_path, pg_uri):
    """`up`'s children (common.services) get a parent-death signal: a backend started as
    `up` starts it outlives no SIGKILLed parent."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from common.services import Service, free_port\n"
        "svc = Service('backend', ['backend', '--no-migrate', '--database-url', sys.argv[2]],\n"
        "              free_port(), Path(sys.argv[1]))\n"
        "svc.start()\n"
        "svc.wait_healthy(120)\n"
        "print(svc.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "child.log"), pg_uri],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        wait_gone(child)
    finally:
        if parent.poll() is None:
            parent.kill()
