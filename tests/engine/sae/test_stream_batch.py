"""Stream chunks in one padded forward give what each chunk's own forward gives, and keep caches
that serve the next chunk alike (engine/sae/stream_batch.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from engine.sae.residual import ResidualModel
from engine.sae.stream_batch import one_stream, stream_rows
from engine.sae.stream_cache import StreamCaches

LAYER = 16


@dataclass
class Meta:
    layer: int = LAYER


@dataclass
class Chunk:
    stream_id: str
    end: bool = False
    from_position: int = 0


@dataclass
class Job:
    token_ids: list[int]
    stream: Chunk
    meta: Meta


@pytest.fixture(scope="module")
def truncated(tiny_model_dir) -> ResidualModel:
    return ResidualModel.load(
        str(tiny_model_dir), device=torch.device("cpu"), dtype=torch.float32, keep_layers=17
    )


def chunks(sequences: list[list[int]]) -> list[list[tuple[list[int], int, bool]]]:
    """Per step, each stream's (prefix, from_position, end): a prompt, then two growths of
    different sizes, the last ending the stream; streams of different lengths."""
    steps = []
    cuts = [(0.4, 0.0), (0.7, 0.4), (1.0, 0.7)]
    for k, (upto, since) in enumerate(cuts):
        step = []
        for ids in sequences:
            end, start = max(1, int(len(ids) * upto)), int(len(ids) * since)
            step.append((ids[:end], max(1, start) if since else 0, k == len(cuts) - 1))
        steps.append(step)
    return steps


def test_batched_chunks_equal_their_own_forwards(truncated, sequences):
    streams = sequences[:4]
    batched, alone = StreamCaches(), StreamCaches()
    seen = 0
    for step in chunks(streams):
        jobs = [
            Job(prefix, Chunk(f"s{i}", end, start), Meta())
            for i, (prefix, start, end) in enumerate(step)
        ]
        got = stream_rows(truncated, batched, jobs)
        for job, (rows, first, hit) in zip(jobs, got, strict=True):
            want, want_first, want_hit = one_stream(truncated, alone, job)
            assert (first, hit) == (want_first, want_hit)
            assert rows.shape[0] == len(job.token_ids) - first
            torch.testing.assert_close(rows, want, rtol=1e-5, atol=1e-5)
            seen += 1
        assert len(batched) == len(alone)
    assert seen == 12
    assert len(batched) == 0  # the last chunks ended every stream


def test_batched_chunks_equal_one_forward_of_the_whole_sequence(truncated, sequences):
    streams = sequences[:3]
    caches = StreamCaches()
    rows: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(streams))}
    for step in chunks(streams):
        jobs = [
            Job(prefix, Chunk(f"w{i}", end, start), Meta())
            for i, (prefix, start, end) in enumerate(step)
        ]
        for i, (got, _first, _hit) in enumerate(stream_rows(truncated, caches, jobs)):
            rows[i].append(got)
    for i, ids in enumerate(streams):
        whole = truncated.residuals(torch.tensor([ids]), {LAYER})[LAYER][0]
        torch.testing.assert_close(torch.cat(rows[i]), whole, rtol=1e-5, atol=1e-5)
