"""A streamed run its client stopped, as a record: status ``stopped`` (contracts.md, "Stopped
runs"), its partial answer, and the features computed so far.

The timeline covers the whole sequence so far, so the run reopens as the page showed it: the
positions the SAE answered carry their features, the later ones (generated after the last
feature chunk) carry none. The failure names how far each got.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.activations.extraction import checked_extraction
from backend.activations.record import (
    Extraction,
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
    pg_text,
)

CLIENT_CLOSED = "client_closed"
STOPPED_FINISH = "stopped"


@dataclass(frozen=True, slots=True)
class PartialRun:
    """What a streamed run had when its client stopped it."""

    request_id: str
    created_at: datetime
    prompt: str
    parse_special_tokens: bool
    model_id: str
    prompt_ids: list[int]
    prompt_tokens: list[str]
    output_ids: list[int]
    output_texts: list[str]
    generation: Generation | None  # the engine's whole answer, when it had finished
    entries: list[Any]  # the SAE's timeline entries so far, from position 0, in order
    sae: tuple[str, str, int, int] | None  # (service name, sae_id, layer, top_k) when collected


def _padding(run: PartialRun, start: int) -> list[dict[str, Any]]:
    """Entries without features for the positions the SAE never answered."""
    texts = run.prompt_tokens + run.output_texts
    ids = run.prompt_ids + run.output_ids
    return [
        {
            "position": position,
            "token_id": ids[position],
            "token": pg_text(texts[position]),
            "segment": "prompt" if position < len(run.prompt_ids) else "output",
            "special": False,
            "features": [],
        }
        for position in range(start, len(ids))
    ]


def _extraction(run: PartialRun) -> Extraction | None:
    if run.sae is None:
        return None
    name, sae_id, layer, top_k = run.sae
    entries = run.entries + _padding(run, len(run.entries))
    n = len(run.prompt_ids) + len(run.output_ids)
    return checked_extraction(name, entries, n, sae_id=sae_id, layer=layer, top_k=top_k)


def stopped_record(run: PartialRun, timings: RunTimings) -> RunRecord:
    """The stopped run's record; one stopped before the engine had tokenized the prompt keeps
    nothing but its prompt (no preview)."""
    started = bool(run.prompt_ids)
    generation = run.generation or Generation(
        model_id=pg_text(run.model_id),
        output_text=pg_text("".join(run.output_texts)),
        output_token_ids=list(run.output_ids),
        prompt_token_ids=list(run.prompt_ids),
        finish_reason=STOPPED_FINISH,
    )
    n = len(run.prompt_ids) + len(run.output_ids)
    message = (
        f"stopped by the client after {len(run.output_ids)} output tokens; "
        f"features for {min(len(run.entries), n)} of {n} positions"
    )
    return RunRecord(
        request_id=run.request_id,
        created_at=run.created_at,
        model_id=generation.model_id,
        prompt=run.prompt,
        status="stopped",
        generation=generation if started else None,
        extraction=_extraction(run) if started else None,
        failure=RunFailure(CLIENT_CLOSED, message, None),
        timings=timings,
        parse_special_tokens=run.parse_special_tokens,
    )
