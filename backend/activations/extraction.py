"""The SAE call of a run: one extraction on the full sequence, checked and packed."""

from __future__ import annotations

import time
from typing import Any

import orjson

from backend.activations import packed
from backend.activations.record import Extraction, Generation, pg_text
from backend.upstreams.sae import ExtractRequest, SaeClient
from common.errors import UpstreamError
from common.timing import elapsed_ms


def checked_timeline(sae_name: str, entries: list[Any]) -> tuple[packed.Timeline, list[str]]:
    """The SAE's ``feature_timeline`` packed, or 502 naming the SAE when it breaks the contract."""
    try:
        return packed.from_entries(entries)
    except packed.TimelineShapeError as exc:
        raise UpstreamError(
            f"{sae_name} answered an unexpected timeline: {exc}", upstream=sae_name
        ) from exc


def storable_entries(entries: list[Any]) -> list[Any]:
    """The entries with NUL in token texts replaced, as ``packed.from_entries`` does for its
    token list: JSONB cannot hold NUL, which a byte-level token can decode to."""
    return [
        {**entry, "token": pg_text(entry["token"])}
        if isinstance(entry.get("token"), str) and "\x00" in entry["token"]
        else entry
        for entry in entries
    ]


async def extract(
    sae: SaeClient, generation: Generation, *, sae_id: str, layer: int, top_k: int
) -> tuple[Extraction, float]:
    """Extract features on prompt + output; returns the checked extraction and the SAE call's
    milliseconds (checking and packing are the backend's own time)."""
    full = generation.prompt_token_ids + generation.output_token_ids
    start = time.perf_counter()
    envelope, _ = await sae.extract(
        ExtractRequest(
            token_ids=full,
            sae_id=sae_id,
            layer=layer,
            top_k=top_k,
            output_start=len(generation.prompt_token_ids),
        )
    )
    sae_ms = elapsed_ms(start)
    extraction = checked_extraction(
        sae.name,
        envelope.feature_timeline,
        len(full),
        sae_id=envelope.sae_id,
        layer=envelope.layer,
        top_k=top_k,
    )
    return extraction, sae_ms


def checked_extraction(
    sae_name: str, entries: list[Any], n_tokens: int, *, sae_id: str, layer: int, top_k: int
) -> Extraction:
    """The whole sequence's timeline entries (one answer, or a stream's chunks joined) checked
    and packed."""
    timeline, tokens = checked_timeline(sae_name, entries)
    if timeline.n_positions != n_tokens:
        raise UpstreamError(
            f"{sae_name} answered {timeline.n_positions} positions for {n_tokens} tokens",
            upstream=sae_name,
        )
    return Extraction(
        sae_id=sae_id,
        sae_layer=layer,
        sae_top_k=top_k,
        timeline=timeline,
        tokens=tokens,
        timeline_json=orjson.dumps(storable_entries(entries)),
    )
