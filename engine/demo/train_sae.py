"""`playground train-sae`: a TopK SAE for one residual layer of a model, trained here.

Texts -> token sequences (as the services see them) -> residuals ``hidden_states[L + 1]`` from
the SAE service's truncated forward -> sparsify TopK SAE (90 % of the texts; 10 % held out)
-> a folder in the SAELens layout the SAE service loads, plus ``labels.json``, the examples
file (``feature_examples.jsonl``, format in docs/sae.md) and ``training_stats.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from common.defaults import (
    DEMO_CACHE_SUBDIR,
    DEMO_MODEL_ID,
    DEMO_TRAINED_SAE_LAYER,
    DEMO_TRAINED_SAE_SUBDIR,
)
from engine.atomic_dir import atomic_directory
from engine.demo import features
from engine.demo.progress import Say, say_flush, step
from engine.demo.relabel import write_labels
from engine.demo.residuals import collect_residuals, drop_sinks, tokenize_texts
from engine.demo.train_config import TrainConfig, TrainingStats, resolve_collect_dtype
from engine.demo.trainer import TopKSae, evaluate, train_topk_sae
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME

STATS_FILE = "training_stats.json"
HELDOUT_FRACTION = 0.1
# The demo SAE as `train-sae` made it (command and figures in its training_stats.json).
COMMITTED_SAE_DIR = Path(__file__).resolve().parent / "data" / "demo-trained-l15"


def sae_config(
    sae: TopKSae, *, layer: int, model_name: str, sae_id: str, description: str, demo: bool
) -> dict:
    """SAELens 6's saved ``cfg.json`` for a TopK SAE, plus the keys this service reads."""
    from engine.sae.saelens_files import saelens_cfg

    return saelens_cfg(
        architecture="topk",
        d_in=sae.d_in,
        d_sae=sae.d_sae,
        k=sae.k,
        layer=layer,
        model_name=model_name,
        prepend_bos=False,
        sae_id=sae_id,
        demo=demo,
        description=description,
    )


def write_sae_folder(
    out_dir: Path,
    sae: TopKSae,
    cfg: dict,
    labels: dict[int, features.Label],
    examples,
    stats_fn,
    weights_dtype: torch.dtype,
) -> int:
    from engine.sae.saelens_files import write_saelens

    with atomic_directory(out_dir) as staging:
        tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
        write_saelens(staging, tensors, cfg, weights_dtype)
        write_labels(staging / LABELS_FILENAME, labels)
        written = features.write_examples(staging / EXAMPLES_FILENAME, examples)
        (staging / STATS_FILE).write_text(json.dumps(asdict(stats_fn()), indent=2) + "\n")
    return written


