"""The parts of a steered pair that are data, not orchestration (``steering.py``): the steer
items, bounded (422) and resolved, the decoder rows, the pair's plan, the records and rows of
its runs, the steering spec with its read-back figures, and waiting on both runs at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from backend.activations import storage
from backend.activations.readback import read_back
from backend.activations.record import Generation, RunRecord, RunTimings
from backend.db import pairs
from backend.upstreams.engine import SteerVector
from common.errors import InvalidRequest

if TYPE_CHECKING:
    import asyncpg

    from backend.activations.ownership import RunOwnership
    from backend.activations.plan import RunPlan
    from backend.activations.protocol import ActivationRunRequest
    from backend.activations.writer import RunWriter
    from backend.settings import Settings
    from backend.upstreams.engine import EngineClient, GenerateRequest
    from backend.upstreams.sae import SaeClient

T = TypeVar("T")


class SteeringHost(Protocol):
    """What steered runs use of the activations service (a protocol, so that they never import
    the service that dispatches to them)."""

    settings: Settings
    pool: asyncpg.Pool
    engine: EngineClient
    sae: SaeClient
    ownership: RunOwnership
    background: set[asyncio.Task[None]]
    writer: RunWriter

    def engine_request(self, req: ActivationRunRequest, plan: RunPlan) -> GenerateRequest: ...

    def _plan(self, req: ActivationRunRequest) -> RunPlan: ...

    async def _check_budget(self, req: ActivationRunRequest, plan: RunPlan) -> None: ...

    async def _check_sae(self, plan: RunPlan) -> None: ...


@dataclass(frozen=True, slots=True)
class SteerItem:
    feature_id: int
    strength: float
    sae_id: str
    layer: int


@dataclass(frozen=True, slots=True)
class Vectors:
    """What the engine adds, and each item's decoder-row norm (for the answer)."""

    steer: list[SteerVector]
    norms: list[float]


@dataclass(frozen=True, slots=True)
class PairPlan:
    steered: RunPlan
    default: RunPlan | None
    items: list[SteerItem]
    seed: int | None
    new_token: str | None  # a new run's owner token (both runs answer to it)
    new_ids: list[str]  # ids this request took: released if it is refused


async def first_error(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Every result, in order; the first failure cancels the others and raises."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def record_of(
    req: ActivationRunRequest,
    plan: RunPlan,
    generation: Generation | None,
    extraction: Any,
    timings: RunTimings,
) -> RunRecord:
    return RunRecord(
        request_id=plan.request_id,
        created_at=plan.created_at,
        model_id=generation.model_id if generation is not None else plan.model_id,
        prompt=req.prompt,
        status="ok",
        generation=generation,
        extraction=extraction,
        failure=None,
        timings=timings,
        parse_special_tokens=req.parse_special_tokens,
    )


def row_set(rows: storage.RunRows) -> pairs.RunRowSet:
    return pairs.RunRowSet(rows.index, rows.preview, rows.features)


def _read(record: RunRecord | None, item: SteerItem) -> dict[str, Any] | None:
    ext = record.extraction if record is not None else None
    if ext is None or (ext.sae_id, ext.sae_layer) != (item.sae_id, item.layer):
        return None
    return dict(read_back(ext.timeline, item.feature_id))


def steering_spec(
    pair: PairPlan,
    vectors: Vectors | None,
    steered: RunRecord | None,
    default: RunRecord | None,
) -> dict[str, Any]:
    """What is stored on the steered run and answered for both: each feature, its strength
    and decoder-row norm, and its read-back in each run (the seed both answers used)."""
    return {
        "features": [
            {
                "feature_id": item.feature_id,
                "strength": item.strength,
                "sae_id": item.sae_id,
                "layer": item.layer,
                "norm": vectors.norms[i] if vectors is not None else None,
                "steered": _read(steered, item),
                "default": _read(default, item),
            }
            for i, item in enumerate(pair.items)
        ],
        "seed": pair.seed,
    }


def steer_items(req: ActivationRunRequest, plan: RunPlan, settings: Settings) -> list[SteerItem]:
    """The configured bounds (422); each item's SAE and layer resolved to the run's."""
    steer = req.steer or []
    limit = settings.playground_max_steer_features
    if len(steer) > limit:
        raise InvalidRequest(f"steer: at most {limit} features", code="too_many_steer")
    cap = settings.playground_max_steer_strength
    items = []
    for i, feature in enumerate(steer):
        if abs(feature.strength) > cap:
            raise InvalidRequest(
                f"steer[{i}].strength: |strength| at most {cap:g}", code="strength_over_cap"
            )
        items.append(
            SteerItem(
                feature_id=feature.feature_id,
                strength=feature.strength,
                sae_id=feature.sae_id or plan.sae_id,
                layer=feature.layer if feature.layer is not None else plan.sae_layer,
            )
        )
    keys = [(it.sae_id, it.layer, it.feature_id) for it in items]
    if len(set(keys)) != len(keys):
        raise InvalidRequest("steer: each feature at most once", code="duplicate_steer")
    return items
