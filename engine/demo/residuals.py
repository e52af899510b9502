"""Residuals for SAE training, collected with the SAE service's own truncated forward
(`engine/sae/residual.py`: blocks 0..L only) in length-bucketed batches, so that short texts are
not padded to the longest one.

Position 0 of every sequence is left out: it is the BOS token in Llama-3 and an attention
sink in SmolLM2 (its residual norm there is ~100x that of every other position), carrying no
information about the text and dominating any reconstruction loss. A few later tokens are sinks
too (in SmolLM2 mostly position 1 after a short first token: ~0.02 % of tokens, ~70 % of the
variance); ``drop_sinks`` leaves out every residual whose norm exceeds ``SINK_NORM_RATIO`` x the
median, so that training and FVU measure the text's residuals, not a handful of outliers.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from engine.demo.progress import Say, say_flush
from engine.sae.encode_batch import length_buckets
from engine.sae.residual import ResidualModel

MAX_TEXT_TOKENS = 256
SINK_NORM_RATIO = 10.0
CHAT_EVERY = 8  # every 8th text is a user turn in the model's chat template, as the demo sees


@dataclass(frozen=True)
class Sequences:
    token_ids: list[list[int]]
    chat: list[bool]

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.token_ids)


@dataclass
class ResidualSet:
    """One row per kept token (position >= 1 of each sequence)."""

    acts: torch.Tensor  # [N, d_in] float32
    token_ids: torch.Tensor  # [N] int64
    seq: torch.Tensor  # [N] int64, index into the Sequences
    pos: torch.Tensor  # [N] int64, position in its sequence
    forward_tokens: int  # tokens run through the model (position 0 included)
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.forward_tokens / self.seconds if self.seconds > 0 else 0.0

    def subset(self, mask: torch.Tensor) -> ResidualSet:
        return ResidualSet(
            self.acts[mask],
            self.token_ids[mask],
            self.seq[mask],
            self.pos[mask],
            self.forward_tokens,
            self.seconds,
        )


def drop_sinks(residuals: ResidualSet) -> tuple[ResidualSet, int]:
    """The residuals without attention-sink outliers, and how many were left out."""
    norms = residuals.acts.norm(dim=-1)
    keep = norms <= SINK_NORM_RATIO * norms.median()
    return residuals.subset(keep), int((~keep).sum())


def tokenize_texts(tokenizer, texts: list[str], *, budget: int, seed: int = 0) -> Sequences:
    """Texts in a seeded random order, tokenized as the services see them, until ``budget``
    tokens: plain (with the tokenizer's own special tokens, e.g. Llama's BOS), or every
    ``CHAT_EVERY``-th one as a user turn of the chat template (when the model has one)."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    ids: list[list[int]] = []
    chat: list[bool] = []
    total = 0
    for n, index in enumerate(order):
        if total >= budget:
            break
        as_chat = has_template and n % CHAT_EVERY == CHAT_EVERY - 1
        if as_chat:
            seq = tokenizer.apply_chat_template(
                [{"role": "user", "content": texts[index]}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        else:
            seq = tokenizer(texts[index])["input_ids"]
        seq = [int(t) for t in seq[:MAX_TEXT_TOKENS]]
        if len(seq) < 2:
            continue
        ids.append(seq)
        chat.append(as_chat)
        total += len(seq)
    return Sequences(ids, chat)


def plan_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Sequences of similar length together (the SAE service's bucketing, padding within
    10 %), each batch at most ``batch_tokens`` padded tokens."""
    batches: list[list[int]] = []
    for bucket in length_buckets(lengths, max_padding=1.1):
        longest = lengths[bucket[0]]
        per_batch = max(1, batch_tokens // longest)
        batches.extend(bucket[i : i + per_batch] for i in range(0, len(bucket), per_batch))
    return batches


def collect_residuals(
    model: ResidualModel,
    sequences: Sequences,
    layer: int,
    *,
    batch_tokens: int = 4096,
    say: Say = say_flush,
) -> ResidualSet:
    lengths = [len(s) for s in sequences.token_ids]
    batches = plan_batches(lengths, batch_tokens)
    acts, token_ids, seq_index, positions = [], [], [], []
    started = time.perf_counter()
    done_tokens, next_report = 0, 0.0
    for batch in batches:
        width = lengths[batch[0]]
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : lengths[index]] = torch.tensor(sequences.token_ids[index])
        hidden = model.residuals(ids, {layer})[layer]
        for row, index in enumerate(batch):
            n = lengths[index]
            acts.append(hidden[row, 1:n].float())
            token_ids.append(ids[row, 1:n])
            seq_index.append(torch.full((n - 1,), index, dtype=torch.long))
            positions.append(torch.arange(1, n))
        done_tokens += sum(lengths[i] for i in batch)
        elapsed = time.perf_counter() - started
        if elapsed >= next_report:
            say(
                f"    residuals: {done_tokens}/{sequences.tokens} tokens "
                f"({done_tokens / max(elapsed, 1e-9):.0f} tokens/s)"
            )
            next_report = elapsed + 10.0
    seconds = time.perf_counter() - started
    return ResidualSet(
        torch.cat(acts),
        torch.cat(token_ids),
        torch.cat(seq_index),
        torch.cat(positions),
        forward_tokens=sequences.tokens,
        seconds=seconds,
    )
