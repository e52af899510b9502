"""Open Graph tags for the page's <head>: generic ones, or ones naming a run when the page was
asked for a run that exists. Every value is HTML-escaped; the prompt preview is user text."""

from __future__ import annotations

import html

SITE_NAME = "Activations Playground"
DESCRIPTION = "Generate with the engine, read SAE features per token, runs kept in Postgres."
# Link previews show one or two lines; the stored preview is already at most 200 characters.
MAX_DESCRIPTION_CHARS = 200


def open_graph_tags(
    url: str, request_id: str | None = None, prompt_preview: str | None = None
) -> str:
    """``request_id`` and ``prompt_preview`` only for a run that exists (else the generic tags)."""
    title = f"{SITE_NAME} · run {request_id}" if request_id else SITE_NAME
    # Collapse newlines and runs of spaces: a preview is one line of text.
    description = " ".join((prompt_preview or "").split())[:MAX_DESCRIPTION_CHARS] or DESCRIPTION
    tags = {
        "og:type": "website",
        "og:site_name": SITE_NAME,
        "og:title": title,
        "og:description": description,
        "og:url": url,
    }
    return "\n  ".join(
        f'<meta property="{name}" content="{html.escape(value, quote=True)}">'
        for name, value in tags.items()
    )
