"""Which SAEs this process serves: ``(sae_id, layer)`` -> folder, and an LRU of loaded ones.

Folders come from settings (``--sae-dir``); each is one SAE folder or a folder of them (e.g. a
whole Llama Scope release, one sub-folder per layer). Metadata is read at start-up; weights
load on first use and stay until ``max_loaded`` others are newer.

Part of the compute path (torch, transformers and safetensors only): its failures are plain
exceptions below, which the service (``serving.py``) maps to the wire's errors.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from engine.sae.encoder import SaeEncoder, SaeMeta
from engine.sae.layouts import detect_layout, load_weights, read_meta
from engine.sae.sidecars import Sidecars

logger = logging.getLogger(__name__)

SaeKey = tuple[str, int]


class UnknownSae(LookupError):
    """No SAE of this ``sae_id`` is served."""


class UnknownSaeLayer(LookupError):
    """The SAE is served, but not at this layer."""


class SaeLoadFailed(RuntimeError):
    """An SAE's weights could not be read (that SAE only; the others keep working)."""


def discover(folder: Path) -> list[SaeMeta]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"SAE folder {folder} does not exist")
    if detect_layout(folder) is not None:
        return [read_meta(folder)]
    found = [read_meta(sub) for sub in sorted(folder.iterdir()) if detect_layout(sub)]
    if not found:
        raise ValueError(f"{folder}: neither an SAE folder nor a folder of SAE folders")
    return sorted(found, key=lambda m: m.layer)


class SaeRegistry:
    def __init__(
        self,
        folders: list[Path],
        *,
        max_loaded: int,
        device,
        dtype,
        labels_filename: str,
        examples_filename: str,
    ):
        self.entries: dict[SaeKey, SaeMeta] = {}
        for folder in folders:
            for meta in discover(folder):
                key = (meta.sae_id, meta.layer)
                if key in self.entries:
                    raise ValueError(f"SAE {key} is served from two folders")
                self.entries[key] = meta
        self.default: SaeKey = next(iter(self.entries))
        self.max_loaded = max_loaded
        self.device, self.dtype = device, dtype
        self.sidecars = Sidecars(
            labels_filename=labels_filename, examples_filename=examples_filename
        )
        self._loaded: OrderedDict[SaeKey, SaeEncoder] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, sae_id: str | None, layer: int | None) -> SaeMeta:
        """The SAE a request names (None -> defaults); UnknownSae / UnknownSaeLayer otherwise."""
        sae_id = sae_id or self.default[0]
        layers = sorted(lay for sid, lay in self.entries if sid == sae_id)
        if not layers:
            known = sorted({sid for sid, _ in self.entries})
            raise UnknownSae(f"unknown sae_id {sae_id!r}; served: {known}")
        if layer is None:
            layer = self.default[1] if sae_id == self.default[0] else layers[0]
        if layer not in layers:
            raise UnknownSaeLayer(
                f"sae_id {sae_id!r} has no SAE at layer {layer}; layers: {layers}"
            )
        return self.entries[(sae_id, layer)]

    def encoder(self, meta: SaeMeta) -> SaeEncoder:
        key = (meta.sae_id, meta.layer)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            logger.info("loading SAE %s from %s", key, meta.folder)
            try:
                enc = SaeEncoder(meta, load_weights(meta), device=self.device, dtype=self.dtype)
            except Exception as exc:  # unreadable or inconsistent weights on disk
                logger.exception("could not load SAE %s", key)
                raise SaeLoadFailed(
                    f"SAE {meta.sae_id!r} layer {meta.layer} could not be loaded from "
                    f"{meta.folder.name}: {type(exc).__name__}"
                ) from exc
            self._loaded[key] = enc
            while len(self._loaded) > self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                logger.info("evicted SAE %s", evicted)
            return enc

    def loaded(self) -> list[SaeKey]:
        with self._lock:
            return list(self._loaded)

    def labels(self, meta: SaeMeta) -> dict[int, str]:
        """Labels from ``labels.json`` beside the SAE (engine/sae/sidecars.py)."""
        return self.sidecars.labels(meta)
