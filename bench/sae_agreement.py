"""How far the SAE service's top-k answers agree with a float32 / float64 reference of the same
weights: the correctness half of ``bench/gpu_check.py``.

The reference is independent of the service's code: transformers' own ``LlamaModel.forward`` in
float32 (eager attention, blocks 0..L of the same weights, block L's output taken by a hook) and
SAELens' JumpReLU formula in float64 on the raw, unfolded weights.

Correctness thresholds (``Thresholds``; bf16 service vs the f32/f64 reference, per position,
over the features with a positive activation in each top-20). bf16 keeps 8 significant bits, and
with random weights the error is larger than with trained ones: measured on a CPU at full width
(17 blocks built one at a time, 2 x 128 positions, bf16 vs f32), the residual's relative error is
1.2% after block 0 and grows as the square root of the depth to 4.6% after block 16 (figure
``residual_rel_err``, reported, no threshold). A pre-activation's error is that error projected
on one encoder column (and a little larger, since ``x - b_dec`` is shorter than ``x``), while a
top-20 value sits ~3 spreads above the mean. The same measurement gave: shared values' relative
error median 0.83%, p99 3.4%, max 5.2% (of 4756 values); top-20 overlap 0.93 (min 0.80); no
swap farther than 10% from its cut. The small size (tests/bench) gives 0.4% / 1.7% / 3.1% and
0.98. So:
- max relative error of a shared value <= 15%: ~2.5x the largest seen (the max grows slowly with
  the sample: 1281 positions are ~25k values), allowing for GPU kernels rounding differently
  (cuBLAS' reduced-precision bf16 reductions, flash attention); a real fault (wrong layer,
  position, padding, bias fold) is off by tens of percent or more.
- median relative error <= 2%: ~2.4x the 0.83% seen; a systematic error that the max would miss
  (a 3-4% scale, a normalisation factor) moves the median past it.
- no swap outside a 10% band: bf16 may exchange features whose reference values lie within its
  error of the cut they cross (the 20th value, ~0.4% above the 21st for 32768 Gaussian-like
  pre-activations; or the JumpReLU threshold). A feature bf16 brings in must have a reference
  pre-activation at most 10% below that cut, one it leaves out a reference value at most 10%
  above bf16's cut: 10% is ~8 standard deviations of the value error seen, so only a fault
  lands outside.
- mean top-20 overlap >= 0.80: with value errors e and gaps s near rank 20 about e / s features
  a position cross the cut (0.93 seen); 0.80 allows for errors ~2.5x those seen, and a fault
  gives an overlap near 0.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from engine.sae.encode_batch import EncodeResult
from engine.sae.residual import ResidualModel


@dataclass(frozen=True)
class Thresholds:
    """Where bf16 rounding ends and a fault begins (the module docstring says why)."""

    max_rel_err: float = 0.15  # any value both top-k sets share
    median_rel_err: float = 0.02  # a systematic error (a scale, a bias) moves the median
    swap_band: float = 0.10  # how far from the cut it crossed a swapped feature may sit
    min_mean_overlap: float = 0.80


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class RandomSae:
    """The SAE as written to disk (float32, SAELens conventions), for the reference."""

    folder: Path
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor  # [d_sae]


@dataclass
class Correctness:
    sequences: int
    positions: int
    requests_per_batch: int
    mean_firing: float  # reference L0 per position
    full_top_k_positions: int  # positions where >= top_k features fire in the reference
    mean_overlap: float
    min_overlap: float
    max_rel_err: float
    p99_rel_err: float
    median_rel_err: float
    unexplained_swaps: int
    residual_rel_err_median: float  # diagnostic: the forward alone, one request, no threshold
    residual_rel_err_max: float
    thresholds: Thresholds
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def reference_model(model: ResidualModel, layer: int) -> torch.nn.Module:
    """Blocks 0..layer of the same weights in float32 (bf16 -> f32 is exact), run by
    transformers' own forward with plain (eager) attention."""
    from transformers import LlamaModel

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layer + 1
    config._attn_implementation = "eager"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with model.device:
            ref = LlamaModel(config)
    finally:
        torch.set_default_dtype(previous)
    kept = {
        name: tensor
        for name, tensor in model.base.state_dict().items()
        if not name.startswith("layers.") or int(name.split(".")[1]) <= layer
    }
    ref.load_state_dict(kept)
    return ref.eval()


@torch.inference_mode()
def reference_residual(ref: torch.nn.Module, token_ids: list[int], layer: int) -> torch.Tensor:
    """The output of block ``layer`` [T, d] (a hook: transformers' last hidden state is normed)."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        captured["x"] = output[0] if isinstance(output, tuple) else output

    handle = ref.layers[layer].register_forward_hook(hook)
    try:
        ref(torch.tensor([token_ids], device=ref.embed_tokens.weight.device), use_cache=False)
    finally:
        handle.remove()
    return captured["x"][0]


@torch.inference_mode()
def reference_pre(sae: RandomSae, x: torch.Tensor) -> torch.Tensor:
    """SAELens' pre-activations in float64, on the raw (unfolded) weights: [T, d_sae]."""
    wide = {"device": x.device, "dtype": torch.float64}
    return (x.to(**wide) - sae.b_dec.to(**wide)) @ sae.W_enc.to(**wide) + sae.b_enc.to(**wide)


