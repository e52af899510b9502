"""Stream chunks of one batch in one padded forward, as plain jobs already are.

Each stream chunk runs the positions its KV cache (``stream_cache.py``) lacks. Chunks that
arrive within the batching window and read the same depth go through one forward: their
caches joined into one of B rows (each row's past left-padded to the longest past), their new
tokens right-padded to the longest, an attention mask that hides both paddings and each row's
own position ids (so rotary embeddings see the positions a forward of its own would). Under the
causal mask a real query never sees a right pad (it comes later) and the mask hides the left
pads, so every row computes what its own forward would, up to float summation order. Each row's
part of the grown cache is cut back out and kept as that stream's cache.

One chunk alone, or a model whose cache layers are not plain growing ones (sliding windows),
takes its own forward (``one_stream``).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from engine.sae.residual import ResidualModel
from engine.sae.stream_cache import StreamCaches, StreamState

# (rows at the job's layer for the positions its cache lacked, first such position, cache hit)
StreamRows = tuple[torch.Tensor, int, bool]


def take_state(model: ResidualModel, caches: StreamCaches, job) -> tuple[StreamState, bool]:
    """The job's cache state, cut back to the chunk's ``from_position``; an empty one on a miss
    (the whole sequence runs). Returns (state, hit)."""
    depth = job.meta.layer + 1
    ids = job.token_ids
    state = caches.take(job.stream.stream_id, ids, depth)
    wanted = job.stream.from_position
    if state is not None and len(state.token_ids) > wanted:  # a chunk asked again
        state.kv.crop(wanted)
        state.token_ids = state.token_ids[:wanted]
    hit = state is not None and 0 < len(state.token_ids) < len(ids)
    if state is None or not hit:
        state = StreamState(token_ids=[], depth=depth, kv=model.new_cache(), nbytes=0)
    return state, hit


def keep_state(model: ResidualModel, caches: StreamCaches, job, state: StreamState) -> None:
    """Keep the grown cache for the stream's next chunk (not after its last)."""
    if not job.stream.end:
        state.token_ids = list(job.token_ids)
        state.nbytes = len(job.token_ids) * model.kv_bytes_per_token(state.depth)
        caches.put(job.stream.stream_id, state)


def batchable(model: ResidualModel, depth: int) -> bool:
    probe = model.new_cache()
    layers = getattr(probe, "layers", [])
    return len(layers) >= depth and all(type(layer) is DynamicLayer for layer in layers[:depth])


def one_stream(model: ResidualModel, caches: StreamCaches, job) -> StreamRows:
    """A chunk's own forward over the positions its cache lacks."""
    state, hit = take_state(model, caches, job)
    done = len(state.token_ids)
    new = torch.tensor([job.token_ids[done:]], dtype=torch.long)
    rows = model.residuals(new, {job.meta.layer}, cache=state.kv)[job.meta.layer][0]
    keep_state(model, caches, job, state)
    return rows, done, hit


def many_streams(model: ResidualModel, caches: StreamCaches, jobs: list) -> list[StreamRows]:
    """Chunks of one depth (and layer) in one forward; see the module's docstring."""
    layer = jobs[0].meta.layer
    taken = [take_state(model, caches, job) for job in jobs]
    pasts = [len(state.token_ids) for state, _ in taken]
    news = [len(job.token_ids) - p for job, p in zip(jobs, pasts, strict=True)]
    big_p, big_n = max(pasts), max(news)
    rows_n = len(jobs)
    ids = torch.zeros((rows_n, big_n), dtype=torch.long)
    mask = torch.zeros((rows_n, big_p + big_n), dtype=torch.long)
    positions = torch.zeros((rows_n, big_n), dtype=torch.long)
    for row, (job, p, n) in enumerate(zip(jobs, pasts, news, strict=True)):
        ids[row, :n] = torch.tensor(job.token_ids[p:], dtype=torch.long)
        mask[row, big_p - p : big_p + n] = 1
        positions[row] = torch.arange(p, p + big_n)
    joined = model.new_cache()
    if big_p:
        for index in range(layer + 1):
            keys, values = [], []
            for (state, _), p in zip(taken, pasts, strict=True):
                layer_kv = state.kv.layers[index] if p else None
                keys.append(_left_pad(layer_kv.keys if layer_kv else None, big_p, taken, index))
                values.append(_left_pad(layer_kv.values if layer_kv else None, big_p, taken, index))
            joined.update(torch.cat(keys), torch.cat(values), index)
    out = model.residuals(ids, {layer}, cache=joined, attention_mask=mask, position_ids=positions)[
        layer
    ]
    results: list[StreamRows] = []
    for row, (job, (state, hit), p, n) in enumerate(zip(jobs, taken, pasts, news, strict=True)):
        if not job.stream.end:
            state.kv = model.new_cache()
            for index in range(layer + 1):
                grown = joined.layers[index]
                state.kv.update(
                    grown.keys[row : row + 1, :, big_p - p : big_p + n].clone(),
                    grown.values[row : row + 1, :, big_p - p : big_p + n].clone(),
                    index,
                )
            keep_state(model, caches, job, state)
        results.append((out[row, :n], p, hit))
    return results


def _left_pad(tensor: torch.Tensor | None, length: int, taken: list, index: int) -> torch.Tensor:
    """[1, heads, p, dim] -> [1, heads, length, dim], zeros first (a missing past: all zeros,
    shaped as another row's)."""
    if tensor is None:
        like = next(s.kv.layers[index].keys for s, _ in taken if s.token_ids)
        return like.new_zeros((1, like.shape[1], length, like.shape[3]))
    pad = length - tensor.shape[2]
    if pad == 0:
        return tensor
    return torch.cat([tensor.new_zeros((1, tensor.shape[1], pad, tensor.shape[3])), tensor], 2)


def stream_rows(model: ResidualModel, caches: StreamCaches, jobs: list) -> list[StreamRows]:
    """Every stream chunk of a batch: those of one layer together (one forward), a lone chunk
    (or an unbatchable model) by itself. Results in the order of ``jobs``."""
    out: list[StreamRows | None] = [None] * len(jobs)
    by_layer: dict[int, list[int]] = {}
    for index, job in enumerate(jobs):
        by_layer.setdefault(job.meta.layer, []).append(index)
    for layer, indices in by_layer.items():
        if len(indices) == 1 or not batchable(model, layer + 1):
            for i in indices:
                out[i] = one_stream(model, caches, jobs[i])
            continue
        batch = many_streams(model, caches, [jobs[i] for i in indices])
        for i, rows in zip(indices, batch, strict=True):
            out[i] = rows
    return [rows for rows in out if rows is not None]