def train_sae(
    model_dir: Path, layer: int, out_dir: Path, config: TrainConfig, say: Say = say_flush
) -> TrainingStats:
    from transformers import AutoTokenizer

    from engine.sae.residual import ResidualModel
    from engine.sae.tokens import TokenTable

    model_dir = Path(model_dir)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with step(say, f"loading {model_dir} (blocks 0..{layer})") as timing:
        dtype = resolve_collect_dtype(config.collect_dtype)
        model = ResidualModel.load(
            str(model_dir), device=torch.device("cpu"), dtype=dtype, keep_layers=layer + 1
        )
        if not 0 <= layer < model.n_layers:
            raise ValueError(f"layer {layer} is outside the model's {model.n_layers} blocks")
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        table = TokenTable(tokenizer)
        sequences = tokenize_texts(
            tokenizer, config.texts, budget=config.tokens, seed=config.settings.seed
        )
        if len(sequences.token_ids) < 10:
            raise ValueError(f"{len(sequences.token_ids)} texts is too few to train on")
    seconds["load"] = timing["seconds"]

    with step(
        say,
        f"residuals at layer {layer}: {sequences.tokens} tokens in "
        f"{len(sequences.token_ids)} texts ({str(dtype).removeprefix('torch.')}, "
        f"{torch.get_num_threads()} threads)",
    ) as timing:
        residuals = collect_residuals(
            model, sequences, layer, batch_tokens=config.batch_tokens, say=say
        )
        del model
    seconds["collect"] = timing["seconds"]
    residuals, sinks = drop_sinks(residuals)
    say(f"    {residuals.tokens_per_s:.0f} tokens/s; {sinks} attention-sink residuals left out")

    n_texts = len(sequences.token_ids)
    heldout_mask = residuals.seq >= n_texts - max(1, round(HELDOUT_FRACTION * n_texts))
    train_rows = torch.nonzero(~heldout_mask).squeeze(1)
    train = residuals.subset(~heldout_mask)
    heldout = residuals.subset(heldout_mask)

    with step(
        say,
        f"training a TopK SAE (d_sae {config.settings.d_sae}, k {config.settings.k}) on "
        f"{train.acts.shape[0]} residuals, {config.settings.epochs} epochs",
    ) as timing:
        sae, report = train_topk_sae(train.acts, config.settings, say)
    seconds["train"] = timing["seconds"]

    with step(say, "evaluating, labelling, collecting examples") as timing:
        ev_train = evaluate(sae, train.acts)
        ev_heldout = evaluate(sae, heldout.acts)
        fired = ev_train.fired | ev_heldout.fired
        codes = features.encode_all(sae, residuals.acts)
        text_of = lambda token_id: table.text([token_id])[0]  # noqa: E731
        train_top = features.top_activations(
            codes, sae.d_sae, features.LABEL_TOP_N, rows=train_rows.numpy()
        )
        window = features.window_of(residuals, sequences, text_of)
        labels = features.make_labels(train_top, window)
        heldout_top = features.top_activations(
            codes,
            sae.d_sae,
            features.LABEL_TOP_N,
            rows=torch.nonzero(heldout_mask).squeeze(1).numpy(),
        )
        precision = features.label_precision(labels, heldout_top, window)
        dead = int((~fired).sum())
        say(
            f"    FVU {ev_train.fvu:.3f} (held-out {ev_heldout.fvu:.3f}), L0 {ev_train.l0:.1f}, "
            f"dead {dead}/{sae.d_sae}, {sum(not lb.diverse for lb in labels.values())} labelled "
            f"({len(labels)} with a text), "
            f"label precision {precision.value:.2f} over {precision.judged} features"
        )
    seconds["label"] = timing["seconds"]

    name = config.model_name or str(model_dir)
    description = (
        f"DEMO: TopK SAE (d_sae {sae.d_sae}, k {sae.k}) trained here at layer {layer} of "
        f"{name} on {sequences.tokens} tokens of {config.corpus_name}"
    )
    cfg = sae_config(
        sae,
        layer=layer,
        model_name=name,
        sae_id=config.sae_id,
        description=description,
        demo=config.demo,
    )

    def stats() -> TrainingStats:
        return TrainingStats(
            sae_id=config.sae_id,
            model=name,
            layer=layer,
            d_in=sae.d_in,
            d_sae=sae.d_sae,
            k=sae.k,
            corpus=config.corpus_name,
            texts=n_texts,
            tokens=sequences.tokens,
            tokens_train=int(train.acts.shape[0]),
            tokens_heldout=int(heldout.acts.shape[0]),
            sink_tokens_excluded=sinks,
            collect_dtype=str(dtype).removeprefix("torch."),
            torch_threads=torch.get_num_threads(),
            residual_tokens_per_s=round(residuals.tokens_per_s, 1),
            epochs=report.epochs,
            steps=report.steps,
            fvu_train=round(ev_train.fvu, 4),
            fvu_heldout=round(ev_heldout.fvu, 4),
            l0=round(ev_train.l0, 2),
            dead_features=dead,
            dead_fraction=round(dead / sae.d_sae, 4),
            labelled_features=sum(not label.diverse for label in labels.values()),
            label_precision=round(precision.value, 4),
            label_precision_judged=precision.judged,
            seconds={key: round(value, 1) for key, value in seconds.items()},
            model_source=model_source(model_dir),
            command=config.command,
        )

    with step(say, f"writing {out_dir}") as timing:
        examples = features.iter_examples(codes, residuals, sequences, text_of, sae.d_sae)
        seconds["total"] = time.perf_counter() - started
        write_sae_folder(
            Path(out_dir), sae, cfg, labels, examples, stats, getattr(torch, config.weights_dtype)
        )
    return stats()


def model_source(model_dir: Path) -> str | None:
    from engine.demo.model import MARKER

    marker = Path(model_dir) / MARKER
    if not marker.is_file():
        return None
    built = json.loads(marker.read_text())
    return f"{built.get('source')} sha256:{built.get('wheel_sha256')}"


def is_complete(out_dir: Path) -> bool:
    from engine.sae.layouts import is_complete_sae_dir

    out_dir = Path(out_dir)
    return is_complete_sae_dir(out_dir) and (out_dir / STATS_FILE).is_file()


def committed_sae_fits(model_dir: Path) -> bool:
    """Whether the SAE committed in the repo was trained on this very model build."""
    stats_path = COMMITTED_SAE_DIR / STATS_FILE
    if not (is_complete(COMMITTED_SAE_DIR) and stats_path.is_file()):
        return False
    committed = json.loads(stats_path.read_text()).get("model_source")
    return committed is not None and committed == model_source(model_dir)


def ensure_demo_sae(model_dir: Path, data_dir: Path, say: Say = say_flush) -> Path:
    """The demo's trained SAE under ``data_dir``; what `playground up` calls after
    ``ensure_demo_model``. On first use it is copied from the SAE committed in the repo (made
    by `train-sae` with the command in its training_stats.json) when that was trained on the
    same model build, else trained here on the default corpus and budget."""
    from engine.demo.corpus import CORPUS_NAME, fortunes_corpus

    data_dir = Path(data_dir)
    out_dir = data_dir / DEMO_TRAINED_SAE_SUBDIR
    if is_complete(out_dir):
        say(f"==> demo SAE: {out_dir} (already there)")
        return out_dir
    if committed_sae_fits(model_dir):
        with (
            step(say, f"demo SAE: copying the committed one to {out_dir}"),
            atomic_directory(out_dir) as staging,
        ):
            for path in COMMITTED_SAE_DIR.iterdir():
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
        return out_dir
    with step(say, "fetching the training text"):
        texts = fortunes_corpus(data_dir / DEMO_CACHE_SUBDIR, say)
    config = TrainConfig(
        texts=texts,
        corpus_name=CORPUS_NAME,
        model_name=DEMO_MODEL_ID,
        command="ensure_demo_sae (playground up): the defaults of train-sae",
    )
    train_sae(Path(model_dir), DEMO_TRAINED_SAE_LAYER, out_dir, config, say=say)
    say(f"==> demo SAE: {out_dir}")
    return out_dir
