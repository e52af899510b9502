"""Per-position token text and the special-token flag, from the model's tokenizer."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


class TokenTable:
    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        special = set(tokenizer.all_special_ids)
        # Llama 3's chat-template and reserved tokens are added tokens marked special.
        special.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
        self.special_ids = frozenset(special)
        self._text: dict[int, str] = {}

    def text(self, token_ids: list[int]) -> list[str]:
        """Each token decoded on its own (readable text rather than raw BPE pieces)."""
        missing = [i for i in dict.fromkeys(token_ids) if i not in self._text]
        if missing:
            decoded = self.tokenizer.batch_decode([[i] for i in missing])
            self._text.update(zip(missing, decoded, strict=True))
        return [self._text[i] for i in token_ids]

    def describe(self, token_ids: list[int], output_start: int | None) -> list[dict]:
        start = len(token_ids) if output_start is None else output_start
        return [
            {
                "position": pos,
                "token_id": tid,
                "token": text,
                "segment": "output" if pos >= start else "prompt",
                "special": tid in self.special_ids,
            }
            for pos, (tid, text) in enumerate(zip(token_ids, self.text(token_ids), strict=True))
        ]
