"""Links from a feature to elsewhere: the filtered runs listing, the page, Neuronpedia."""

from __future__ import annotations

from urllib.parse import urlencode

from common.defaults import PAGE_PATH

# sae_id -> Neuronpedia source set (per layer) for SAEs Neuronpedia hosts; only with the d_sae
# Neuronpedia's set has (Llama Scope 8x: 32,768 features per layer).
NEURONPEDIA = {
    "llama_scope_lxr_8x": ("llama3.1-8b", "{layer}-llamascope-res-32k", 32768),
}


def neuronpedia(sae_id: str, layer: int, d_sae: int, feature_id: int) -> str | None:
    known = NEURONPEDIA.get(sae_id)
    if known is None or known[2] != d_sae:
        return None
    model, source, _ = known
    return f"https://www.neuronpedia.org/{model}/{source.format(layer=layer)}/{feature_id}"


def runs_listing(sae_id: str, layer: int, feature_id: int) -> str:
    query = urlencode({"sae_id": sae_id, "sae_layer": layer, "feature_id": feature_id})
    return f"/playground/activations/runs?{query}"


def page(sae_id: str, layer: int, feature_id: int) -> str:
    return f"{PAGE_PATH}?{urlencode({'feature': f'{sae_id}/{layer}/{feature_id}'})}"
