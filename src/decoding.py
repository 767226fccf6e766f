"""Decoders: the logits of each row's next token with a key/value cache, for
sample.sample_batch. Two forms of GPT-2's forward pass, both tested against model.model:

- CpuDecoder, in NumPy (numpy_model.py): sampling one token per row reads every weight
  once per step, so its speed is the speed at which the matrix products stream the
  weights; on a CPU, NumPy's (OpenBLAS) matrix-vector products do that better than
  TensorFlow's (bench/bench_sample.py measures both, the README has the figures); its
  products with several rows run in the kernel kernels.py chooses for the machine
  (bfloat16 where the CPU has bfloat16 instructions);
- SessionDecoder over a SamplingGraph, in TensorFlow: what a GPU runs.

The server's decoder, whose rows join and leave at any step, is slot_decoder.py's.

`decoder_kind()` makes the choice; the API, train.py's samples and the doctor take it
from there.

    new_decoder = cpu_decoders(model_dir.load_arrays(ckpt, hparams), hparams)
    decoder = new_decoder(100)                          # up to 100 new tokens per row
    logits = decoder.prefill([[50256], [464, 3290]])    # [batch, n_vocab]
    logits = decoder.extend(next_tokens)

Rows of different lengths share a batch left-padded: `start` [batch] is each row's first
real position, positions are numbered from there and no query sees the padding, so each
row computes what it would alone.
"""

import numpy as np
import tensorflow as tf

import lora
import model
import model_dir
import numpy_model
import resources
import sample

tf1 = tf.compat.v1

class Decoder:
    """What both decoders share: left-padded prefill, one token per row after it, and a
    cache kept while it is large enough. A subclass gives `_allocate(positions, batch)`
    and `_forward(tokens [batch, n], one) -> logits [batch, n_vocab]` at self.offset
    (`one`: a single new token per row after the prefill)."""

    def __init__(self, hparams, length):
        self.hparams, self.length, self.n_ctx = hparams, length, hparams.n_ctx
        self.allocated = None  # (positions, batch) of the cache
        self.offset, self.start = 0, None

    def prefill(self, rows):
        """Start new sequences: rows left-padded to one width, the padding masked."""
        tokens, self.start = sample.left_pad(rows)
        shape = (min(self.n_ctx, tokens.shape[1] + self.length), len(rows))
        if self.allocated is None or shape[0] > self.allocated[0] or \
                shape[1] != self.allocated[1]:
            self._allocate(*shape)
            self.allocated = shape
        self.offset = 0
        return self._forward(tokens, one=False)

    def extend(self, tokens):
        """Logits after one more token per row (tokens [batch])."""
        return self._forward(np.asarray(tokens, np.int32)[:, None], one=True)


class CpuDecoder(Decoder):
    """GPT-2's forward pass in NumPy (numpy_model.py) over weights from
    numpy_model.prepare()."""

    def __init__(self, weights, hparams, length):
        super().__init__(hparams, length)
        self.w = weights
        self.keys = self.values = None  # per layer: [batch, heads, positions, features]

    def _allocate(self, positions, batch):
        self.keys, self.values = numpy_model.empty_cache(self.hparams, batch, positions)

    def _forward(self, tokens, one):
        """Logits [batch, n_vocab] after tokens [batch, n] at self.offset."""
        w, n = self.w, tokens.shape[1]
        end = self.offset + n
        positions = np.maximum(self.offset + np.arange(n)[None] - self.start[:, None], 0)
        x = numpy_model.embed(w, tokens, positions)  # [batch, n, embd]
        mask = self._mask(n)

        def store(layer, k, v):  # k, v [batch, heads, n, features]
            self.keys[layer][:, :, self.offset:end] = k
            self.values[layer][:, :, self.offset:end] = v
            return self.keys[layer][:, :, :end], self.values[layer][:, :, :end], mask

        x = numpy_model.blocks(w, self.hparams, x, store)
        self.offset = end
        return numpy_model.next_token_logits(w, x[:, -1])

    def _mask(self, n):
        """Added to attention scores [batch, 1, n, end]: 0 where query i may see key j
        (j <= its position, j >= its row's start), -1e10 elsewhere; None when every key
        is visible (one new token, no padding)."""
        if n == 1 and not self.start.any():
            return None
        keys = np.arange(self.offset + n)
        visible = ((keys[None, None] <= self.offset + np.arange(n)[None, :, None]) &
                   (keys[None, None] >= self.start[:, None, None]))
        return np.where(visible, np.float32(0), np.float32(-1e10))[:, None]


