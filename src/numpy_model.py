"""GPT-2's forward pass in NumPy, as the decoding engine runs it (engine.py): the weight
products in a kernel of the chosen precision (kernels.py), everything else in float32,
each row's attention over its own keys and values alone. So a row's logits are the same
whatever rows share its step, however long they are: the products are row-invariant by
the kernel's contract, and nothing else mixes rows.

    forward = Forward(model_dir.load_arrays(ckpt, hparams), hparams, 'float32')
    cache = Cache(hparams, rows=4, positions=hparams.n_ctx)
    logits = forward.prefill(cache, 0, [464, 3290])     # [n_vocab] after the prompt
    logits = forward.step(cache, [0, 2], [318, 262])    # [2, n_vocab], one token each

Tested against model.model (tests/test_numpy_model.py).
"""

import math

import numpy as np

import kernels

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


def softmax(x):
    """Softmax over the last axis, in place."""
    x -= x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


def matrix_names(hparams):
    """The weight matrices a step multiplies by; 'wte_t' is the output projection."""
    return [f'model/h{layer}/{m}/w' for layer in range(hparams.n_layer)
            for m in ('attn/c_attn', 'attn/c_proj', 'mlp/c_fc', 'mlp/c_proj')] + ['wte_t']


class Cache:
    """Keys and values of every row: per layer, [rows, heads, positions, features], a
    row's in its slot from position 0; `lengths` [rows], the positions each slot holds.
    NumPy's zeros are pages the system gives on first write: an unused slot costs none."""

    def __init__(self, hparams, rows, positions):
        shape = [rows, hparams.n_head, positions, hparams.n_embd // hparams.n_head]
        self.keys = [np.zeros(shape, np.float32) for _ in range(hparams.n_layer)]
        self.values = [np.zeros(shape, np.float32) for _ in range(hparams.n_layer)]
        self.lengths = np.zeros(rows, np.int64)
        self.positions = positions


class Forward:
    """The model's weights (release names -> arrays) in a kernel of `precision`: the
    matrices are the kernel's, the rest (embeddings, biases, gains) stay float32."""

    def __init__(self, arrays, hparams, precision, *, rows_per_product=None):
        self.hparams = hparams
        self.w = {name: a[0] if a.ndim == 3 else a for name, a in arrays.items()}
        matrices = {name: self.w[name] for name in matrix_names(hparams) if name != 'wte_t'}
        # A contiguous [n_embd, n_vocab] copy streams faster than the transposed view.
        matrices['wte_t'] = np.ascontiguousarray(self.w['model/wte'].T)
        self.kernel = kernels.new_kernel(precision, matrices,
                                         rows_per_product=rows_per_product)

    def close(self):
        getattr(self.kernel, 'close', lambda: None)()

    def prefill(self, cache, slot, tokens):
        """Row `slot` starts over with `tokens` (1 to positions): the logits [n_vocab] of
        its next token."""
        n = len(tokens)
        causal = np.where(np.tri(n, dtype=bool), np.float32(0), np.float32(-1e10))

        def attend(layer, q, k, v):  # [positions, heads, features] each
            keys, values = cache.keys[layer][slot], cache.values[layer][slot]
            keys[:, :n], values[:, :n] = k.transpose(1, 0, 2), v.transpose(1, 0, 2)
            return _attention(q.transpose(1, 0, 2), keys[:, :n], values[:, :n],
                              causal).transpose(1, 0, 2)

        x = self.w['model/wte'][tokens] + self.w['model/wpe'][:n]
        x = self._blocks(x, attend, self.kernel.sequence)
        cache.lengths[slot] = n
        return self._logits(x[-1:], self.kernel.sequence)[0]

    def step(self, cache, slots, tokens):
        """One more token for each row in `slots`: the logits [rows, n_vocab] after it."""
        lengths = cache.lengths[slots]
        if lengths.max() >= cache.positions:
            raise ValueError('a row fills its cache: prefill it again before its next step')

        def attend(layer, q, k, v):  # [rows, heads, features] each
            out = np.empty_like(q)
            for r, (slot, length) in enumerate(zip(slots, lengths.tolist(), strict=True)):
                keys, values = cache.keys[layer][slot], cache.values[layer][slot]
                keys[:, length], values[:, length] = k[r], v[r]
                out[r] = _attention(q[r][:, None], keys[:, :length + 1],
                                    values[:, :length + 1])[:, 0]
            return out

        x = self.w['model/wte'][tokens] + self.w['model/wpe'][lengths]
        x = self._blocks(x, attend, self.kernel.rows)
        cache.lengths[slots] += 1
        return self._logits(x, self.kernel.rows)

    def _blocks(self, x, attend, product):
        """x [n, embd] through every block; attend(layer, q, k, v) each [n, heads,
        features] gives the attention's output [n, heads, features]."""
        w, heads = self.w, self.hparams.n_head
        for layer in range(self.hparams.n_layer):
            p = f'model/h{layer}'
            h = norm(x, w[f'{p}/ln_1/g'], w[f'{p}/ln_1/b'])
            qkv = product(h, f'{p}/attn/c_attn/w') + w[f'{p}/attn/c_attn/b']
            q, k, v = (t.reshape(len(x), heads, -1) for t in np.split(qkv, 3, axis=-1))
            a = attend(layer, q, k, v).reshape(x.shape)
            x = x + product(a, f'{p}/attn/c_proj/w') + w[f'{p}/attn/c_proj/b']
            h = norm(x, w[f'{p}/ln_2/g'], w[f'{p}/ln_2/b'])
            h = gelu(product(h, f'{p}/mlp/c_fc/w') + w[f'{p}/mlp/c_fc/b'])
            x = x + product(h, f'{p}/mlp/c_proj/w') + w[f'{p}/mlp/c_proj/b']
        return x

    def _logits(self, x, product):
        """x [n, embd] -> [n, n_vocab]: the output projection is the token embedding."""
        return product(norm(x, self.w['model/ln_f/g'], self.w['model/ln_f/b']), 'wte_t')


def _attention(q, k, v, mask=None):
    """q [heads, n, features] over k, v [heads, keys, features] of one row, with `mask`
    [n, keys] added to the scores: [heads, n, features]."""
    scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 2, 1)
    if mask is not None:
        scores += mask
    return softmax(scores) @ v
