"""The SAE proxy: defaults filled in, answers checked, then passed through."""

from __future__ import annotations

from typing import Any

from backend.activations.extraction import checked_timeline
from backend.features.protocol import AnalyzeFeaturesRequest, ExtractFeaturesRequest
from backend.settings import Settings
from backend.upstreams.sae import ExtractRequest, SaeClient


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
        checked_timeline(self.sae.name, envelope.feature_timeline)  # the same check as a run's
        return raw

    async def analyze(self, req: AnalyzeFeaturesRequest) -> dict[str, Any]:
        sae_id, layer = self._sae(req.sae_id, req.layer)
        body = {**req.model_dump(), "sae_id": sae_id, "layer": layer}
        return await self.sae.analyze(body)

    async def list_saes(self) -> dict[str, Any]:
        return (await self.sae.list_saes()).model_dump()
