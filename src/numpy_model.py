"""GPT-2's forward pass in NumPy, as the CPU decoders run it (decoding.CpuDecoder, the
server's slot_decoder.SlotDecoder): the weights read as matrices packed for the machine's
kernel (kernels.py), and each block's attention over a key/value cache the decoder keeps.

    w = prepare(model_dir.load_arrays(ckpt, hparams))
    keys, values = empty_cache(hparams, rows, positions)      # the decoder's to keep
    x = embed(w, tokens, positions)                            # [rows, n, embd]
    x = blocks(w, hparams, x, store)     # store(layer, k, v) -> (keys, values, mask)
    logits = next_token_logits(w, x[:, -1])                    # [rows, n_vocab]

Tested against model.model through both decoders (tests/test_decoding.py).
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


def empty_cache(hparams, rows, positions):
    """(keys, values): per layer, zeros [rows, heads, positions, features]."""
    shape = [rows, hparams.n_head, positions, hparams.n_embd // hparams.n_head]
    return ([np.zeros(shape, np.float32) for _ in range(hparams.n_layer)],
            [np.zeros(shape, np.float32) for _ in range(hparams.n_layer)])


def embed(w, tokens, positions):
    """Token and position embeddings of tokens at positions (integer arrays of one
    shape, or positions broadcasting to it): [*tokens.shape, embd]."""
    return w['model/wte'][tokens] + w['model/wpe'][positions]


def blocks(w, hparams, x, store):
    """x [rows, n, embd] through every transformer block of the weights `w` (from
    prepare); store(layer, k, v) keeps the new keys and values [rows, heads, n, features]
    in the decoder's cache and gives back (keys, values, mask) to attend to, the mask
    added to the scores [rows, heads, n, keys] or None."""
    for layer in range(hparams.n_layer):
        p = f'model/h{layer}'
        h = norm(x, w[f'{p}/ln_1/g'], w[f'{p}/ln_1/b'])
        x = x + attention(w, hparams, layer, h, store)
        h = norm(x, w[f'{p}/ln_2/g'], w[f'{p}/ln_2/b'])
        h = gelu(dense(h, w[f'{p}/mlp/c_fc/w'], w[f'{p}/mlp/c_fc/b']))
        x = x + dense(h, w[f'{p}/mlp/c_proj/w'], w[f'{p}/mlp/c_proj/b'])
    return x


def attention(w, hparams, layer, x, store):
    """Block `layer`'s attention of x [rows, n, embd] to its cache (see blocks)."""
    p = f'model/h{layer}/attn'
    rows, n, embd = x.shape
    qkv = dense(x, w[f'{p}/c_attn/w'], w[f'{p}/c_attn/b'])
    q, k, v = (t.reshape(rows, n, hparams.n_head, -1).transpose(0, 2, 1, 3)
               for t in np.split(qkv, 3, axis=-1))  # [rows, heads, n, features]
    k, v, mask = store(layer, k, v)
    scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 1, 3, 2)
    if mask is not None:
        scores += mask
    a = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(rows, n, embd)
    return dense(a, w[f'{p}/c_proj/w'], w[f'{p}/c_proj/b'])


def next_token_logits(w, x):
    """x [rows, embd] -> [rows, n_vocab]: the output projection is the token embedding."""
    return dense(norm(x, w['model/ln_f/g'], w['model/ln_f/b']), w['wte_t'])
