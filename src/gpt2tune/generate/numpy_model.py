"""GPT-2's forward pass as the decoding engine runs it (engine.py): the embeddings and
each row's attention over its own keys and values in NumPy, float32; what lies between
two attentions in a kernel of the chosen precision (kernels.py). So a row's logits are
the same whatever rows share its step, however long they are: the kernels are
row-invariant, and each row attends alone.

    forward = Forward(model_dir.load_arrays(ckpt, hparams), hparams, 'float32')
    cache = Cache(hparams, rows=4, positions=hparams.n_ctx)
    logits = forward.prefill(cache, 0, [464, 3290])     # [n_vocab] after the prompt
    forward.prefill(cache, 1, prompt[:256], logits=None)        # a long prompt in chunks:
    logits = forward.prefill(cache, 1, prompt[256:], start=256)  # the rest after the first
    logits = forward.step(cache, [0, 2], [318, 262])    # [2, n_vocab], one token each

Tested against an independent forward pass (tests/generate/test_numpy_model.py).
"""

import contextlib
import math

import numpy as np

from gpt2tune.generate import kernels


def softmax(x):
    """Softmax over the last axis, in place."""
    x -= x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


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
    """The model's weights (release names -> arrays) decoding in `precision` (the kernel's
    `form` and `int8_form` as kernels.new_kernel takes them): the embeddings stay here,
    float32; the kernel holds the rest as it computes with them."""

    def __init__(self, arrays, hparams, precision, form=None, int8_form=None):
        self.hparams = hparams
        weights = {name: a[0] if a.ndim == 3 else a for name, a in arrays.items()}
        self.wte, self.wpe = weights['model/wte'], weights['model/wpe']
        self.kernel = kernels.new_kernel(precision, weights, hparams, form, int8_form)
        # A prompt's attention multiplies in NumPy's BLAS. Where the kernel's products run
        # in another library's thread pool on the same cores, whose threads wait spinning
        # on them, the attention's BLAS calls take the threads the kernel leaves
        # (prompt_blas_threads): two pools spinning on the cores slow each other.
        self.blas = None
        if self.kernel.prompt_blas_threads:
            from threadpoolctl import ThreadpoolController
            self.blas = ThreadpoolController().select(user_api='blas')

    def close(self):
        self.kernel.close()

    def prefill(self, cache, slot, tokens, start=0, logits='last'):
        """Row `slot` holds `tokens` at positions start.. (the positions before them already
        in its cache): the logits after them, of the last position [n_vocab] (`logits`
        'last'), of every position [n, n_vocab] ('every'), or none (None: a chunk of a
        prompt that goes on, its last block's MLP skipped)."""
        end = start + len(tokens)
        seen = np.arange(end)[None, :] <= np.arange(start, end)[:, None]  # [n, end]
        causal = np.where(seen, np.float32(0), np.float32(-1e10))

        def attend(layer, q, k, v):  # [positions, heads, features] each
            keys, values = cache.keys[layer][slot], cache.values[layer][slot]
            keys[:, start:end] = k.transpose(1, 0, 2)
            values[:, start:end] = v.transpose(1, 0, 2)
            return _attention(q.transpose(1, 0, 2), keys[:, :end], values[:, :end],
                              causal).transpose(1, 0, 2)

        x = self.wte[tokens] + self.wpe[start:end]
        with (self.blas.limit(limits=self.kernel.prompt_blas_threads) if self.blas
              else contextlib.nullcontext()):
            out = self._blocks(x, attend, rows=False, logits=logits)
        cache.lengths[slot] = end
        return out[0] if logits == 'last' else out

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

        x = self.wte[tokens] + self.wpe[lengths]
        logits = self._blocks(x, attend, rows=True)
        cache.lengths[slots] += 1
        return logits

    def _blocks(self, x, attend, rows, logits='last'):
        """x [n, embd] through every block: the logits of every row (rows=True), or of a
        prompt's positions as prefill's `logits` says. attend(layer, q, k, v), each
        [n, heads, features], gives the attention's output [n, heads, features]."""
        heads, last = self.hparams.n_head, self.hparams.n_layer - 1
        x, qkv = self.kernel.first(x, rows)
        for layer in range(self.hparams.n_layer):
            q, k, v = (t.reshape(len(x), heads, -1) for t in np.split(qkv, 3, axis=-1))
            a = attend(layer, q, k, v).reshape(x.shape)
            if layer == last:
                if rows:
                    return self.kernel.after_attention(layer, x, a, rows)[1]
                if logits is None:  # the keys and values are written: nothing more needed
                    return None
                final = self.kernel.after_attention(layer, x[-1:], a[-1:], rows)[1]
                if logits == 'last':
                    return final
                # The last position's logits as 'last' gets them (a product of n rows and
                # of one differ in the last bits): asking for a prompt's figures must not
                # change the tokens chosen after it.
                every = self.kernel.after_attention(layer, x, a, rows)[1]
                every[-1] = final[0]
                return every
            x, qkv = self.kernel.after_attention(layer, x, a, rows)


def next_token_losses(forward, tokens):
    """Each position's loss (nats) predicting the next of tokens [rows, n] as decoding
    does (the first token prefilled, then one step at a time): [rows, n - 1]."""
    rows, n = tokens.shape
    cache, slots = Cache(forward.hparams, rows, n), list(range(rows))
    logits = [np.stack([forward.prefill(cache, slot, tokens[slot, :1]) for slot in slots])]
    logits += [forward.step(cache, slots, tokens[:, t]) for t in range(1, n - 1)]
    return token_losses(np.stack(logits, 1), tokens[:, 1:])  # logits [rows, n - 1, n_vocab]


def prompt_losses(forward, tokens):
    """Each position's loss (nats) predicting the next of tokens [n] from the logits of
    one prefill of them all: [n - 1]."""
    cache = Cache(forward.hparams, 1, len(tokens))
    return token_losses(forward.prefill(cache, 0, tokens, logits='every')[:-1], tokens[1:])


def token_losses(logits, targets):
    """-log softmax(logits)[target] in float64: logits [..., n_vocab], targets [...]."""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    return log_z - np.take_along_axis(logits, np.asarray(targets)[..., None], -1)[..., 0]


def _attention(q, k, v, mask=None):
    """q [heads, n, features] over k, v [heads, keys, features] of one row, with `mask`
    [n, keys] added to the scores: [heads, n, features]."""
    scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 2, 1)
    if mask is not None:
        scores += mask
    return softmax(scores) @ v
