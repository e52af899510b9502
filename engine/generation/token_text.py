"""Each output token's share of vLLM's text, for token events.

vLLM's own detokenizer (tokenizers' `DecodeStream`, seeded with the prompt) never emits half a
multi-byte character: a token that ends mid-character contributes "" and the character comes
with the token that completes it. vLLM hands its text over per output, and an output carries
several tokens when the consumer falls behind; we step a second `DecodeStream` the same way
to split that text per token. The pieces are always vLLM's text: if our split does not add up
to it (a tokenizer without a Rust backend, or any drift), the whole text goes to the group's
last token. So the token texts concatenate to `output_text`, always.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class TokenTexts:
    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self._stream: Any = None
        self._tokenizer: Any = getattr(tokenizer, "_tokenizer", None)
        try:
            from tokenizers import Tokenizer
            from tokenizers.decoders import DecodeStream

            if isinstance(self._tokenizer, Tokenizer):
                self._stream = DecodeStream(ids=prompt_ids, skip_special_tokens=True)
        except (ImportError, TypeError):  # an older tokenizers: no prefill; the fallback splits
            self._stream = None

    def _step(self, token_id: int) -> str | None:
        if self._stream is None:
            return None
        try:
            return self._stream.step(self._tokenizer, token_id) or ""
        except Exception:  # DecodeStream's rare invalid-prefix errors: stop splitting
            logger.warning("token text split stopped (decode stream error)", exc_info=True)
            self._stream = None
            return None

    def split(self, token_ids: list[int], text: str) -> list[str]:
        """``text`` (vLLM's text for ``token_ids``) as one piece per token."""
        pieces = [self._step(t) for t in token_ids]
        if all(p is not None for p in pieces) and "".join(pieces) == text:  # type: ignore[arg-type]
            return pieces  # type: ignore[return-value]
        if self._stream is not None:
            logger.debug("token text split differs from vLLM's; whole text on the last token")
        return [""] * (len(token_ids) - 1) + [text] if token_ids else []
