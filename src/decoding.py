"""Decoders: the logits of each row's next token with a key/value cache, for
sample.sample_batch. Two forms of GPT-2's forward pass, both tested against model.model:

- CpuDecoder, in NumPy: sampling one token per row reads every weight once per step, so
  its speed is the speed at which the matrix products stream the weights; on a CPU,
  NumPy's (OpenBLAS) matrix-vector products do that better than TensorFlow's
  (bench/bench_sample.py measures both, the README has the figures); its products with
  several rows run in the kernel kernels.py chooses for the machine (bfloat16 where the
  CPU has bfloat16 instructions);
- SessionDecoder over a SamplingGraph, in TensorFlow: what a GPU runs.

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

import math

import numpy as np
import tensorflow as tf

import kernels
import lora
import model
import model_dir
import resources
import sample

tf1 = tf.compat.v1

# Python floats, not NumPy's: a float64 NumPy scalar would turn float32 arrays into
# float64 and every product into a copy of the weights.
GELU_SCALE = math.sqrt(2 / math.pi)


def norm(x, g, b, epsilon=1e-5):
    d = x - x.mean(-1, keepdims=True)
    d *= 1 / np.sqrt(np.square(d).mean(-1, keepdims=True) + epsilon)
    d *= g
    d += b
    return d


def gelu(x):
    """OpenAI's tanh approximation, computed in place in x's one temporary: a prompt's
    MLP activations are large and NumPy works on one core."""
    t = np.square(x)
    t *= 0.044715
    t += 1
    t *= x
    t *= GELU_SCALE
    np.tanh(t, out=t)
    t += 1
    t *= x
    t *= 0.5
    return t


def dense(x, w, b=None):
    """x [..., nx] @ w [nx, nf] + b as one 2-D product (w from prepare(), b [nf] or
    None): NumPy multiplies a stack of matrices one by one, which would read w once per
    row of the batch."""
    y = kernels.multiply(x.reshape(-1, x.shape[-1]), w)
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[1])


def softmax(x):
    """Softmax over the last axis, in place."""
    x -= x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


def prepare(arrays, kernel=None):
    """The weights as the decoder reads them: conv1d weights [1, nx, nf] as plain matrices
    (views, no copy), and the output projection as a contiguous [n_embd, n_vocab] copy,
    which streams faster than the transposed view of wte; each matrix packed for dense()
    by `kernel` (kernels.choose_kernel() when None)."""
    kernel = kernel or kernels.choose_kernel()[0]
    weights = {name: a[0] if a.ndim == 3 else a for name, a in arrays.items()}
    weights['wte_t'] = np.ascontiguousarray(weights['model/wte'].T)
    return {name: kernels.pack(a, kernel) if name.endswith('/w') or name == 'wte_t' else a
            for name, a in weights.items()}


def blocks(w, hparams, x, attention):
    """x [rows, n, embd] through every transformer block of the weights `w` (from
    prepare); attention(layer, h) -> [rows, n, embd] attends with the decoder's cache."""
    for layer in range(hparams.n_layer):
        p = f'model/h{layer}'
        h = norm(x, w[f'{p}/ln_1/g'], w[f'{p}/ln_1/b'])
        x = x + attention(layer, h)
        h = norm(x, w[f'{p}/ln_2/g'], w[f'{p}/ln_2/b'])
        h = gelu(dense(h, w[f'{p}/mlp/c_fc/w'], w[f'{p}/mlp/c_fc/b']))
        x = x + dense(h, w[f'{p}/mlp/c_proj/w'], w[f'{p}/mlp/c_proj/b'])
    return x


