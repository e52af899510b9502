"""The page's absolute URL, and a run's permalink on it (``/playground/activations?run=<id>``)."""

from __future__ import annotations

from urllib.parse import urlencode

from common.defaults import PAGE_PATH


def page_url(base_url: str, request_id: str | None = None) -> str:
    """``base_url`` is the public origin (plus any mount prefix), with or without a final slash."""
    url = base_url.rstrip("/") + PAGE_PATH
    return f"{url}?{urlencode({'run': request_id})}" if request_id else url
