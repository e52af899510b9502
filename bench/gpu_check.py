"""The SAE service's bf16 path at full size on one GPU, checked in one command: correctness
against an f32/f64 reference of the same weights, then extraction throughput, the truncated vs
full forward ratio and memory.

    python bench/gpu_check.py            # GPU: Llama-3.1-8B shape, bf16, 32768-feature SAE
    python bench/gpu_check.py --small    # CPU: the same steps at the tiny model's width
    python -m bench.gpu_check [--small]

Prints one table; writes ``$OUT/gpu_check-<full|small>.json`` when ``OUT`` is set (or
``--out FILE``). Exit status 1 when a correctness figure misses its threshold.

It needs only torch, transformers and safetensors (a bare GPU image has no pydantic, fastapi or
orjson, and no project install): the service's compute path imports nothing else.

What runs, all of it the service's own code except the reference:
1. The Llama-3.1-8B shape (the tiny builder's Llama-3.1 config at 8B width: 32 blocks, hidden
   4096, 32 heads, 8 KV heads, intermediate 14336) with random bf16 weights made on the device;
   token ids drawn at random after BOS (no tokenizer, no download).
2. A random JumpReLU SAE, 32768 features at layer 16, written in the SAELens layout and served
   through ``SaeRegistry`` (layouts -> float64 fold -> ``SaeEncoder``). ``b_dec`` is the mean
   residual, as in trained SAEs; per-feature thresholds let about 64 features fire per token.
3. Correctness: four requests of different lengths submitted together to the service's
   ``Batcher`` (right-padded forwards to block 16, one encode, top-20), against transformers' own
   ``LlamaModel.forward`` in float32 (eager attention; blocks 0..16 of the same weights, the
   residual taken by a hook on block 16) and SAELens' formula in float64 on the raw weights
   (``bench/sae_agreement.py``: the comparison, its thresholds and why they are where they are).
4. Throughput through the same ``Batcher`` with the service's defaults (``batching.py``) at
   batch x length 1x128, 8x512, 32x2048 (the last runs as 4 batches of 8: ``MAX_BATCH_TOKENS``),
   after dropping the blocks above 16 as the service does; tokens/s per request set (submit to
   answer, including the 2 ms gather wait) and per compute (``EncodeResult.compute_ms``); CUDA
   synchronised around every timing; peak GPU memory per shape.
5. ``ResidualModel.residuals`` (blocks 0..16) vs the full 32-block forward with
   ``output_hidden_states`` at 8x512: ideal ratio 32 / 17 = 1.88.

Sizing, for the device budget (15 minutes a task: start, transfer, one run and one rerun; so one
run must stay under 4 minutes on one H100). Work per token to layer 16: each block's matmuls are
2 x 218.1 M weights = 436 MFLOP, 17 blocks 7.42 GFLOP; causal attention 4 x 4096 x (T + 1) / 2
per block (0.29 GFLOP over 17 blocks at T = 2048); the SAE encode 2 x 4096 x 32768 = 0.27 GFLOP:
7.7 to 8.0 GFLOP a token (the issue's rounder 8.8). Against the ~790 TFLOP/s that 8192^3 bf16
products reach on both lent kinds (H100 SXM's dense bf16 spec: 989) that is a ceiling of about
100k tokens/s (90k at 8.8 GFLOP); the run measures its own card's matmul rate and reports the
fraction. Timed work, warm-ups included: throughput 1x128 x 12 + 8x512 x 6 + 32x2048 x 4 =
0.29 M tokens, 2.3 PFLOP, under 10 s even at 30% of the ceiling; the ratio 6 x (32 + 17 blocks)
x 4096 tokens x 436 MFLOP = 0.5 PFLOP, under 3 s; correctness 1281 tokens in f32 (9.5 TFLOP)
and the f64 encode (0.34 TFLOP), under 1 s at the H100's ~50 TFLOP/s in f32 and f64. Set-up
dominates: imports ~10 s, random init of 7.5 G bf16 parameters and of the 4.2 G-parameter f32
reference on the GPU a few s, the SAE (1 GB of f32 written, 0.5 GB read back and folded in f64
on the CPU) ~10 s: about a minute in all, so the 4-minute bound holds with a wide margin (a
stage line is printed as each ends, so a run cut short still reports). Memory: 15 GB bf16 model
+ 17 GB f32 reference (freed before timing) + 1 GB f64 SAE reference + activations of one
16384-token forward (a few GB): under 40 GB of the H100's 78.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/gpu_check.py` on a machine with no project install
    sys.path.insert(0, str(ROOT))

from bench.sae_agreement import Correctness, RandomSae, check_correctness  # noqa: E402
from common.defaults import DEFAULT_SAE_LAYER  # noqa: E402
from engine.sae.batching import (  # noqa: E402
    BATCH_WAIT_MS,
    MAX_BATCH_SIZE,
    MAX_BATCH_TOKENS,
    Batcher,
)
from engine.sae.encode_batch import (  # noqa: E402
    ENCODE_CHUNK_TOKENS,
    MAX_PADDING_RATIO,
    EncodeJob,
    EncodeResult,
)
from engine.sae.encoder import SaeMeta  # noqa: E402
from engine.sae.layouts import SAELENS_CFG, SAELENS_WEIGHTS  # noqa: E402
from engine.sae.registry import SaeRegistry  # noqa: E402
from engine.sae.residual import ResidualModel  # noqa: E402
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME  # noqa: E402
from engine.tiny.build import BOS_ID, NUM_BASE_TOKENS, TINY_CONFIG  # noqa: E402

LAYER = DEFAULT_SAE_LAYER
TOP_K = 20  # the wire's default top_k
FIRE_PER_TOKEN = 64  # features firing per token on average: sparse, yet more than TOP_K
SAE_ID = "gpu_check_random"


@dataclass(frozen=True)
class Shape:
    batch: int
    length: int


@dataclass(frozen=True)
class Timed:
    shape: Shape
    repeats: int
    warmups: int = 1


@dataclass(frozen=True)
class Size:
    name: str
    width: dict[str, int]  # LlamaConfig values over the tiny builder's Llama-3.1 config
    d_sae: int
    calibration: Shape
    correctness_lengths: tuple[int, ...]
    throughput: tuple[Timed, ...]
    truncation: Timed
    matmul_n: int


FULL = Size(
    name="full",
    width={  # Llama-3.1-8B
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
    },
    d_sae=32768,
    calibration=Shape(8, 128),
    # Three length buckets, the first padded (512 and 384 share a forward).
    correctness_lengths=(512, 384, 256, 129),
    throughput=(
        Timed(Shape(1, 128), repeats=10, warmups=2),
        Timed(Shape(8, 512), repeats=5),
        Timed(Shape(32, 2048), repeats=3),
    ),
    truncation=Timed(Shape(8, 512), repeats=5),
    matmul_n=8192,
)
SMALL = Size(
    name="small",
    width={  # the tiny test model's width (engine/tiny/build.py)
        "hidden_size": 64,
        "intermediate_size": 224,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
    },
    d_sae=1024,
    calibration=Shape(8, 32),
    correctness_lengths=(64, 52, 32, 17),
    throughput=(
        Timed(Shape(1, 32), repeats=3),
        Timed(Shape(4, 64), repeats=3),
        Timed(Shape(8, 128), repeats=2),
    ),
    truncation=Timed(Shape(4, 64), repeats=3),
    matmul_n=512,
)


@dataclass
class Throughput:
    batch: int
    length: int
    tokens: int
    repeats: int
    batches_per_call: float
    seconds_median: float
    seconds_min: float
    tokens_per_s: float  # submit -> answers, median
    compute_tokens_per_s: float  # EncodeResult.compute_ms, median
    flops_per_token: float
    ceiling_tokens_per_s: float
    fraction_of_ceiling: float
    peak_gib: float | None  # everything allocated, at the peak
    peak_extra_gib: float | None  # above what was allocated before (activations, workspace)


@dataclass
class Truncation:
    batch: int
    length: int
    layer: int
    full_s: float
    truncated_s: float
    ratio: float
    ideal: float


# --- model and SAE ---------------------------------------------------------------------------


def build_model(size: Size, device: torch.device, dtype: torch.dtype, seed: int) -> ResidualModel:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(**{**TINY_CONFIG, **size.width})
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:  # weights made where they run: no 16 GB host copy
            base = LlamaModel(config)
    finally:
        torch.set_default_dtype(previous)
    return ResidualModel(base, device=device, dtype=dtype)


def random_tokens(shape: Shape, seed: int) -> list[list[int]]:
    """BOS, then ids drawn from the base vocabulary (no special tokens)."""
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(0, NUM_BASE_TOKENS, (shape.batch, shape.length - 1), generator=gen)
    return [[BOS_ID, *row] for row in body.tolist()]


def write_random_sae(
    folder: Path, resid: torch.Tensor, d_sae: int, seed: int, device: torch.device
) -> RandomSae:
    """A JumpReLU SAE in the SAELens layout, scaled to ``resid`` [n, d_in] (sample residuals at
    LAYER): ``b_dec`` their mean, pre-activations of order 1, thresholds (per feature, +-10%
    around one cut) letting about FIRE_PER_TOKEN features fire per sample token."""
    from safetensors.torch import save_file

    gen = torch.Generator(device=device).manual_seed(seed)
    x = resid.to(device=device, dtype=torch.float32)
    d_in = x.shape[1]
    b_dec = x.mean(dim=0)
    scale = (x - b_dec).norm(dim=-1).mean()
    w_enc = torch.randn(d_in, d_sae, generator=gen, device=device) / scale
    b_enc = 0.1 * torch.randn(d_sae, generator=gen, device=device)
    pre = (x - b_dec) @ w_enc + b_enc
    cut = torch.topk(pre.flatten(), FIRE_PER_TOKEN * x.shape[0]).values[-1]
    threshold = cut * (0.9 + 0.2 * torch.rand(d_sae, generator=gen, device=device))
    w_dec = w_enc.T / w_enc.T.norm(dim=-1, keepdim=True)
    on_device = {
        "W_enc": w_enc,
        "W_dec": w_dec,
        "b_enc": b_enc,
        "b_dec": b_dec,
        "threshold": threshold,
    }
    tensors = {k: v.cpu().contiguous() for k, v in on_device.items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / SAELENS_WEIGHTS)
    cfg = {
        "architecture": "jumprelu",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "metadata": {"hook_name": f"blocks.{LAYER}.hook_resid_post", "model_name": "random"},
        "sae_id": SAE_ID,
        "description": f"random JumpReLU (seed {seed}) for bench/gpu_check.py",
    }
    (folder / SAELENS_CFG).write_text(json.dumps(cfg, indent=2))
    return RandomSae(
        folder=folder,
        W_enc=tensors["W_enc"],
        b_enc=tensors["b_enc"],
        b_dec=tensors["b_dec"],
        threshold=tensors["threshold"],
    )


# --- the service's batcher, driven from synchronous code --------------------------------------


class ServicePath:
    """The service's ``Batcher`` (with its defaults) on an event loop of its own."""

    def __init__(self, model: ResidualModel, registry: SaeRegistry, meta: SaeMeta) -> None:
        self.meta = meta
        self.batcher = Batcher(
            model,
            registry,
            max_batch_size=MAX_BATCH_SIZE,
            max_batch_tokens=MAX_BATCH_TOKENS,
            wait_ms=BATCH_WAIT_MS,
            chunk_tokens=ENCODE_CHUNK_TOKENS,
            max_padding=MAX_PADDING_RATIO,
        )
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.batcher.start()

    def extract(self, token_lists: list[list[int]], top_k: int = TOP_K) -> list[EncodeResult]:
        """Submit every request at once, as simultaneous clients would."""
        jobs = [EncodeJob(ids, self.meta, top_k=top_k) for ids in token_lists]
        return self.loop.run_until_complete(self._submit_all(jobs))

    async def _submit_all(self, jobs: list[EncodeJob]) -> list[EncodeResult]:
        return list(await asyncio.gather(*(self.batcher.submit(job) for job in jobs)))

    def close(self) -> None:
        self.loop.run_until_complete(self.batcher.stop())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def correctness_step(
    service: ServicePath, model: ResidualModel, sae: RandomSae, lengths: tuple[int, ...], seed: int
) -> Correctness:
    """Requests of these lengths submitted together, against the reference."""
    token_lists = [random_tokens(Shape(1, n), seed + i)[0] for i, n in enumerate(lengths)]
    results = service.extract(token_lists)
    return check_correctness(model, sae, token_lists, results, layer=LAYER, top_k=TOP_K)


