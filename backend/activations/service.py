"""The activations product logic: run (engine -> SAE -> Postgres), read back, derive, list."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from backend.activations import derive, packed
from backend.activations.protocol import ActivationRunRequest
from backend.db import queries
from backend.db.pool import connection
from backend.settings import Settings
from backend.upstreams.client import JsonUpstream
from backend.upstreams.engine import EngineClient, GenerateRequest, GenerateResponse
from backend.upstreams.sae import ExtractRequest, SaeClient
from common.errors import ApiError, Gone, InvalidRequest, NotFound, UpstreamError

logger = logging.getLogger(__name__)

PROMPT_PREVIEW_CHARS = 200
PREVIEW_TOP_FEATURES = 20


def _pg_text(text: str) -> str:
    """Postgres text cannot hold NUL; models and upstream messages can produce it."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class ActivationService:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        engine: EngineClient,
        sae: SaeClient,
        engine_upstream: JsonUpstream,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.engine = engine
        self.sae = sae
        self.engine_upstream = engine_upstream
        self._db_timeout = settings.playground_db_timeout_s

    def _conn(self):
        return connection(self.pool, self._db_timeout)

    # -- run ---------------------------------------------------------------------------------

    def _pick_model(self, requested: str | None) -> str:
        known = {
            self.settings.playground_default_model_id,
            *self.settings.playground_activation_models,
        }
        return requested if requested in known else self.settings.playground_default_model_id

    def _check_bounds(self, req: ActivationRunRequest) -> None:
        if len(req.prompt) > self.settings.playground_max_prompt_chars:
            raise InvalidRequest(
                f"prompt: at most {self.settings.playground_max_prompt_chars} characters"
            )
        if req.max_tokens > self.settings.playground_max_tokens:
            raise InvalidRequest(f"max_tokens: at most {self.settings.playground_max_tokens}")

    async def run(self, req: ActivationRunRequest) -> dict[str, Any]:
        start = time.perf_counter()
        self._check_bounds(req)
        request_id = req.request_id or uuid.uuid4().hex
        model_id = self._pick_model(req.model_id)
        created_at = datetime.now(UTC)
        collect = req.collect_activations and req.inline_sae
        sae_id = req.sae_id or self.settings.playground_default_sae_id
        sae_layer = (
            req.sae_layer
            if req.sae_layer is not None
            else self.settings.playground_default_sae_layer
        )
        timings: dict[str, float | None] = {"engine": None, "sae": None, "db": None, "total": None}
        gen: GenerateResponse | None = None
        try:
            t = time.perf_counter()
            gen = await self.engine.generate(
                GenerateRequest(
                    prompt=req.prompt,
                    model_id=model_id,
                    max_tokens=req.max_tokens,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    top_k=req.top_k,
                    seed=req.seed,
                    chat=req.chat,
                    request_id=request_id,
                )
            )
            timings["engine"] = _ms(t)
            if "\x00" in gen.output_text or "\x00" in gen.model_id:
                gen = gen.model_copy(
                    update={
                        "output_text": _pg_text(gen.output_text),
                        "model_id": _pg_text(gen.model_id),
                    }
                )
            preview = None
            if collect:
                preview = await self._extract(gen, sae_id, sae_layer, req.sae_top_k, timings)
        except ApiError as exc:
            if exc.upstream is not None:
                await self._record_failure(req, request_id, created_at, gen, exc, timings, start)
            raise

        index, preview_row = self._rows(
            req, request_id, created_at, gen, preview, timings, _ms(start)
        )
        t = time.perf_counter()
        async with self._conn() as conn:
            await queries.save_run(conn, index, preview_row)
        timings["db"] = _ms(t)
        timings["total"] = _ms(start)
        return self._response(
            request_id=request_id,
            created_at=created_at,
            status="ok",
            model_id=gen.model_id,
            prompt=req.prompt,
            output={
                "text": gen.output_text,
                "token_ids": gen.output_token_ids,
                "prompt_token_ids": gen.prompt_token_ids,
                "finish_reason": gen.finish_reason,
            },
            preview=(
                self._preview(
                    preview_row.sae_id,
                    preview_row.sae_layer,
                    preview_row.sae_top_k,
                    preview[2],
                    preview[0],
                )
                if preview
                else None
            ),
            error=None,
            timings=timings,
        )

    async def _extract(
        self, gen: GenerateResponse, sae_id: str, layer: int, top_k: int, timings: dict
    ) -> tuple[packed.Timeline, list[str], bytes, str, int]:
        """Call the SAE on the full sequence; check and pack its timeline. Only the call
        counts as SAE time; checking and packing are the backend's own."""
        full = gen.prompt_token_ids + gen.output_token_ids
        t = time.perf_counter()
        envelope, _ = await self.sae.extract(
            ExtractRequest(
                token_ids=full,
                sae_id=sae_id,
                layer=layer,
                top_k=top_k,
                output_start=len(gen.prompt_token_ids),
            )
        )
        timings["sae"] = _ms(t)
        try:
            timeline, tokens = packed.from_entries(envelope.feature_timeline)
        except packed.TimelineShapeError as exc:
            raise UpstreamError(
                f"{self.sae.name} answered an unexpected timeline: {exc}", upstream=self.sae.name
            ) from exc
        if timeline.n_positions != len(full):
            raise UpstreamError(
                f"{self.sae.name} answered {timeline.n_positions} positions for {len(full)} tokens",
                upstream=self.sae.name,
            )
        timeline_json = orjson.dumps(envelope.feature_timeline)
        return timeline, tokens, timeline_json, envelope.sae_id, envelope.layer

    def _rows(self, req, request_id, created_at, gen, preview, timings, total_ms):
        sae_id = sae_layer = sae_top_k = None
        if preview is not None:
            _, _, _, sae_id, sae_layer = preview
            sae_top_k = req.sae_top_k
        index = queries.IndexRow(
            request_id=request_id,
            created_at=created_at,
            updated_at=created_at,
            model_id=gen.model_id,
            prompt_preview=req.prompt[:PROMPT_PREVIEW_CHARS],
            status="ok",
            error_code=None,
            error_message=None,
            error_upstream=None,
            prompt_tokens=len(gen.prompt_token_ids),
            output_tokens=len(gen.output_token_ids),
            finish_reason=gen.finish_reason,
            sae_id=sae_id,
            sae_layer=sae_layer,
            sae_top_k=sae_top_k,
            has_preview=preview is not None,
            engine_ms=timings["engine"],
            sae_ms=timings["sae"],
            total_ms=total_ms,
        )
        # The preview row also keeps the output of runs without activations (GET needs it);
        # ``sae_id IS NULL`` marks those.
        timeline, tokens, timeline_json = (
            (preview[0], preview[1], preview[2])
            if preview
            else (
                None,
                None,
                b"[]",
            )
        )
        preview_row = queries.PreviewRow(
            request_id=request_id,
            created_at=created_at,
            updated_at=created_at,
            model_id=gen.model_id,
            prompt=req.prompt,
            output_text=gen.output_text,
            output_token_ids=gen.output_token_ids,
            prompt_token_ids=gen.prompt_token_ids,
            finish_reason=gen.finish_reason,
            sae_id=sae_id,
            sae_layer=sae_layer,
            sae_top_k=sae_top_k,
            feature_timeline=timeline_json.decode(),
            timeline_packed=packed.pack(timeline) if timeline is not None else None,
            timeline_tokens=tokens,
        )
        return index, preview_row

    async def _record_failure(self, req, request_id, created_at, gen, exc, timings, start) -> None:
        index = queries.IndexRow(
            request_id=request_id,
            created_at=created_at,
            updated_at=created_at,
            model_id=gen.model_id if gen else self._pick_model(req.model_id),
            prompt_preview=req.prompt[:PROMPT_PREVIEW_CHARS],
            status="failed",
            error_code=exc.code,
            error_message=_pg_text(exc.message[:2000]),
            error_upstream=exc.upstream,
            prompt_tokens=len(gen.prompt_token_ids) if gen else None,
            output_tokens=len(gen.output_token_ids) if gen else None,
            finish_reason=gen.finish_reason if gen else None,
            sae_id=None,
            sae_layer=None,
            sae_top_k=None,
            has_preview=False,
            engine_ms=timings["engine"],
            sae_ms=timings["sae"],
            total_ms=_ms(start),
        )
        try:
            async with self._conn() as conn:
                await queries.save_run(conn, index, None)
        except ApiError as db_exc:
            # The caller must still see the upstream's error, not the database's.
            logger.warning("could not record failed run %s: %s", request_id, db_exc.message)

    # -- read back ---------------------------------------------------------------------------

    @staticmethod
    def _preview(sae_id, sae_layer, sae_top_k, timeline_json, timeline) -> dict[str, Any]:
        return {
            "sae_id": sae_id,
            "sae_layer": sae_layer,
            "sae_top_k": sae_top_k,
            # Already JSON: embed the stored text as it is, no parse and re-serialise.
            "feature_timeline": orjson.Fragment(timeline_json),
            "top_features": derive.top_features(timeline, limit=PREVIEW_TOP_FEATURES),
            "row_count": timeline.n_features,
        }

    @staticmethod
    def _response(
        *, request_id, created_at, status, model_id, prompt, output, preview, error, timings
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "created_at": created_at,
            "status": status,
            "model_id": model_id,
            "prompt": prompt,
            "output": output,
            "preview": preview,
            "error": error,
            "events": [],
            "actions": [],
            "timings_ms": timings,
        }

    async def get_run(self, request_id: str) -> dict[str, Any]:
        start = time.perf_counter()
        async with self._conn() as conn:
            row = await queries.get_run(conn, request_id)
        db_ms = _ms(start)
        if row is None:
            raise NotFound(f"no run {request_id!r}")
        timings = {"engine": row["engine_ms"], "sae": row["sae_ms"], "db": db_ms, "total": None}
        if row["status"] == "failed":
            timings["total"] = row["total_ms"]
            return self._response(
                request_id=request_id,
                created_at=row["created_at"],
                status="failed",
                model_id=row["model_id"],
                prompt=row["prompt_preview"],
                output=None,
                preview=None,
                error=_error(row),
                timings=timings,
            )
        if row["pruned_at"] is not None or not row["stored"]:
            raise Gone(f"run {request_id!r}: its preview was pruned")
        preview = None
        if row["p_sae_id"] is not None:
            timeline = _load_timeline(row["timeline_packed"], row["feature_timeline"])
            preview = self._preview(
                row["p_sae_id"],
                row["p_sae_layer"],
                row["p_sae_top_k"],
                row["feature_timeline"],
                timeline,
            )
        timings["total"] = _ms(start)
        return self._response(
            request_id=request_id,
            created_at=row["created_at"],
            status="ok",
            model_id=row["model_id"],
            prompt=row["prompt"],
            output={
                "text": row["output_text"],
                "token_ids": row["output_token_ids"],
                "prompt_token_ids": row["prompt_token_ids"],
                "finish_reason": row["p_finish_reason"],
            },
            preview=preview,
            error=None,
            timings=timings,
        )

    async def _timeline(self, request_id: str, *, with_tokens: bool):
        async with self._conn() as conn:
            row = await queries.get_timeline(conn, request_id, with_tokens=with_tokens)
        if row is None:
            raise NotFound(f"no run {request_id!r}")
        if row["status"] == "failed":
            raise NotFound(f"run {request_id!r} failed: it has no preview", code="no_preview")
        if row["pruned_at"] is not None or not row["stored"]:
            raise Gone(f"run {request_id!r}: its preview was pruned")
        if not row["collected"]:
            return None, None, 0
        timeline = _load_timeline(row["timeline_packed"], row["feature_timeline"])
        return timeline, row["timeline_tokens"], row["output_start"]

    async def rows(self, request_id: str, flt: derive.RowFilter) -> dict[str, Any]:
        timeline, tokens, output_start = await self._timeline(request_id, with_tokens=True)
        total, rows = (
            (0, []) if timeline is None else derive.rows(timeline, tokens, output_start, flt)
        )
        return {
            "request_id": request_id,
            "total": total,
            "limit": flt.limit,
            "offset": flt.offset,
            "rows": rows,
        }

    async def top_features(
        self, request_id: str, *, segment: derive.Segment, include_special: bool, limit: int
    ) -> dict[str, Any]:
        timeline, _, _ = await self._timeline(request_id, with_tokens=False)
        features = (
            []
            if timeline is None
            else derive.top_features(
                timeline, segment=segment, include_special=include_special, limit=limit
            )
        )
        return {
            "request_id": request_id,
            "segment": segment,
            "include_special": include_special,
            "top_features": features,
        }

    # -- listing -----------------------------------------------------------------------------

    async def list_runs(self, *, limit: int, cursor: str | None, status: str | None):
        before = _decode_cursor(cursor) if cursor else None
        async with self._conn() as conn:
            records = await queries.list_runs(conn, limit=limit + 1, before=before, status=status)
        more = len(records) > limit
        records = records[:limit]
        next_cursor = (
            _encode_cursor(records[-1]["created_at"], records[-1]["request_id"]) if more else None
        )
        return {"runs": [_summary_item(r) for r in records], "next_cursor": next_cursor}

    async def summary(self) -> dict[str, Any]:
        async with self._conn() as conn, conn.transaction(readonly=True):
            row = await queries.summary(conn)
            models = await queries.runs_per_model(conn)
        return {**dict(row), "models": [dict(m) for m in models]}

    # -- health ------------------------------------------------------------------------------

    async def health(self) -> tuple[int, dict[str, Any]]:
        pg, engine, sae = await asyncio.gather(
            self._check(self._ping()),
            self._check(self.engine_upstream.health()),
            self._check(self.sae.upstream.health()),
        )
        body: dict[str, Any] = {"postgres": pg, "engine": engine, "sae": sae, "error": None}
        if not pg["ok"]:
            body["status"] = "down"
            body["error"] = {
                "code": "service_unavailable",
                "message": f"postgres unavailable: {pg['error']}",
                "upstream": "postgres",
            }
            return 503, body
        body["status"] = "ok" if engine["ok"] and sae["ok"] else "degraded"
        return 200, body

    async def _ping(self) -> None:
        timeout = self.settings.playground_health_timeout_s
        async with connection(self.pool, timeout) as conn:
            await asyncio.wait_for(queries.ping(conn), timeout)

    async def _check(self, probe) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(probe, self.settings.playground_health_timeout_s)
        except ApiError as exc:
            return {"ok": False, "latency_ms": _ms(start), "error": exc.message}
        except (TimeoutError, OSError) as exc:
            return {"ok": False, "latency_ms": _ms(start), "error": f"{type(exc).__name__}"}
        return {"ok": True, "latency_ms": _ms(start), "error": None}