class SamplingGraph:
    """The next token's logits of each row with a key/value cache, in TensorFlow: how a
    GPU samples. Two graphs share the cache: one for prompts of any length, one for a
    single token per row, whose attention has a faster form (model.attend_one)."""

    def __init__(self, hparams, *, reuse=False, adapters=None):
        self.hparams = hparams
        self.cache = model.KVCache(hparams)
        self.tokens, self.logits = {}, {}
        for name, width in (('prompt', None), ('one', 1)):
            self.tokens[name] = tf1.placeholder(tf.int32, [None, width], f'tokens_{name}')
            logits = model.model(hparams, self.tokens[name], past=self.cache, reuse=reuse,
                                 last_only=True, lora=adapters)['logits']
            self.logits[name] = logits[:, -1]  # [batch, n_vocab]
            reuse = True


class SessionDecoder(Decoder):
    """A SamplingGraph run in a session."""

    def __init__(self, graph, sess, length):
        super().__init__(graph.hparams, length)
        self.graph, self.sess = graph, sess

    def _allocate(self, positions, batch):
        cache = self.graph.cache
        self.sess.run(cache.initializer, {cache.n_alloc: positions, cache.batch: batch})

    def _forward(self, tokens, one):
        name = 'one' if one else 'prompt'
        cache = self.graph.cache
        logits = self.sess.run(self.graph.logits[name], {
            self.graph.tokens[name]: tokens, cache.offset: self.offset,
            cache.start: self.start})
        self.offset += tokens.shape[1]
        return logits


def decoder_kind():
    """'graph' (TensorFlow's SamplingGraph) with a GPU, else 'numpy' (CpuDecoder)."""
    return 'graph' if resources.gpus() else 'numpy'


def sampling_graph(hparams, *, reuse=False, adapters=None):
    """The SamplingGraph to build beside a model (with its lora.Adapters) in the current
    graph, when the decoder chosen runs in TensorFlow; else None."""
    if decoder_kind() != 'graph':
        return None
    return SamplingGraph(hparams, reuse=reuse, adapters=adapters)


def session_decoders(sess, hparams, graph=None, adapters=None):
    """A function length -> a new decoder: the SamplingGraph `graph` in `sess`, else
    CpuDecoders over the weights of `sess` (with its lora.Adapters merged in)."""
    if graph is not None:
        return lambda length: SessionDecoder(graph, sess, length)
    arrays = sess.run({v.op.name: v for v in model_dir.model_variables()})
    if adapters is not None:
        factors = sess.run({v.op.name: v for v in model_dir.adapter_variables()})
        arrays = lora.merge(arrays, factors, adapters)
    return cpu_decoders(arrays, hparams)


def cpu_decoders(arrays, hparams):
    """A function length -> a new CpuDecoder over the weights `arrays` (name -> array)."""
    weights = numpy_model.prepare(arrays)
    return lambda length: CpuDecoder(weights, hparams, length)


def generate_in_batches(new_decoder, prompts, options, rng, stopper, *, batch_size,
                        on_step=None):
    """sample.sample_batch over prompts (token lists), batch_size rows at a time."""
    samples = []
    for i in range(0, len(prompts), batch_size):
        samples += sample.sample_batch(new_decoder(options.length),
                                       prompts[i:i + batch_size], options, rng, stopper,
                                       on_step=on_step)
    return samples