# --- timing ------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def once(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """This card's dense matmul rate (the ceiling's numerator): 3 warm-ups, 10 timed."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device).to(dtype)
    b = torch.randn(n, n, generator=gen, device=device).to(dtype)

    def products(count: int) -> None:
        for _ in range(count):
            a @ b

    products(3)
    return 2 * n**3 * 10 / once(lambda: products(10), device) / 1e12


def flops_per_token(config, length: int, d_sae: int) -> float:
    """Matmul FLOPs per token to block LAYER plus the encode (embedding lookups cost none)."""
    d, f = config.hidden_size, config.intermediate_size
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    linear = 2 * (d * q + 2 * d * kv + q * d + 3 * d * f)
    attention = 2 * 2 * q * (length + 1) / 2  # QK^T and AV over the causal context
    return (LAYER + 1) * (linear + attention) + 2 * d * d_sae


def measure_throughput(
    service: ServicePath,
    model: ResidualModel,
    timed: Timed,
    seed: int,
    tflops: float,
    d_sae: int,
) -> Throughput:
    shape, device = timed.shape, model.device
    token_lists = random_tokens(shape, seed)
    for _ in range(timed.warmups):
        service.extract(token_lists)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    batches_before = service.batcher.batches_run
    wall, compute = [], []
    for _ in range(timed.repeats):
        sync(device)
        start = time.perf_counter()
        results = service.extract(token_lists)
        sync(device)
        wall.append(time.perf_counter() - start)
        # Requests of one batch share its compute_ms: count each batch once.
        compute.append(sum(r.compute_ms / r.batch_size for r in results) / 1000)
    gib = 1024**3
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    tokens = shape.batch * shape.length
    per_token = flops_per_token(model.config, shape.length, d_sae)
    median = statistics.median(wall)
    ceiling = tflops * 1e12 / per_token
    return Throughput(
        batch=shape.batch,
        length=shape.length,
        tokens=tokens,
        repeats=timed.repeats,
        batches_per_call=(service.batcher.batches_run - batches_before) / timed.repeats,
        seconds_median=median,
        seconds_min=min(wall),
        tokens_per_s=tokens / median,
        compute_tokens_per_s=tokens / statistics.median(compute),
        flops_per_token=per_token,
        ceiling_tokens_per_s=ceiling,
        fraction_of_ceiling=tokens / median / ceiling,
        peak_gib=None if peak is None else peak / gib,
        peak_extra_gib=None if peak is None else (peak - before) / gib,
    )


