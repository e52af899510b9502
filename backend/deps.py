"""What every router may take from the app, whichever package it serves: the public origin.
Each router owns the typed accessors of its own services (``api_router.py`` beside them), so
this module imports nothing but the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.settings import Settings


async def get_public_base_url(request: Request) -> str:
    """The origin that links are built from: ``PUBLIC_BASE_URL``, else the request's own."""
    settings: Settings = request.app.state.settings
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


PublicBaseDep = Annotated[str, Depends(get_public_base_url)]
