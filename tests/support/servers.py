"""Real HTTP servers on 127.0.0.1 for tests: an app in a uvicorn thread, or a `playground`
subcommand in its own process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from common.services import Service, free_port, running

REPO_ROOT = Path(__file__).resolve().parents[2]

# The session's engine and SAE service require this bearer token, as `playground up` makes them.
SERVICE_TOKEN = "test-service-token"
SERVICE_AUTH = {"authorization": f"Bearer {SERVICE_TOKEN}"}
ENGINE_MAX_BODY_BYTES = 1 << 20


@contextmanager
def serve_app(app, *, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn thread died during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start within 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve_subcommand(
    args: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    start_timeout: float = 300.0,
) -> Iterator[str]:
    """Run ``playground <args> --host 127.0.0.1 --port P`` in its own process group, as
    `playground up` does; wait until GET /health answers 200; yield the base URL; stop the
    whole group on exit."""
    service = Service(args[0], args, free_port(), log_path, env or {})
    log_path.unlink(missing_ok=True)
    with running(service, timeout=start_timeout):
        yield service.url