@torch.inference_mode()
def measure_truncation(model: ResidualModel, timed: Timed, seed: int) -> Truncation:
    """Blocks 0..LAYER (the service's forward) vs the full model's forward with
    ``output_hidden_states``, interleaved so both see the same clocks; medians."""
    ids = torch.tensor(random_tokens(timed.shape, seed))
    on_device = ids.to(model.device)

    def full():
        model.base(on_device, output_hidden_states=True, use_cache=False)

    def truncated():
        model.residuals(ids, {LAYER})

    full(), truncated()
    full_s, trunc_s = [], []
    for _ in range(timed.repeats):
        full_s.append(once(full, model.device))
        trunc_s.append(once(truncated, model.device))
    full_m, trunc_m = statistics.median(full_s), statistics.median(trunc_s)
    return Truncation(
        batch=timed.shape.batch,
        length=timed.shape.length,
        layer=LAYER,
        full_s=full_m,
        truncated_s=trunc_m,
        ratio=full_m / trunc_m,
        ideal=model.n_layers / (LAYER + 1),
    )


# --- the run -----------------------------------------------------------------------------------


def service_weight_bytes(model: ResidualModel, registry: SaeRegistry, meta: SaeMeta) -> int:
    """What the service holds: embeddings, blocks 0..LAYER, the folded SAE."""
    params = sum(p.numel() * p.element_size() for p in model.base.parameters())
    enc = registry.encoder(meta)
    sae = [enc.W, enc.bias, *([enc.threshold] if enc.threshold is not None else [])]
    return params + sum(t.numel() * t.element_size() for t in sae)


