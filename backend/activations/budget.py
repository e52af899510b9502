"""What a run may cost, bounded before any GPU work: positions x ``sae_top_k`` and the stored
timeline's bytes, from the prompt and ``max_tokens`` alone (no tokenizer, no upstream call).

The prompt's token count is bounded by its UTF-8 bytes (a byte-level BPE token holds at least
one byte) plus the chat template's own tokens; a timeline entry's JSON by fixed per-position and
per-feature sizes. Both bounds are upper bounds, so a run that passes fits.
"""

from __future__ import annotations

from common.errors import InvalidRequest

# Llama-3.1's template writes about 30 tokens around a user turn; room for others.
TEMPLATE_TOKENS = 64
# A timeline entry without features ({"position", "token_id", "token", "segment", "special"})
# and one feature ({"feature_id": 32767, "activation": -1.2345678901234567e-05}), in JSON.
ENTRY_BYTES = 192
FEATURE_BYTES = 64
# The packed copy beside it (packed.py): 12 bytes a feature, 17 a position. Both are stored
# (the JSON is served as is, the packed copy serves rows/top-features without parsing), so the
# cap counts both.
PACKED_FEATURE_BYTES = 12
PACKED_ENTRY_BYTES = 17


def max_positions(prompt: str, max_tokens: int) -> int:
    return len(prompt.encode("utf-8")) + TEMPLATE_TOKENS + max_tokens


def stored_bytes_bound(positions: int, sae_top_k: int) -> int:
    """Worst-case stored bytes of a timeline: its JSON and its packed copy."""
    per_position = ENTRY_BYTES + PACKED_ENTRY_BYTES
    per_feature = FEATURE_BYTES + PACKED_FEATURE_BYTES
    return positions * (per_position + sae_top_k * per_feature)


def check_timeline_budget(
    prompt: str, max_tokens: int, sae_top_k: int, *, max_features: int, max_bytes: int
) -> None:
    """422 ``timeline_too_large`` when the worst case is over either cap."""
    positions = max_positions(prompt, max_tokens)
    features = positions * sae_top_k
    if features > max_features:
        raise InvalidRequest(
            f"up to {positions} positions x sae_top_k {sae_top_k} = {features} features is over "
            f"the cap of {max_features}: shorten the prompt, or lower max_tokens or sae_top_k",
            code="timeline_too_large",
        )
    size = stored_bytes_bound(positions, sae_top_k)
    if size > max_bytes:
        raise InvalidRequest(
            f"the timeline could take up to {size} bytes, over the cap of {max_bytes}: shorten "
            "the prompt, or lower max_tokens or sae_top_k",
            code="timeline_too_large",
        )