@dataclass
class Tally:
    """Per-position comparison of the service's top-k with the reference."""

    top_k: int
    overlaps: list[float] = field(default_factory=list)
    rel_errs: list[float] = field(default_factory=list)
    unexplained: int = 0
    firing: list[int] = field(default_factory=list)

    def add_sequence(self, pre: torch.Tensor, theta: torch.Tensor, result: EncodeResult) -> None:
        """``pre`` [T, d_sae] float64 reference pre-activations, ``theta`` [d_sae] float64."""
        acts = torch.relu(pre) * (pre > theta)
        top = torch.topk(acts, self.top_k, dim=-1)
        self.firing.extend((acts > 0).sum(dim=-1).tolist())
        ref_rows = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        got_rows = zip(result.top_values, result.top_indices, strict=True)
        for p, ((ref_v, ref_i), (got_v, got_i)) in enumerate(zip(ref_rows, got_rows, strict=True)):
            ref = {f: v for f, v in zip(ref_i, ref_v, strict=True) if v > 0}
            got = {f: v for f, v in zip(got_i, got_v, strict=True) if v > 0}
            self._position(pre[p], theta, ref, got)

    def _position(self, pre, theta, ref: dict[int, float], got: dict[int, float]) -> None:
        shared = ref.keys() & got.keys()
        size = max(len(ref), len(got))
        self.overlaps.append(len(shared) / size if size else 1.0)
        self.rel_errs.extend(abs(got[f] - ref[f]) / ref[f] for f in shared)
        ref_cut = min(ref.values()) if len(ref) == self.top_k else None
        got_cut = min(got.values()) if len(got) == self.top_k else None
        band = THRESHOLDS.swap_band
        for f in got.keys() - ref.keys():
            # bf16 brought f in: it crossed the reference's rank cut, or its jump (not firing).
            x = float(pre[f])
            cuts = [ref_cut] if ref_cut is not None else []
            if x <= float(theta[f]):
                cuts.append(float(theta[f]))
            if any(x < (1 - band) * cut for cut in cuts):
                self.unexplained += 1
        for f in ref.keys() - got.keys():
            # bf16 left f out: below its own rank cut, or not firing at all.
            cut = got_cut if got_cut is not None else float(theta[f])
            if ref[f] > (1 + band) * cut:
                self.unexplained += 1


def check_correctness(
    model: ResidualModel,
    sae: RandomSae,
    token_lists: list[list[int]],
    results: list[EncodeResult],
    *,
    layer: int,
    top_k: int,
) -> Correctness:
    """The service's ``results`` for ``token_lists`` (requests submitted together) against the
    reference. Holds a float32 copy of blocks 0..layer while it runs."""
    ref = reference_model(model, layer)
    wide = {"dtype": torch.float64, "device": model.device}
    sae64 = replace(sae, W_enc=sae.W_enc.to(**wide), b_enc=sae.b_enc.to(**wide))
    sae64 = replace(sae64, b_dec=sae.b_dec.to(**wide))
    tally = Tally(top_k)
    theta = sae.threshold.double()
    resid_errs: list[float] = []
    try:
        for ids, result in zip(token_lists, results, strict=True):
            x_ref = reference_residual(ref, ids, layer)
            # Diagnostic: the same forward, one request alone, in the service's dtype.
            x_bf = model.residuals(torch.tensor([ids]), {layer})[layer][0].float()
            resid_errs.extend(((x_bf - x_ref).norm(dim=-1) / x_ref.norm(dim=-1)).tolist())
            tally.add_sequence(reference_pre(sae64, x_ref).cpu(), theta, result)
    finally:
        del ref, sae64
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
    report = Correctness(
        sequences=len(token_lists),
        positions=sum(len(ids) for ids in token_lists),
        requests_per_batch=max(r.batch_size for r in results),
        mean_firing=statistics.fmean(tally.firing),
        full_top_k_positions=sum(n >= top_k for n in tally.firing),
        mean_overlap=statistics.fmean(tally.overlaps),
        min_overlap=min(tally.overlaps),
        max_rel_err=max(tally.rel_errs),
        p99_rel_err=statistics.quantiles(tally.rel_errs, n=100)[98],
        median_rel_err=statistics.median(tally.rel_errs),
        unexplained_swaps=tally.unexplained,
        residual_rel_err_median=statistics.median(resid_errs),
        residual_rel_err_max=max(resid_errs),
        thresholds=THRESHOLDS,
    )
    report.failures = judge(report, len(token_lists), top_k)
    return report


def judge(report: Correctness, requests: int, top_k: int) -> list[str]:
    th = report.thresholds
    failures = []
    if report.max_rel_err > th.max_rel_err:
        failures.append(f"max_rel_err {report.max_rel_err:.4f} > {th.max_rel_err}")
    if report.median_rel_err > th.median_rel_err:
        failures.append(f"median_rel_err {report.median_rel_err:.4f} > {th.median_rel_err}")
    if report.unexplained_swaps:
        failures.append(f"{report.unexplained_swaps} top-{top_k} swaps outside the band")
    if report.mean_overlap < th.min_mean_overlap:
        failures.append(f"mean_overlap {report.mean_overlap:.4f} < {th.min_mean_overlap}")
    if report.requests_per_batch != requests:
        failures.append(f"the {requests} requests were not batched together")
    return failures