def run(size: Size, device: torch.device, dtype: torch.dtype, seed: int) -> dict:
    import transformers

    torch.set_float32_matmul_precision("highest")  # the f32 reference is f32, not TF32
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(name: str, since: float, figures: str = "") -> float:
        # One line per stage as it ends: a run cut short still shows what it measured.
        now = time.perf_counter()
        stages[name] = round(now - since, 3)
        print(f"[{now - started:6.1f} s] {name} ({now - since:.1f} s) {figures}", flush=True)
        return now

    t = time.perf_counter()
    model = build_model(size, device, dtype, seed)
    sync(device)
    params = sum(p.numel() for p in model.base.parameters())
    t = stage("build_model", t, f"{params / 1e9:.2f} G parameters on {device}")
    calib = torch.tensor(random_tokens(size.calibration, seed + 1))
    resid = model.residuals(calib, {LAYER})[LAYER].reshape(-1, model.d_model)
    with tempfile.TemporaryDirectory(prefix="gpu-check-sae-") as tmp:
        sae = write_random_sae(Path(tmp) / SAE_ID, resid, size.d_sae, seed + 2, device)
        t = stage("calibrate_write_sae", t)
        registry = SaeRegistry(
            [sae.folder],
            max_loaded=1,
            device=device,
            dtype=dtype,
            labels_filename=LABELS_FILENAME,
            examples_filename=EXAMPLES_FILENAME,
        )
        meta = registry.resolve(None, None)
        registry.encoder(meta)  # load and fold now, as the service does before /health
        sync(device)
        t = stage("load_sae", t)
    service = ServicePath(model, registry, meta)
    try:
        correctness = correctness_step(service, model, sae, size.correctness_lengths, seed + 10)
        c = correctness
        t = stage(
            "correctness",
            t,
            f"overlap {c.mean_overlap:.4f}, rel err max {c.max_rel_err:.4f} median "
            f"{c.median_rel_err:.5f}, far swaps {c.unexplained_swaps}: "
            + ("pass" if c.passed else "FAIL " + "; ".join(c.failures)),
        )
        truncation = measure_truncation(model, size.truncation, seed=seed + 20)
        t = stage("truncation", t, f"{truncation.ratio:.2f}x (ideal {truncation.ideal:.2f}x)")
        model.keep_layers(LAYER + 1)  # as the service does (drop_unused_layers)
        empty_cache(device)
        tflops = matmul_tflops(device, dtype, size.matmul_n)
        throughput = []
        for i, timed in enumerate(size.throughput):
            row = measure_throughput(service, model, timed, seed + 30 + i, tflops, size.d_sae)
            throughput.append(row)
            t = stage(
                f"throughput {row.batch}x{row.length}",
                t,
                f"{row.tokens_per_s:.0f} tokens/s, {row.fraction_of_ceiling:.1%} of "
                f"{row.ceiling_tokens_per_s:.0f} ({tflops:.0f} TFLOP/s matmul)",
            )
    finally:
        service.close()
    gib = 1024**3
    config = model.config
    return {
        "check": "sae_gpu_check",
        "size": size.name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": config._attn_implementation,
        "model": {
            "layers": model.n_layers,
            "vocab_size": config.vocab_size,
            **{k: getattr(config, k) for k in size.width},
            "rope_type": (getattr(config, "rope_parameters", None) or {}).get("rope_type"),
        },
        "sae": {
            "layer": LAYER,
            "d_sae": size.d_sae,
            "architecture": "jumprelu",
            "layout": meta.layout,
            "fire_per_token_target": FIRE_PER_TOKEN,
            "top_k": TOP_K,
        },
        "batching": {
            "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_tokens": MAX_BATCH_TOKENS,
            "batch_wait_ms": BATCH_WAIT_MS,
            "max_padding_ratio": MAX_PADDING_RATIO,
            "encode_chunk_tokens": ENCODE_CHUNK_TOKENS,
        },
        "matmul_tflops": tflops,
        "correctness": {**asdict(correctness), "passed": correctness.passed},
        "throughput": [asdict(row) for row in throughput],
        "truncation": asdict(truncation),
        "memory": {
            "service_weights_gib": service_weight_bytes(model, registry, meta) / gib,
            "peak_gib": torch.cuda.max_memory_allocated(device) / gib
            if device.type == "cuda"
            else None,
        },
        "stages_s": stages,
        "total_s": round(time.perf_counter() - started, 3),
        "passed": correctness.passed,
    }