def next_token_logits(w, x):
    """x [rows, embd] -> [rows, n_vocab]: the output projection is the token embedding."""
    return dense(norm(x, w['model/ln_f/g'], w['model/ln_f/b']), w['wte_t'])


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
    """GPT-2's forward pass in NumPy over weights from prepare()."""

    def __init__(self, weights, hparams, length):
        super().__init__(hparams, length)
        self.w = weights
        self.keys = self.values = None  # per layer: [batch, heads, positions, features]

    def _allocate(self, positions, batch):
        h = self.hparams
        shape = [batch, h.n_head, positions, h.n_embd // h.n_head]
        self.keys = [np.zeros(shape, np.float32) for _ in range(h.n_layer)]
        self.values = [np.zeros(shape, np.float32) for _ in range(h.n_layer)]

    def _forward(self, tokens, one):
        """Logits [batch, n_vocab] after tokens [batch, n] at self.offset."""
        w, n = self.w, tokens.shape[1]
        end = self.offset + n
        positions = np.maximum(self.offset + np.arange(n)[None] - self.start[:, None], 0)
        x = w['model/wte'][tokens] + w['model/wpe'][positions]  # [batch, n, embd]
        mask = self._mask(n)
        x = blocks(w, self.hparams, x, lambda layer, h: self._attn(layer, h, mask))
        self.offset = end
        return next_token_logits(w, x[:, -1])

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

    def _attn(self, layer, x, mask):
        w, p = self.w, f'model/h{layer}/attn'
        batch, n, embd = x.shape
        heads = self.hparams.n_head
        qkv = dense(x, w[f'{p}/c_attn/w'], w[f'{p}/c_attn/b'])
        # [batch, heads, n, features] each
        q, k, v = (t.reshape(batch, n, heads, -1).transpose(0, 2, 1, 3)
                   for t in np.split(qkv, 3, axis=-1))
        end = self.offset + n
        self.keys[layer][:, :, self.offset:end] = k
        self.values[layer][:, :, self.offset:end] = v
        k, v = self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
        scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 1, 3, 2)
        if mask is not None:
            scores += mask  # [batch, heads, n, end]
        a = softmax(scores) @ v
        a = a.transpose(0, 2, 1, 3).reshape(batch, n, embd)
        return dense(a, w[f'{p}/c_proj/w'], w[f'{p}/c_proj/b'])


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
    weights = prepare(arrays)
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


