"""Serves the /playground/activations page (filled in by the page work, issue 5)."""

from fastapi import APIRouter

router = APIRouter(tags=["page"])
