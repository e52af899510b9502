"""What a run request resolves to before any upstream is called (the blocking and the
streamed run share it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run request resolves to before any upstream is called."""

    request_id: str
    created_at: datetime
    model_id: str
    collect: bool
    sae_id: str
    sae_layer: int