class SlotDecoder:
    """GPT-2's forward pass in NumPy for continuous batching: up to `max_rows` rows, each
    joining and leaving when it likes and each with its own length. The rows in use are
    slots 0..n-1 of one key/value cache per layer, [max_rows, heads, n_ctx, features]; a
    row leaving makes room by moving the last one into its slot, so a step attends to a
    view of the cache, never a copy. Weight products go through `dense` over every row.

        decoder = SlotDecoder(prepare(arrays), hparams, max_rows=16)
        logits = decoder.add(['a', 'b'], [[50256], [464, 3290]])  # [2, n_vocab]
        logits = decoder.step([318, 262])   # one token per row, in decoder.rows order
        decoder.remove('a')

    Rows are named by any hashable key. New rows are prefilled together right-padded,
    each from position 0, their logits taken at their own last token; a step masks each
    row's keys past its own length; so each row computes what it would alone.
    """

    def __init__(self, weights, hparams, max_rows):
        self.w, self.hparams, self.n_ctx = weights, hparams, hparams.n_ctx
        shape = [max_rows, hparams.n_head, hparams.n_ctx, hparams.n_embd // hparams.n_head]
        self.keys = [np.zeros(shape, np.float32) for _ in range(hparams.n_layer)]
        self.values = [np.zeros(shape, np.float32) for _ in range(hparams.n_layer)]
        self.lengths = np.zeros(max_rows, np.int64)  # tokens in each slot's cache
        self.rows = []  # the key of each slot in use

    def length(self, key):
        """Tokens in row `key`'s cache: at n_ctx, `reset` it before its next step."""
        return int(self.lengths[self.rows.index(key)])

    def add(self, keys, prompts):
        """New rows `keys` after `prompts` (token lists of 1 to n_ctx tokens): the logits
        [len(keys), n_vocab] of each one's next token."""
        first = len(self.rows)
        if first + len(keys) > len(self.lengths):
            raise ValueError(f'{first} rows in use, no room for {len(keys)} more')
        self.rows += keys
        return self._prefill(first, prompts)

    def reset(self, key, tokens):
        """Row `key` starts again after `tokens` (a sliding window; the token after them
        is fed by the next step)."""
        self._prefill(self.rows.index(key), [tokens], logits=False)

    def remove(self, key):
        slot, last = self.rows.index(key), len(self.rows) - 1
        if slot != last:
            length = self.lengths[last]
            for cache in self.keys + self.values:
                cache[slot, :, :length] = cache[last, :, :length]
            self.lengths[slot] = length
            self.rows[slot] = self.rows[last]
        self.rows.pop()

    def step(self, tokens):
        """Logits [rows, n_vocab] after one more token of every row (tokens [rows], in
        self.rows order)."""
        n = len(self.rows)
        lengths = self.lengths[:n].copy()
        if lengths.max() >= self.n_ctx:
            raise ValueError('a row fills the context: reset it before its next step')
        end, slots = int(lengths.max()) + 1, np.arange(n)
        mask = None
        if lengths.min() != lengths.max():  # [rows, 1, 1, end]
            mask = np.where(np.arange(end)[None] <= lengths[:, None], np.float32(0),
                            np.float32(-1e10))[:, None, None]

        def store(layer, k, v):  # k, v [rows, heads, 1, features]
            self.keys[layer][slots, :, lengths] = k[:, :, 0]
            self.values[layer][slots, :, lengths] = v[:, :, 0]
            return self.keys[layer][:n, :, :end], self.values[layer][:n, :, :end], mask

        w = self.w
        x = w['model/wte'][np.asarray(tokens)] + w['model/wpe'][lengths]  # [rows, embd]
        x = self._layers(x[:, None], store)
        self.lengths[:n] += 1
        return self._logits(x[:, 0])

    def _prefill(self, first, prompts, logits=True):
        """Fill slots first.. with prompts; the logits after each, if wanted."""
        width = max(len(p) for p in prompts)
        tokens = np.zeros([len(prompts), width], np.int32)  # right-padded
        for b, prompt in enumerate(prompts):
            tokens[b, :len(prompt)] = prompt
        lengths = np.array([len(p) for p in prompts])
        slots = slice(first, first + len(prompts))
        causal = np.where(np.tri(width, dtype=bool), np.float32(0), np.float32(-1e10))

        def store(layer, k, v):  # k, v [rows, heads, width, features]
            self.keys[layer][slots, :, :width] = k
            self.values[layer][slots, :, :width] = v
            return k, v, causal

        w = self.w
        x = self._layers(w['model/wte'][tokens] + w['model/wpe'][:width], store)
        self.lengths[slots] = lengths
        if logits:
            return self._logits(x[np.arange(len(prompts)), lengths - 1])
        return None

    def _layers(self, x, store):
        """x [rows, n, embd] through every block; store(layer, k, v) keeps the new keys
        and values in the cache and gives back (keys, values, mask) to attend to."""
        return blocks(self.w, self.hparams, x, lambda layer, h: self._attn(layer, h, store))

    def _attn(self, layer, x, store):
        w, p = self.w, f'model/h{layer}/attn'
        rows, n, embd = x.shape
        qkv = dense(x, w[f'{p}/c_attn/w'], w[f'{p}/c_attn/b'])
        q, k, v = (t.reshape(rows, n, self.hparams.n_head, -1).transpose(0, 2, 1, 3)
                   for t in np.split(qkv, 3, axis=-1))  # [rows, heads, n, features]
        k, v, mask = store(layer, k, v)
        scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 1, 3, 2)
        if mask is not None:
            scores += mask
        a = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(rows, n, embd)
        return dense(a, w[f'{p}/c_proj/w'], w[f'{p}/c_proj/b'])

    def _logits(self, x):
        return next_token_logits(self.w, x)
