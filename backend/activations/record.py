"""One run as a frozen, typed record: what the engine generated, what the SAE extracted, how
long each took, and how it ended. The database rows (``storage.py``) and the answers
(``views.py``) are both derived from it; nothing else carries a run between layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from backend.activations.packed import Timeline
from common.request_id import current as current_request_id

if TYPE_CHECKING:
    from backend.upstreams.engine import GenerateResponse

# ``stopped``: a streamed run its client stopped; it keeps its partial answer and features.
RunStatus = Literal["ok", "failed", "stopped"]
# Statuses whose runs keep their output (a preview row) and features.
KEEPS_OUTPUT: frozenset[str] = frozenset({"ok", "stopped"})


def pg_text(text: str) -> str:
    """Postgres text cannot hold NUL; models and upstream messages can produce it."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@dataclass(frozen=True, slots=True)
class Generation:
    """The engine's answer, made storable (no NUL in text)."""

    model_id: str
    output_text: str
    output_token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None

    @classmethod
    def of(cls, answer: GenerateResponse) -> Generation:
        return cls(
            model_id=pg_text(answer.model_id),
            output_text=pg_text(answer.output_text),
            output_token_ids=answer.output_token_ids,
            prompt_token_ids=answer.prompt_token_ids,
            finish_reason=answer.finish_reason,
        )


@dataclass(frozen=True, slots=True)
class Extraction:
    """The SAE's timeline for the full sequence, checked: packed for reads, JSON for storage."""

    sae_id: str
    sae_layer: int
    sae_top_k: int
    timeline: Timeline
    tokens: list[str]
    timeline_json: bytes


@dataclass(frozen=True, slots=True)
class RunTimings:
    """``total`` runs from the request to the start of the write; the write itself (``db``) is
    known only to the call that made it, so a stored run reads back with ``db = None``."""

    engine: float | None = None
    sae: float | None = None
    total: float | None = None
    db: float | None = None


@dataclass(frozen=True, slots=True)
class RunFailure:
    code: str
    message: str
    upstream: str | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    request_id: str
    created_at: datetime
    model_id: str
    prompt: str
    status: RunStatus
    generation: Generation | None
    extraction: Extraction | None
    failure: RunFailure | None
    timings: RunTimings
    parse_special_tokens: bool = False
    # The X-Request-ID of the request that made the run (its log lines in all three services);
    # taken from the request's context when the record is built.
    trace_id: str | None = field(default_factory=current_request_id)

    @classmethod
    def ok(
        cls,
        *,
        request_id: str,
        created_at: datetime,
        prompt: str,
        generation: Generation,
        extraction: Extraction | None,
        timings: RunTimings,
        parse_special_tokens: bool = False,
    ) -> RunRecord:
        """A run that succeeded: its model is the one that generated."""
        return cls(
            request_id=request_id,
            created_at=created_at,
            model_id=generation.model_id,
            prompt=prompt,
            status="ok",
            generation=generation,
            extraction=extraction,
            failure=None,
            timings=timings,
            parse_special_tokens=parse_special_tokens,
        )

    @classmethod
    def failed(
        cls,
        *,
        request_id: str,
        created_at: datetime,
        model_id: str,
        prompt: str,
        generation: Generation | None,
        failure: RunFailure,
        timings: RunTimings,
        parse_special_tokens: bool = False,
    ) -> RunRecord:
        """A run that failed: no extraction is stored; its model is the one that generated
        when the engine answered, else the planned ``model_id``."""
        return cls(
            request_id=request_id,
            created_at=created_at,
            model_id=generation.model_id if generation else model_id,
            prompt=prompt,
            status="failed",
            generation=generation,
            extraction=None,
            failure=failure,
            timings=timings,
            parse_special_tokens=parse_special_tokens,
        )
