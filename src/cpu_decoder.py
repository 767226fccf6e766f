"""GPT-2's forward pass in NumPy, for sampling on a CPU: a decoder for sample.generate.

    weights = prepare(model_dir.load_arrays(ckpt, hparams))
    decoder = CpuDecoder(weights, hparams, length=100)
    logits = decoder.prefill([[50256], [464, 3290]])   # [batch, n_vocab]
    logits = decoder.extend(next_tokens)

Sampling one token per row reads every weight once per step, so its speed is the speed
at which the matrix products stream the weights. NumPy's (OpenBLAS) matrix-vector product
streams them about twice as fast as TensorFlow's on the CPUs measured (bench_sample.py
prints both), so on a machine without a GPU the sampling scripts, the API and train.py's
samples decode here; with a GPU they use generation.SamplingGraph. Both are tested against
model.model's logits.
"""

import math

import numpy as np

import sample

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


def dense(x, w, b):
    """x [..., nx] @ w [nx, nf] + b as one 2-D product: NumPy multiplies a stack of
    matrices one by one, which would read w once per row of the batch."""
    return (x.reshape(-1, x.shape[-1]) @ w + b).reshape(*x.shape[:-1], w.shape[1])


def softmax(x):
    """Softmax over the last axis, in place."""
    x -= x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


def prepare(arrays):
    """The weights as the decoder reads them: conv1d weights [1, nx, nf] as plain matrices
    (views, no copy), and the output projection as a contiguous [n_embd, n_vocab] copy,
    which streams faster than the transposed view of wte."""
    weights = {name: a[0] if a.ndim == 3 else a for name, a in arrays.items()}
    weights['wte_t'] = np.ascontiguousarray(weights['model/wte'].T)
    return weights


class CpuDecoder:
    """Rows of different lengths share a batch left-padded: `start` [batch] is each row's
    first real position, positions are numbered from there and no query sees the
    padding, so each row computes what it would alone."""

    def __init__(self, weights, hparams, length):
        self.w = weights  # from prepare()
        self.hparams, self.length, self.n_ctx = hparams, length, hparams.n_ctx
        self.keys = self.values = None  # per layer: [batch, heads, n_alloc, features]
        self.offset, self.start = 0, None

    def prefill(self, rows):
        """Start new sequences: rows left-padded to one width, the padding masked."""
        tokens, self.start = sample.left_pad(rows)
        n_alloc = min(self.n_ctx, tokens.shape[1] + self.length)
        if self.keys is None or self.keys[0].shape[0] != len(rows) or \
                self.keys[0].shape[2] < n_alloc:
            h = self.hparams
            shape = [len(rows), h.n_head, n_alloc, h.n_embd // h.n_head]
            self.keys = [np.zeros(shape, np.float32) for _ in range(h.n_layer)]
            self.values = [np.zeros(shape, np.float32) for _ in range(h.n_layer)]
        self.offset = 0
        return self._forward(tokens)

    def extend(self, tokens):
        return self._forward(np.asarray(tokens)[:, None])

    def _forward(self, tokens):
        """Logits [batch, n_vocab] after tokens [batch, n] at self.offset."""
        w, n = self.w, tokens.shape[1]
        end = self.offset + n
        positions = np.maximum(self.offset + np.arange(n)[None] - self.start[:, None], 0)
        x = w['model/wte'][tokens] + w['model/wpe'][positions]  # [batch, n, embd]
        mask = self._mask(n)
        for layer in range(self.hparams.n_layer):
            p = f'model/h{layer}'
            h = norm(x, w[f'{p}/ln_1/g'], w[f'{p}/ln_1/b'])
            x = x + self._attn(layer, h, mask)
            h = norm(x, w[f'{p}/ln_2/g'], w[f'{p}/ln_2/b'])
            h = gelu(dense(h, w[f'{p}/mlp/c_fc/w'], w[f'{p}/mlp/c_fc/b']))
            x = x + dense(h, w[f'{p}/mlp/c_proj/w'], w[f'{p}/mlp/c_proj/b'])
        self.offset = end
        h = norm(x[:, -1], w['model/ln_f/g'], w['model/ln_f/b'])
        return h @ w['wte_t']  # the output projection is the token embedding

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