def print_table(report: dict) -> None:
    c, m = report["correctness"], report["model"]
    print(
        f"SAE GPU check ({report['size']}): {report['device_name']} ({report['device']}), "
        f"torch {report['torch']}, transformers {report['transformers']}, {report['dtype']}, "
        f"attention {report['attn_implementation']}"
    )
    print(
        f"model: {m['layers']} blocks, hidden {m['hidden_size']}, intermediate "
        f"{m['intermediate_size']}, heads {m['num_attention_heads']}/{m['num_key_value_heads']}"
        f"; SAE jumprelu d_sae {report['sae']['d_sae']} at layer {report['sae']['layer']}"
    )
    print(
        f"\ncorrectness: {c['sequences']} requests ({c['positions']} positions) in "
        f"{c['requests_per_batch']}-request batches vs f32 forward + f64 SAE; "
        f"{c['mean_firing']:.1f} features fire per position"
    )
    th = c["thresholds"]
    print(
        f"  top-{TOP_K} overlap  mean {c['mean_overlap']:.4f} (>= {th['min_mean_overlap']})"
        f"  min {c['min_overlap']:.3f}"
    )
    print(
        f"  shared values rel err  max {c['max_rel_err']:.4f} (<= {th['max_rel_err']})"
        f"  p99 {c['p99_rel_err']:.4f}  median {c['median_rel_err']:.5f}"
        f" (<= {th['median_rel_err']})"
    )
    print(
        f"  swaps farther than {th['swap_band']:.0%} from the cut  {c['unexplained_swaps']} (== 0)"
    )
    print(
        f"  residual rel err at layer {LAYER}  median {c['residual_rel_err_median']:.5f}"
        f"  max {c['residual_rel_err_max']:.5f}"
    )
    print(
        f"\nthroughput (the service's Batcher, defaults; matmul {report['matmul_tflops']:.1f} "
        "TFLOP/s on this device)"
    )
    head = (
        f"{'batch x len':>12} {'batches':>7} {'median s':>9} {'tokens/s':>9} {'compute':>9}"
        f" {'GFLOP/tok':>9} {'ceiling':>9} {'of ceil':>7} {'peak GiB':>8} {'+act GiB':>8}"
    )
    print(head)
    for r in report["throughput"]:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        extra = "-" if r["peak_extra_gib"] is None else f"{r['peak_extra_gib']:.2f}"
        print(
            f"{r['batch']:>5} x {r['length']:<5} {r['batches_per_call']:>7.1f}"
            f" {r['seconds_median']:>9.4f} {r['tokens_per_s']:>9.0f}"
            f" {r['compute_tokens_per_s']:>9.0f} {r['flops_per_token'] / 1e9:>9.3g}"
            f" {r['ceiling_tokens_per_s']:>9.0f} {r['fraction_of_ceiling']:>7.1%}"
            f" {peak:>8} {extra:>8}"
        )
    tr = report["truncation"]
    print(
        f"\ntruncated (blocks 0..{tr['layer']}) vs full forward at {tr['batch']}x{tr['length']}:"
        f" {tr['full_s']:.4f} s / {tr['truncated_s']:.4f} s = {tr['ratio']:.2f}x"
        f" (ideal {tr['ideal']:.2f}x)"
    )
    mem = report["memory"]
    peak = "-" if mem["peak_gib"] is None else f"{mem['peak_gib']:.2f} GiB"
    print(f"memory: service weights {mem['service_weights_gib']:.2f} GiB, run peak {peak}")
    print(f"stages (s): {report['stages_s']}; total {report['total_s']:.1f} s")
    verdict = "PASS" if report["passed"] else "FAIL: " + "; ".join(c["failures"])
    print(f"\n{verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny width (runs on a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file (default: $OUT/gpu_check-SIZE.json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if not args.small and device.type != "cuda":
        parser.error("the full size needs a GPU (15 GB of bf16 weights); use --small here")
    size = SMALL if args.small else FULL
    report = run(size, device, getattr(torch, args.dtype), args.seed)
    print_table(report)
    out = args.out
    if out is None and os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / f"gpu_check-{size.name}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
