"""The residual stream after decoder block L, running blocks 0..L only.

Layer L means TransformerLens ``blocks.L.hook_resid_post`` = HF ``hidden_states[L + 1]`` = the
output of ``model.layers[L]``. The forward below mirrors ``LlamaModel.forward`` with the model's
own modules (embeddings, rotary embedding, causal mask, decoder layers) and stops after the
highest layer asked for; blocks above it (and the final norm) never run. Works for the
Llama-style decoders in transformers (Llama, Mistral, Qwen2).
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoModel, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.utils import logging as hf_logging

logger = logging.getLogger(__name__)


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype == "auto":
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return dev, getattr(torch, dtype)


class ResidualModel:
    def __init__(self, base: torch.nn.Module, *, device: torch.device, dtype: torch.dtype):
        self.base = base.eval()
        self.config = base.config
        self.device, self.dtype = device, dtype
        self.n_layers = int(self.config.num_hidden_layers)
        self.vocab_size = int(self.config.vocab_size)
        self.max_positions = int(getattr(self.config, "max_position_embeddings", 1 << 30))
        self.d_model = int(self.config.hidden_size)

    @classmethod
    def load(cls, model: str, *, device, dtype, keep_layers: int | None = None) -> ResidualModel:
        """Load the base decoder (no LM head). ``keep_layers``: keep only blocks 0..keep-1."""
        # A causal-LM checkpoint loaded as its base model leaves `lm_head` unused by design;
        # transformers reports that as a warning table on every start. Errors still raise.
        previous = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            base = AutoModel.from_pretrained(model, dtype=dtype, local_files_only=True)
        finally:
            hf_logging.set_verbosity(previous)
        self = cls(base, device=device, dtype=dtype)
        if keep_layers is not None:
            self.keep_layers(keep_layers)
        base.to(device)
        return self

    def keep_layers(self, keep: int) -> None:
        """Keep only blocks 0..keep-1: blocks above every served layer are never run, so they
        need not hold memory. ``n_layers`` still reports the model's own depth."""
        if keep < len(self.base.layers):
            self.base.layers = self.base.layers[:keep]

    @property
    def kept_layers(self) -> int:
        return len(self.base.layers)

    def new_cache(self) -> DynamicCache:
        """An empty KV cache for ``residuals(..., cache=)`` (a stream's prefix)."""
        return DynamicCache(config=self.config)

    def kv_bytes_per_token(self, depth: int) -> int:
        """Bytes one position adds to a KV cache of blocks 0..depth-1 (keys and values)."""
        heads = int(
            getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads
        )
        head_dim = int(
            getattr(self.config, "head_dim", None)
            or self.config.hidden_size // self.config.num_attention_heads
        )
        return 2 * depth * heads * head_dim * torch.empty((), dtype=self.dtype).element_size()

    @torch.inference_mode()
    def residuals(
        self,
        input_ids: torch.Tensor,
        layers: set[int],
        cache: DynamicCache | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """input_ids [B, T] (right-padded) -> {L: residual after block L, [B, T, d_model]}.

        Right padding needs no padding mask: under the causal mask a real token only attends
        to earlier positions, which are real; outputs at padded positions are ignored.

        ``cache`` (one sequence, B = 1): the keys and values of the positions before these
        (blocks 0..max(layers)), extended in place with these; ``input_ids`` are the positions
        that follow the cached ones. Blocks above max(layers) leave it untouched.

        Several streams in one forward (``stream_batch.py``): a cache of B rows, each row's
        past left-padded to the longest, ``attention_mask`` [B, past + T] (0 at padding) and
        ``position_ids`` [B, T] (each row's own positions).
        """
        last = max(layers)
        if last >= self.kept_layers:
            raise ValueError(f"layer {last} is not loaded (kept {self.kept_layers} blocks)")
        base = self.base
        input_ids = input_ids.to(self.device)
        hidden = base.embed_tokens(input_ids)
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(past, past + hidden.shape[1], device=self.device)
            position_ids = position_ids.unsqueeze(0)
        else:
            position_ids = position_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            past_key_values=cache,
            position_ids=position_ids,
        )
        position_embeddings = base.rotary_emb(hidden, position_ids=position_ids)
        out: dict[int, torch.Tensor] = {}
        for index in range(last + 1):
            hidden = base.layers[index](
                hidden,
                attention_mask=mask,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
                past_key_values=cache,
                use_cache=cache is not None,
            )
            if index in layers:
                out[index] = hidden
        return out
