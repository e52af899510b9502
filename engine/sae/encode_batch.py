"""The maths of one SAE batch, pure torch (no asyncio): a right-padded forward per length
bucket (up to the highest layer any job reads), the batch's stream chunks over only the positions
their KV caches (``stream_cache.py``) lack, together in one padded forward (``stream_batch.py``),
then per SAE one encode matmul over every real token
(chunked to bound memory) and one ``torch.topk``. No Python loop over positions for the maths.
The asyncio batcher (``batching.py``) gathers the jobs and runs ``compute_batch`` in a thread.

"SAE work" is the number of positions run through the truncated forward: a plain job's whole
sequence, a stream chunk's new positions (its whole sequence when its cache was absent).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

import torch

from engine.sae.encoder import SaeMeta
from engine.sae.registry import SaeRegistry
from engine.sae.residual import ResidualModel
from engine.sae.stream_batch import stream_rows
from engine.sae.stream_cache import StreamCaches

MAX_PADDING_RATIO = 1.25  # padded / real tokens allowed in one forward
ENCODE_CHUNK_TOKENS = 2048  # tokens per encode matmul: bounds the [tokens, d_sae] buffer


@dataclass(frozen=True)
class StreamChunk:
    """A chunk of a client's stream: reuse (and keep, unless ``end``) its KV cache; positions
    from ``from_position`` on are wanted (a cache past it is cut back to it)."""

    stream_id: str
    end: bool = False
    from_position: int = 0


@dataclass
class EncodeJob:
    token_ids: list[int]
    meta: SaeMeta
    top_k: int | None = None  # extract: the k largest activations per position
    feature_ids: list[int] | None = None  # analyze: these features at every position
    stream: StreamChunk | None = None
    # Set by Batcher.submit before the job is queued: every queued job has one.
    future: asyncio.Future = field(default=None, repr=False)  # type: ignore[arg-type]


@dataclass
class EncodeResult:
    top_values: list[list[float]] | None = None  # [T][k]
    top_indices: list[list[int]] | None = None
    feature_acts: list[list[float]] | None = None  # [F][T]
    feature_max: list[float] | None = None  # [F]
    feature_argmax: list[int] | None = None  # [F], first position on ties
    batch_size: int = 1
    compute_ms: float = 0.0
    error: Exception | None = None
    # The rows above start at this position (a stream chunk's cached prefix is not returned).
    first_position: int = 0
    work_positions: int = 0  # positions this job ran through the truncated forward
    cache: str | None = None  # a stream chunk's cache: "hit" or "miss"


def length_buckets(lengths: list[int], max_padding: float) -> list[list[int]]:
    """Split a batch into forwards of similar lengths: longest first, a bucket grows while its
    padded size stays within ``max_padding`` x its real tokens (padding is pure waste on a
    CPU and costs memory on a GPU)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    buckets: list[list[int]] = []
    real = 0
    for index in order:
        bucket = buckets[-1] if buckets else None
        if bucket and lengths[bucket[0]] * (len(bucket) + 1) <= max_padding * (
            real + lengths[index]
        ):
            bucket.append(index)
            real += lengths[index]
        else:
            buckets.append([index])
            real = lengths[index]
    return buckets


def compute_batch(
    model: ResidualModel,
    registry: SaeRegistry,
    jobs: list[EncodeJob],
    chunk_tokens: int,
    max_padding: float = MAX_PADDING_RATIO,
    caches: StreamCaches | None = None,
) -> list[EncodeResult]:
    """The maths for one batch (runs in a worker thread): a forward per length bucket (to the
    deepest layer any job reads) and one per stream chunk, then per SAE one encode over all
    real tokens."""
    started = time.perf_counter()
    results = [EncodeResult(batch_size=len(jobs)) for _ in jobs]
    per_job: dict[int, dict[int, torch.Tensor]] = {}  # job -> layer -> [T, d] (real tokens)
    streamed = [i for i, job in enumerate(jobs) if job.stream is not None and caches is not None]
    if streamed:
        assert caches is not None
        # The batch's stream chunks of one layer in one padded forward (stream_batch.py).
        for index, (rows, first, hit) in zip(
            streamed, stream_rows(model, caches, [jobs[i] for i in streamed]), strict=True
        ):
            per_job[index] = {jobs[index].meta.layer: rows}
            results[index].first_position = first
            results[index].cache = "hit" if hit else "miss"
    plain = [i for i in range(len(jobs)) if i not in per_job]
    layers = {jobs[i].meta.layer for i in plain}
    plain_lengths = [len(jobs[i].token_ids) for i in plain]
    for bucket in length_buckets(plain_lengths, max_padding):
        members = [plain[b] for b in bucket]
        longest = len(jobs[members[0]].token_ids)
        ids = torch.zeros((len(members), longest), dtype=torch.long)
        for row, index in enumerate(members):
            n = len(jobs[index].token_ids)
            ids[row, :n] = torch.tensor(jobs[index].token_ids, dtype=torch.long)
        residuals = model.residuals(ids, layers)
        for row, index in enumerate(members):
            n = len(jobs[index].token_ids)
            per_job[index] = {lay: r[row, :n] for lay, r in residuals.items()}
    # Rows each job has (a stream chunk: its new positions only).
    lengths = [int(per_job[i][jobs[i].meta.layer].shape[0]) for i in range(len(jobs))]
    for result, n in zip(results, lengths, strict=True):
        result.work_positions = n
    groups: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    for index, job in enumerate(jobs):
        groups[(job.meta.sae_id, job.meta.layer)].append(index)
    for indices in groups.values():
        meta = jobs[indices[0]].meta
        try:
            encoder = registry.encoder(meta)
        except Exception as exc:  # this SAE's jobs fail; the rest of the batch goes on
            for i in indices:
                results[i].error = exc
            continue
        x = torch.cat([per_job[i][meta.layer] for i in indices])  # real tokens only, [N, d]
        k = max((jobs[i].top_k or 0) for i in indices)
        wanted = sorted({f for i in indices for f in (jobs[i].feature_ids or [])})
        top_v, top_i, picked = [], [], []
        for start in range(0, x.shape[0], chunk_tokens):
            acts = encoder.encode(x[start : start + chunk_tokens])
            if k:
                values, idx = torch.topk(acts, k, dim=-1)
                top_v.append(values.float().cpu())
                top_i.append(idx.cpu())
            if wanted:
                picked.append(acts[:, wanted].float().cpu())
        all_v = torch.cat(top_v) if top_v else None
        all_i = torch.cat(top_i) if top_i else None
        all_picked = torch.cat(picked) if picked else None
        offset = 0
        column = {f: c for c, f in enumerate(wanted)}
        for i in indices:
            rows = slice(offset, offset + lengths[i])
            offset += lengths[i]
            job = jobs[i]
            if job.top_k and all_v is not None and all_i is not None:
                results[i].top_values = all_v[rows, : job.top_k].tolist()
                results[i].top_indices = all_i[rows, : job.top_k].tolist()
            if job.feature_ids and all_picked is not None:
                cols = [column[f] for f in job.feature_ids]
                acts = all_picked[rows][:, cols].T  # [F, T]
                best = acts.max(dim=1)
                results[i].feature_acts = acts.tolist()
                results[i].feature_max = best.values.tolist()
                results[i].feature_argmax = best.indices.tolist()
    elapsed = (time.perf_counter() - started) * 1000
    for result in results:
        result.compute_ms = elapsed
    return results
