"""Feature-explorer test parts: the backend with its background fold off (tests fold when they
choose, so both the folded and the queued paths are checked), small leaderboards, and a pool
for calling the fold directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from backend.app import create_app
from backend.features import fold
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

# Small boards, so a few dozen runs exercise trimming, floors, refills and the member rows.
CAPACITY, LOW_WATER = 4, 2


@pytest.fixture(autouse=True)
def small_boards(monkeypatch):
    monkeypatch.setattr(fold, "CAPACITY", CAPACITY)
    monkeypatch.setattr(fold, "LOW_WATER", LOW_WATER)


@pytest.fixture(scope="module")
def backend_url(db_uri, stub_urls):
    settings = backend_settings(db_uri, stub_urls, playground_feature_fold=False)
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture
async def pool(db_uri) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_uri, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()