def _load_timeline(packed_bytes: bytes | None, timeline_json: str | None) -> packed.Timeline:
    if packed_bytes is not None:
        return packed.unpack(packed_bytes)
    # Rows written without the packed copy: derive it from the JSON.
    timeline, _ = packed.from_entries(orjson.loads(timeline_json or "[]"))
    return timeline


def _error(row) -> dict[str, Any] | None:
    if row["error_code"] is None:
        return None
    return {
        "code": row["error_code"],
        "message": row["error_message"] or "",
        "upstream": row["error_upstream"],
    }


def _summary_item(r) -> dict[str, Any]:
    return {
        "request_id": r["request_id"],
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
        "model_id": r["model_id"] or "",
        "prompt_preview": r["prompt_preview"] or "",
        "status": r["status"],
        "error": _error(r),
        "prompt_tokens": r["prompt_tokens"],
        "output_tokens": r["output_tokens"],
        "finish_reason": r["finish_reason"],
        "sae_id": r["sae_id"],
        "sae_layer": r["sae_layer"],
        "sae_top_k": r["sae_top_k"],
        "has_preview": r["has_preview"],
        "pruned": r["pruned_at"] is not None,
        "timings_ms": {"engine": r["engine_ms"], "sae": r["sae_ms"], "total": r["total_ms"]},
    }


def _encode_cursor(created_at: datetime, request_id: str) -> str:
    raw = orjson.dumps([created_at.isoformat(), request_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, request_id = orjson.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(request_id, str):
            raise ValueError("bad cursor")
        return when, request_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidRequest("cursor: not a cursor this API issued", code="invalid_cursor") from exc
