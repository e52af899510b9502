"""Per-stream KV caches: a streamed run extracts its sequence in chunks (the prompt, then the
output as it grows), and each chunk's forward reuses the keys and values of the positions
before it instead of running the whole prefix again.

A stream is named by the client (``stream_id`` on ``/extract_features``). Its cache holds the
token ids it has seen, the KV of blocks 0..depth-1 for them, and its size in bytes. Bounded in
count and in bytes (least recently used goes first) and evicted after ``idle_s`` without use;
the client's last chunk (``stream_end``) drops it. A cache that is gone (evicted, another
replica, a restart) only costs work: the next chunk recomputes the prefix.

Used by the batcher's worker thread (take, compute, put back) and swept from the event loop, so
every method holds one lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Defaults (Settings: SAE_SERVICE_STREAM_CACHE_*).
MAX_STREAMS = 64
MAX_BYTES = 1 << 30
IDLE_S = 60.0


@dataclass
class StreamState:
    token_ids: list[int]
    depth: int  # blocks 0..depth-1 are cached
    kv: Any  # transformers' DynamicCache
    nbytes: int
    last_used: float = 0.0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evicted: int = 0  # for count, bytes or idleness
    too_big: int = 0  # a state over the byte bound is not kept


class StreamCaches:
    def __init__(
        self,
        *,
        max_streams: int = MAX_STREAMS,
        max_bytes: int = MAX_BYTES,
        idle_s: float = IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_streams, self.max_bytes, self.idle_s = max_streams, max_bytes, idle_s
        self._clock = clock
        self._states: OrderedDict[str, StreamState] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._states)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def take(self, stream_id: str, token_ids: list[int], depth: int) -> StreamState | None:
        """The stream's state, removed while its chunk computes, if it covers a prefix of
        ``token_ids`` with exactly ``depth`` blocks; None (a miss) otherwise."""
        with self._lock:
            self._sweep_locked()
            state = self._states.pop(stream_id, None)
            if state is not None:
                self._bytes -= state.nbytes
            n = len(state.token_ids) if state is not None else 0
            if (
                state is None
                or state.depth != depth
                or n > len(token_ids)
                or token_ids[:n] != state.token_ids
            ):
                self.stats.misses += 1
                return None
            self.stats.hits += 1
            return state

    def put(self, stream_id: str, state: StreamState) -> None:
        """Keep a state (most recently used); evicts the least recently used over the bounds."""
        with self._lock:
            old = self._states.pop(stream_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            if state.nbytes > self.max_bytes:
                self.stats.too_big += 1
                return
            state.last_used = self._clock()
            self._states[stream_id] = state
            self._bytes += state.nbytes
            while len(self._states) > self.max_streams or self._bytes > self.max_bytes:
                self._evict_oldest_locked()

    def drop(self, stream_id: str) -> None:
        with self._lock:
            state = self._states.pop(stream_id, None)
            if state is not None:
                self._bytes -= state.nbytes

    def sweep(self) -> None:
        """Evict the states idle for ``idle_s`` or longer."""
        with self._lock:
            self._sweep_locked()

    def _sweep_locked(self) -> None:
        cutoff = self._clock() - self.idle_s
        while self._states:
            oldest = next(iter(self._states.values()))
            if oldest.last_used > cutoff:
                break
            self._evict_oldest_locked()

    def _evict_oldest_locked(self) -> None:
        _, state = self._states.popitem(last=False)
        self._bytes -= state.nbytes
        self.stats.evicted += 1
