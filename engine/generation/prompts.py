"""Prompt text -> the token IDs the model sees, without letting user text forge turns.

HF tokenizers read special-token text (``<|eot_id|>``, ``<|start_header_id|>``) as the special
token itself, and ``apply_chat_template`` encodes the rendered conversation in one piece, so a
user could close their own turn and write a system turn or an assistant prefill. Here the
template's own text (before and after the user content) is encoded with its special tokens, and
the user content is encoded as plain text: ``<|eot_id|>`` typed by a user becomes the ordinary
tokens ``<``, ``|``, ``e``... For text without special-token look-alikes the IDs are exactly
``apply_chat_template``'s (tests hold both to that).

Raw mode (``chat: false``) is the caller writing the whole sequence; special-token text is
parsed there only when the request asks for it (``parse_special_tokens: true``).
"""

from __future__ import annotations

from typing import Any

# Private-use code points: survive the template's trimming and never occur in its own text.
_SENTINEL = "\ue000user-content\ue001"


class TemplateError(RuntimeError):
    """The chat template does not place the user content verbatim between fixed text."""


class PromptEncoder:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        frame = self._render(_SENTINEL)
        before, found, after = frame.partition(_SENTINEL)
        if not found or _SENTINEL in after:
            raise TemplateError("the chat template must place the user content exactly once")
        self._before, self._after = before, after
        # A tokenizer parsing special tokens splits the text at them and encodes each piece
        # between on its own, so ordinary text next to the user content ("user\n" in
        # ChatML) can merge with it ("\n  " is one token). That text is encoded together
        # with the content; only the template's pieces up to its special tokens are fixed.
        specials = [t for t in tokenizer.get_added_vocab() if t]
        head_end = max((before.rfind(t) + len(t) for t in specials if t in before), default=0)
        tail_start = min((after.find(t) for t in specials if t in after), default=len(after))
        self._head, self._glue_before = before[:head_end], before[head_end:]
        self._glue_after, self._tail = after[:tail_start], after[tail_start:]
        # The template's own text, special tokens parsed (it is ours, not the user's).
        self._head_ids = self._encode(self._head, parse_special=True)
        self._tail_ids = self._encode(self._tail, parse_special=True)

    def _render(self, content: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def _encode(self, text: str, *, parse_special: bool, bos: bool = False) -> list[int]:
        if not text:
            return self.tokenizer.encode("", add_special_tokens=True) if bos else []
        ids = self.tokenizer.encode(
            text, add_special_tokens=bos, split_special_tokens=not parse_special
        )
        return [int(i) for i in ids]

    def user_content(self, text: str) -> str:
        """The user text as the template writes it (Llama-3.1's template trims it)."""
        rendered = self._render(text)
        end = len(rendered) - len(self._after)
        if (
            end < len(self._before)
            or not rendered.startswith(self._before)
            or not rendered.endswith(self._after)
        ):
            raise TemplateError("the chat template's fixed text depends on the user content")
        return rendered[len(self._before) : end]

    def chat(self, text: str) -> list[int]:
        """One user turn plus the generation prompt; the user text is never parsed for
        special tokens. The template writes BOS itself: exactly one BOS."""
        middle = self._glue_before + self.user_content(text) + self._glue_after
        content = self._encode(middle, parse_special=False)
        return [*self._head_ids, *content, *self._tail_ids]

    def raw(self, text: str, *, parse_special_tokens: bool = False) -> list[int]:
        """BOS then the text; special-token text is parsed only when asked."""
        return self._encode(text, parse_special=parse_special_tokens, bos=True)

    def encode(self, text: str, *, chat: bool, parse_special_tokens: bool = False) -> list[int]:
        return (
            self.chat(text) if chat else self.raw(text, parse_special_tokens=parse_special_tokens)
        )
