"""What a run may cost, bounded before any GPU work: positions x ``sae_top_k`` and the stored
timeline's bytes.

First a cheap bound from the prompt and ``max_tokens`` alone (no tokenizer, no upstream call):
the prompt's token count is bounded by its UTF-8 bytes (a byte-level BPE token holds at least
one byte) plus the chat template's own tokens. Only when that bound is over a cap does the
service ask the engine for the prompt's exact token count (``POST /tokenize``, as /generate
would feed it) and decide on that count plus ``max_tokens`` (``ActivationService._check_budget``):
a 9,000-character prompt of ~2,000 tokens is not refused for its 9,000 bytes. A timeline
entry's JSON is bounded by fixed per-position and per-feature sizes. Both bounds are upper
bounds, so a run that passes fits.
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
    """The cheap bound: the prompt's UTF-8 bytes + the template's tokens + ``max_tokens``."""
    return len(prompt.encode("utf-8")) + TEMPLATE_TOKENS + max_tokens


def stored_bytes_bound(positions: int, sae_top_k: int) -> int:
    """Worst-case stored bytes of a timeline: its JSON and its packed copy."""
    per_position = ENTRY_BYTES + PACKED_ENTRY_BYTES
    per_feature = FEATURE_BYTES + PACKED_FEATURE_BYTES
    return positions * (per_position + sae_top_k * per_feature)


def over_budget(
    positions: int, sae_top_k: int, *, max_features: int, max_bytes: int, exact: bool
) -> InvalidRequest | None:
    """The 422 ``timeline_too_large`` for ``positions`` over either cap, else None.
    ``exact``: ``positions`` is the engine's count (+ ``max_tokens``), not the cheap bound."""
    what = f"{positions} positions" if exact else f"up to {positions} positions"
    features = positions * sae_top_k
    if features > max_features:
        return InvalidRequest(
            f"{what} x sae_top_k {sae_top_k} = {features} features is over the cap of "
            f"{max_features}: shorten the prompt, or lower max_tokens or sae_top_k",
            code="timeline_too_large",
        )
    size = stored_bytes_bound(positions, sae_top_k)
    if size > max_bytes:
        return InvalidRequest(
            f"the timeline of {what} could take up to {size} bytes, over the cap of "
            f"{max_bytes}: shorten the prompt, or lower max_tokens or sae_top_k",
            code="timeline_too_large",
        )
    return None
