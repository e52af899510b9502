"""The SAE proxy: defaults filled in, answers checked, then passed through."""

from __future__ import annotations

from typing import Any

from backend.activations.extraction import checked_timeline
from backend.features.protocol import AnalyzeFeaturesRequest, ExtractFeaturesRequest
from backend.settings import Settings
from backend.upstreams.sae import ExtractRequest, SaeClient
from common.errors import UpstreamError


class FeatureService:
    def __init__(self, settings: Settings, sae: SaeClient) -> None:
        self.settings = settings
        self.sae = sae

    def _sae(self, sae_id: str | None, layer: int | None) -> tuple[str, int]:
        return (
            sae_id or self.settings.playground_default_sae_id,
            layer if layer is not None else self.settings.playground_default_sae_layer,
        )

    async def extract(self, req: ExtractFeaturesRequest) -> dict[str, Any]:
        sae_id, layer = self._sae(req.sae_id, req.layer)
        envelope, raw = await self.sae.extract(
            ExtractRequest(
                token_ids=req.token_ids,
                sae_id=sae_id,
                layer=layer,
                top_k=req.top_k,
                output_start=req.output_start,
            )
        )
        # The same checks as a run's (backend/activations/extraction.py).
        timeline, _ = checked_timeline(self.sae.name, envelope.feature_timeline)
        if timeline.n_positions != len(req.token_ids):
            raise UpstreamError(
                f"{self.sae.name} answered {timeline.n_positions} positions for "
                f"{len(req.token_ids)} tokens",
                upstream=self.sae.name,
            )
        return raw

    async def analyze(self, req: AnalyzeFeaturesRequest) -> dict[str, Any]:
        sae_id, layer = self._sae(req.sae_id, req.layer)
        body = {**req.model_dump(), "sae_id": sae_id, "layer": layer}
        envelope, raw = await self.sae.analyze(body)
        n = len(req.token_ids)
        if [t.feature_id for t in envelope.features] != req.feature_ids:
            raise UpstreamError(
                f"{self.sae.name} answered features {[t.feature_id for t in envelope.features]} "
                f"for {req.feature_ids}",
                upstream=self.sae.name,
            )
        lengths = {len(t.activations) for t in envelope.features}
        if envelope.tokens is not None:
            lengths.add(len(envelope.tokens))
        if lengths != {n}:
            raise UpstreamError(
                f"{self.sae.name} answered {sorted(lengths)} positions for {n} tokens",
                upstream=self.sae.name,
            )
        return raw

    async def list_saes(self) -> dict[str, Any]:
        return (await self.sae.list_saes()).model_dump()
