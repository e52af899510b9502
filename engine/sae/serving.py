"""The SAE service's logic: validate a request against the model and SAE, run it through the
batcher, shape the answer. The compute path below raises plain exceptions; this is where they
become the wire's errors."""

from __future__ import annotations

import time

from common.errors import InvalidRequest, NotFound, Overloaded, ServiceUnavailable
from engine.sae import steering
from engine.sae.batching import Batcher, QueueFull
from engine.sae.encode_batch import EncodeJob, EncodeResult, StreamChunk
from engine.sae.encoder import SaeMeta
from engine.sae.metrics import SaeMetrics
from engine.sae.protocol import (
    AnalyzeRequest,
    ExtractRequest,
    FeatureResponse,
    LabelsResponse,
    SaeInfo,
    SaeRef,
    SaesResponse,
    SteeringVectorsRequest,
    SteeringVectorsResponse,
)
from engine.sae.registry import SaeLoadFailed, SaeRegistry, UnknownSae, UnknownSaeLayer
from engine.sae.residual import ResidualModel
from engine.sae.settings import Settings
from engine.sae.tokens import TokenTable


class SaeService:
    def __init__(
        self,
        settings: Settings,
        model: ResidualModel,
        tokens: TokenTable,
        registry: SaeRegistry,
        batcher: Batcher,
    ) -> None:
        self.settings = settings
        self.model, self.tokens, self.registry, self.batcher = model, tokens, registry, batcher
        self.model_id = settings.served_model_id
        self.max_len = min(settings.max_sequence_tokens, model.max_positions)
        self.metrics: SaeMetrics | None = None  # set by the app when metrics are on

    def _resolve(self, sae_id: str | None, layer: int | None) -> SaeMeta:
        try:
            return self.registry.resolve(sae_id, layer)
        except UnknownSae as exc:
            raise NotFound(str(exc), code="sae_not_found") from exc
        except UnknownSaeLayer as exc:
            raise NotFound(str(exc), code="sae_layer_not_found") from exc

    async def _submit(self, job: EncodeJob) -> EncodeResult:
        start = time.perf_counter()
        try:
            result = await self.batcher.submit(job)
        except SaeLoadFailed as exc:
            raise ServiceUnavailable(str(exc), code="sae_load_failed") from exc
        except QueueFull as exc:
            if self.metrics is not None:
                self.metrics.queue_full.inc()
            raise Overloaded(str(exc), retry_after_s=1) from exc
        if self.metrics is not None:
            kind = "analyze" if job.feature_ids is not None else "extract"
            self.metrics.encoded(kind, time.perf_counter() - start)
        return result

    def _check_sequence(self, req: ExtractRequest | AnalyzeRequest) -> SaeMeta:
        meta = self._resolve(req.sae_id, req.layer)
        ids = req.token_ids
        if len(ids) > self.max_len:
            raise InvalidRequest(
                f"{len(ids)} tokens is past the context limit of {self.max_len}",
                code="sequence_too_long",
            )
        bad = next((t for t in ids if not 0 <= t < self.model.vocab_size), None)
        if bad is not None:
            raise InvalidRequest(
                f"token id {bad} is outside the vocabulary [0, {self.model.vocab_size})",
                code="token_id_out_of_vocab",
            )
        if req.output_start is not None and req.output_start > len(ids):
            raise InvalidRequest(
                f"output_start {req.output_start} is past the sequence ({len(ids)} tokens)",
                code="output_start_out_of_range",
            )
        return meta

    async def extract(self, req: ExtractRequest) -> dict:
        meta = self._check_sequence(req)
        limit = min(self.settings.max_top_k, meta.d_sae)
        if req.top_k > limit:
            raise InvalidRequest(
                f"top_k {req.top_k} is out of bounds [1, {limit}]", code="top_k_out_of_bounds"
            )
        if req.stream_id and req.stream_end and req.from_position == len(req.token_ids):
            # Ends a stream whose positions were all answered already: nothing to compute.
            self.batcher.caches.drop(req.stream_id)
            return {
                **self._header(meta),
                "top_k": req.top_k,
                "from_position": req.from_position,
                "feature_timeline": [],
                "batch_size": 0,
                "work": {"positions": 0, "cache": None},
                "timings_ms": {"compute": 0.0},
            }
        if req.from_position >= len(req.token_ids):
            raise InvalidRequest(
                f"from_position {req.from_position} is past the sequence's last position "
                f"({len(req.token_ids) - 1})",
                code="from_position_out_of_range",
            )
        stream = (
            StreamChunk(req.stream_id, req.stream_end, req.from_position) if req.stream_id else None
        )
        job = EncodeJob(req.token_ids, meta, top_k=req.top_k, stream=stream)
        result = await self._submit(job)
        # The rows start at result.first_position (a stream chunk's new positions) and at most
        # at from_position; the timeline starts at from_position.
        skip = req.from_position - result.first_position
        if skip < 0:  # stream_batch.take_state cuts a cache back to from_position: cannot happen
            raise ServiceUnavailable("stream cache answered too few positions")
        timeline = self.tokens.describe(req.token_ids, req.output_start)[req.from_position :]
        # A job with top_k always gets both lists (a missing one fails the strict zip).
        for entry, values, indices in zip(
            timeline,
            (result.top_values or [])[skip:],
            (result.top_indices or [])[skip:],
            strict=True,
        ):
            # topk is already descending; zero activations are left out.
            entry["features"] = [
                {"feature_id": f, "activation": v}
                for v, f in zip(values, indices, strict=True)
                if v > 0
            ]
        return {
            **self._header(meta),
            "top_k": req.top_k,
            "from_position": req.from_position,
            "feature_timeline": timeline,
            "batch_size": result.batch_size,
            "work": {"positions": result.work_positions, "cache": result.cache},
            "timings_ms": {"compute": round(result.compute_ms, 3)},
        }

    async def analyze(self, req: AnalyzeRequest) -> dict:
        meta = self._check_sequence(req)
        if len(req.feature_ids) > self.settings.max_feature_ids:
            raise InvalidRequest(
                f"at most {self.settings.max_feature_ids} feature_ids per request",
                code="too_many_feature_ids",
            )
        for feature_id in req.feature_ids:
            self._check_feature_id(meta, feature_id)
        job = EncodeJob(req.token_ids, meta, feature_ids=list(req.feature_ids))
        result = await self._submit(job)
        labels = self.registry.labels(meta)
        features = []
        for fid, acts, top, argmax in zip(
            req.feature_ids,
            result.feature_acts or [],
            result.feature_max or [],
            result.feature_argmax or [],
            strict=True,
        ):
            features.append(
                {
                    "feature_id": fid,
                    "activations": acts,
                    "max_activation": top,
                    "argmax_position": argmax,
                    "explanation": labels.get(fid),
                }
            )
        return {
            **self._header(meta),
            "tokens": self.tokens.describe(req.token_ids, req.output_start),
            "features": features,
        }

    def feature(self, sae_id: str, layer: int, feature_id: int) -> FeatureResponse:
        meta = self._resolve(sae_id, layer)
        self._check_feature_id(meta, feature_id)
        return FeatureResponse(
            sae_id=meta.sae_id,
            layer=meta.layer,
            feature_id=feature_id,
            d_sae=meta.d_sae,
            label=self.registry.labels(meta).get(feature_id),
            examples=self.registry.sidecars.examples(meta, feature_id),
        )

    def labels(self, sae_id: str, layer: int) -> LabelsResponse:
        meta = self._resolve(sae_id, layer)
        labels = self.registry.labels(meta)
        return LabelsResponse(
            sae_id=meta.sae_id,
            layer=meta.layer,
            d_sae=meta.d_sae,
            labels=labels,
            words={
                f: w for f, w in self.registry.sidecars.context_words(meta).items() if f in labels
            },
        )

    @staticmethod
    def _check_feature_id(meta: SaeMeta, feature_id: int) -> None:
        if not 0 <= feature_id < meta.d_sae:
            raise InvalidRequest(
                f"feature_id {feature_id} is outside [0, {meta.d_sae})",
                code="feature_id_out_of_range",
            )

    def _header(self, meta: SaeMeta) -> dict:
        return {
            "sae_id": meta.sae_id,
            "layer": meta.layer,
            "d_sae": meta.d_sae,
            "model_id": self.model_id,
        }

    def saes(self) -> SaesResponse:
        by_id: dict[str, list[SaeMeta]] = {}
        for meta in self.registry.entries.values():
            by_id.setdefault(meta.sae_id, []).append(meta)
        infos = []
        for sae_id, metas in by_id.items():
            first = metas[0]
            infos.append(
                SaeInfo(
                    sae_id=sae_id,
                    layers=sorted(m.layer for m in metas),
                    d_in=first.d_in,
                    d_sae=first.d_sae,
                    architecture=first.architecture,
                    model_id=first.model_id,
                    demo=any(m.demo for m in metas),
                    description=first.description,
                    has_labels=any(self.registry.sidecars.has_labels(m) for m in metas),
                    has_examples=any(self.registry.sidecars.has_examples(m) for m in metas),
                )
            )
        sae_id, layer = self.registry.default
        return SaesResponse(default=SaeRef(sae_id=sae_id, layer=layer), saes=infos)

    def loaded(self) -> list[SaeRef]:
        return [SaeRef(sae_id=s, layer=lay) for s, lay in self.registry.loaded()]

    def steering_vectors(self, req: SteeringVectorsRequest) -> SteeringVectorsResponse:
        """Decoder rows to steer with (engine ``steer``), read from the SAE's file."""
        meta = self._resolve(req.sae_id, req.layer)
        for feature_id in req.feature_ids:
            self._check_feature_id(meta, feature_id)
        try:
            return steering.steering_vectors(meta, req.feature_ids)
        except Exception as exc:  # unreadable or inconsistent weights (safetensors' own errors)
            raise ServiceUnavailable(
                f"SAE {meta.sae_id!r} layer {meta.layer}: decoder rows could not be read "
                f"({type(exc).__name__})",
                code="sae_load_failed",
            ) from exc
