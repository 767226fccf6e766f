"""GPT-2 as OpenAI released it, in TensorFlow graph mode (tf.compat.v1).

    hparams = HParams.from_json('models/124M/hparams.json')   # hparams.py
    results = model(hparams, X)  # X: [batch, sequence] int32 token ids
    results['logits']            # [batch, sequence, n_vocab]

Variable scopes are the release checkpoint's names (`model/h3/attn/c_attn/w`), so
OpenAI's checkpoints load with no mapping table, and ours load in OpenAI's code.
"""

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def shape_list(x):
    """Deal with dynamic shape in tensorflow cleanly."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if s is None else s for i, s in enumerate(static)]


@tf.custom_gradient
def gelu(x):
    """OpenAI's tanh approximation. The backward pass keeps only x and recomputes the tanh:
    automatic differentiation kept five tensors the size of the MLP's hidden layer."""
    def tanh_part(x):
        return tf.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * tf.pow(x, 3)))

    def grad(dy):
        t = tanh_part(x)
        d_inner = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * tf.square(x))
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - tf.square(t)) * d_inner)
    return 0.5 * x * (1 + tanh_part(x)), grad


def norm(x, scope, *, axis=-1, epsilon=1e-5):
    """Normalize to mean = 0, std = 1, then do a diagonal affine transform."""
    with tf1.variable_scope(scope):
        n_state = x.shape[-1]
        g = tf1.get_variable('g', [n_state], initializer=tf1.constant_initializer(1))
        b = tf1.get_variable('b', [n_state], initializer=tf1.constant_initializer(0))
        u = tf.reduce_mean(x, axis=axis, keepdims=True)
        s = tf.reduce_mean(tf.square(x - u), axis=axis, keepdims=True)
        x = (x - u) * tf.math.rsqrt(s + epsilon)
        return x * g + b


def split_states(x, n):
    """Reshape the last dimension of x into [n, x.shape[-1]/n]."""
    *start, m = shape_list(x)
    return tf.reshape(x, start + [n, m // n])


def merge_states(x):
    """Smash the last two dimensions of x into a single dimension."""
    *start, a, b = shape_list(x)
    return tf.reshape(x, start + [a * b])


def matmul(a, b, *, dtype, transpose_b=False):
    """a @ b with the product computed in `dtype`: bfloat16 runs on the bf16 units of
    recent CPUs and GPUs, faster than float32; inputs, outputs and everything around the
    product stay float32 (mixed precision with float32 master weights)."""
    if dtype == tf.float32:
        return tf.matmul(a, b, transpose_b=transpose_b)
    # A weight's cast waits for the input: in a recomputed block (`recomputed`) only the
    # input waits for the backward pass, and a cast free to run at once would hold a copy
    # of every block's weights from the step's start to its block's gradient.
    with tf.control_dependencies([a]):
        b = tf.cast(b, dtype)
    product = tf.matmul(tf.cast(a, dtype), b, transpose_b=transpose_b)
    return tf.cast(product, a.dtype)


def conv1d(x, scope, nf, *, w_init_stdev=0.02, dtype=tf.float32, lora=None):
    """A dense layer stored as OpenAI's width-1 convolution: w [1, nx, nf]; plus low-rank
    adapters where `lora` (lora.Adapters) adapts this layer."""
    with tf1.variable_scope(scope):
        *start, nx = shape_list(x)
        frozen = lora is not None and lora.frozen(f'{tf1.get_variable_scope().name}/w')
        # A frozen matrix is held once, in the products' dtype (half of float32's bytes in
        # bfloat16), not as float32 plus a cast of it per step; checkpoints keep float32.
        w = tf1.get_variable('w', [1, nx, nf], dtype=dtype if frozen else tf.float32,
                             initializer=tf1.random_normal_initializer(stddev=w_init_stdev))
        b = tf1.get_variable('b', [nf], initializer=tf1.constant_initializer(0))
        x = tf.reshape(x, [-1, nx])
        if frozen:
            # No gradient for a frozen weight, not even the zeros a recomputed block's
            # gradient gives every variable the block reads ([nx, nf] each): the raw read
            # is not reported to it.
            w = tf.stop_gradient(tf.raw_ops.ReadVariableOp(resource=w.handle,
                                                           dtype=w.dtype.base_dtype))
        c = matmul(x, tf.reshape(w, [nx, nf]), dtype=dtype) + b
        if lora is not None and lora.adapts(tf1.get_variable_scope().name):
            c += lora_delta(x, nf, lora, dtype)
        return tf.reshape(c, start + [nf])


def lora_delta(x, nf, lora, dtype):
    """scale * x A B for x [rows, nx]: A [nx, rank] uniform within 1/sqrt(nx) (PEFT's
    default), B [rank, nf] zero, so the adapted layer starts as the base. Two thin
    products instead of x (W + scale A B): no [nx, nf] weight gradient is computed."""
    nx = x.shape[-1]
    a = tf1.get_variable('lora_a', [nx, lora.rank], initializer=tf1.random_uniform_initializer(
        -1 / np.sqrt(nx), 1 / np.sqrt(nx)))
    b = tf1.get_variable('lora_b', [lora.rank, nf], initializer=tf1.zeros_initializer())
    return matmul(matmul(x, a, dtype=dtype) * lora.scale, b, dtype=dtype)


def attention_mask(nd, ns, *, offset):
    """True where query i (at position offset + i) may see key j: [nd, ns]."""
    i = tf.range(nd)[:, None] + offset
    j = tf.range(ns)
    return i >= j


class KVCache:
    """What model() asks of `past`, a key/value cache for sampling one token at a time
    (savedmodel.LoopCache is the one in use): `offset`, the position of the first new
    token; `start` [batch], each row's first real position (rows of different lengths
    share a batch left-padded: the model numbers a row's tokens from there and no position
    attends to the padding, so each row computes what it would alone); `update(layer, k,
    v)`, storing k, v [batch, heads, n_new, features] and returning the keys and values
    of every position so far, [offset + n_new, batch, heads, features]; and
    `attend_one(layer, q, k, v)` for one new position per row. Positions come first in
    the cache, so that those filled so far are one contiguous block."""

    def positions(self, sequence):
        """Position of each new token in its own row: [batch, sequence]."""
        return tf.maximum(self.offset + tf.range(sequence)[None] - self.start[:, None], 0)


def attn(x, scope, n_state, *, past, hparams, layer, dtype, lora=None):
    def split_heads(x):
        # From [batch, sequence, features] to [batch, heads, sequence, features]
        return tf.transpose(split_states(x, hparams.n_head), [0, 2, 1, 3])

    with tf1.variable_scope(scope):
        c = conv1d(x, 'c_attn', n_state * 3, dtype=dtype, lora=lora)
        q, k, v = map(split_heads, tf.split(c, 3, axis=2))
        if past is None:
            a = attend(q, k, v, offset=0, dtype=dtype)
        elif q.shape[2] == 1:
            a = past.attend_one(layer, q, k, v)
        else:
            k, v = past.update(layer, k, v)  # [sequence, batch, heads, features]
            k, v = (tf.transpose(x, [1, 2, 0, 3]) for x in (k, v))
            a = attend(q, k, v, offset=past.offset, dtype=dtype, start=past.start)
        a = tf.transpose(a, [0, 2, 1, 3])
        return conv1d(merge_states(a), 'c_proj', n_state, dtype=dtype, lora=lora)


def attend_one(q, keys, values, *, start):
    """Attention of one new position q [batch, heads, 1, features] over the cached
    positions, those from each row's `start` on: `keys` and `values` are lists of blocks
    of consecutive positions, [sequence_i, batch, heads, features] (a cache may keep
    them in parts); sums of elementwise products over the blocks as they are stored.
    `attend` would need the cache transposed to [batch, heads, sequence, features], a
    copy of every cached key and value in every layer for each new token, where this
    reads them once."""
    # [sequence_i, batch, heads] each
    scores = [tf.reduce_sum(q[None, :, :, 0] * k, axis=-1) for k in keys]
    w = tf.concat(scores, axis=0) * tf.math.rsqrt(tf.cast(q.shape[-1], q.dtype))
    visible = tf.range(tf.shape(w)[0])[:, None] >= start[None, :]  # [sequence, batch]
    w = tf.nn.softmax(tf.where(visible[..., None], w, tf.cast(-1e10, w.dtype)), axis=0)
    a, first = 0, 0
    for v in values:
        last = first + tf.shape(v)[0]
        a += tf.reduce_sum(w[first:last, ..., None] * v, axis=0)
        first = last
    return a[:, :, None]


def attend(q, k, v, *, offset, dtype, start=None):
    """Causal attention of q [batch, heads, dst_sequence, features] (at positions offset
    and after) over k, v [batch, heads, src_sequence, features]; with `start` [batch],
    row b sees only the positions from start[b] on (the rest is padding).

    The gradient is written out so that the backward pass keeps only the attention
    weights in `dtype` (half of float32's bytes with bfloat16 products) besides q, k, v:
    automatic differentiation kept them in float32 and in `dtype`, the largest
    activations of training. With bfloat16 the softmax's backward pass then uses the
    bfloat16 weights, as the product with v already did."""
    scale = tf.math.rsqrt(tf.cast(q.shape[-1], q.dtype))

    @tf.custom_gradient
    def core(q, k, v):
        # w: [batch, heads, dst_sequence, src_sequence]
        w = matmul(q, k, transpose_b=True, dtype=dtype) * scale
        _, _, nd, ns = shape_list(w)
        # One select and the fused softmax: faster on CPU than OpenAI's
        # w * b - 1e10 * (1 - b) with a hand-written softmax, forward and backward.
        b = attention_mask(nd, ns, offset=offset)
        if start is not None:
            b = b[None, None] & (tf.range(ns)[None, :] >= start[:, None])[:, None, None]
        w = tf.cast(tf.nn.softmax(tf.where(b, w, tf.cast(-1e10, w.dtype))), dtype)
        v_low = tf.cast(v, dtype)

        def grad(da):
            da = tf.cast(da, dtype)
            dv = tf.matmul(w, da, transpose_a=True)
            dw = tf.cast(tf.matmul(da, v_low, transpose_b=True), tf.float32)
            w32 = tf.cast(w, tf.float32)
            # Softmax backward; masked positions have weight 0, so they get no gradient.
            ds = w32 * (dw - tf.reduce_sum(dw * w32, axis=-1, keepdims=True)) * scale
            ds = tf.cast(ds, dtype)
            dq = tf.matmul(ds, tf.cast(k, dtype))
            dk = tf.matmul(ds, tf.cast(q, dtype), transpose_a=True)
            return [tf.cast(d, tf.float32) for d in (dq, dk, dv)]
        return tf.cast(tf.matmul(w, v_low), tf.float32), grad
    return core(q, k, v)


def mlp(x, scope, n_state, *, dtype, lora=None):
    with tf1.variable_scope(scope):
        nx = x.shape[-1]
        h = gelu(conv1d(x, 'c_fc', n_state, dtype=dtype, lora=lora))
        return conv1d(h, 'c_proj', nx, dtype=dtype, lora=lora)


def block(x, scope, *, past, hparams, layer, dtype=tf.float32, lora=None):
    with tf1.variable_scope(scope):
        nx = x.shape[-1]
        a = attn(norm(x, 'ln_1'), 'attn', nx, past=past, hparams=hparams, layer=layer,
                 dtype=dtype, lora=lora)
        x = x + a
        m = mlp(norm(x, 'ln_2'), 'mlp', nx * 4, dtype=dtype, lora=lora)
        return x + m


def model(hparams, X, past=None, scope='model', reuse=False, recompute=False,
          dtype=tf.float32, last_only=False, lora=None):
    """Logits [batch, sequence, n_vocab] for tokens X [batch, sequence]; `past` is a
    KVCache when sampling, and `last_only` keeps the last position's logits alone
    ([batch, 1, n_vocab]: a prompt's other logits are never used). `recompute` keeps only
    each block's input for the backward pass and recomputes the rest (less memory, about
    a third more compute). `dtype` is the precision of the matrix products (tf.bfloat16
    for mixed precision). `lora` (lora.Adapters) adds low-rank adapters to the blocks."""
    with tf1.variable_scope(scope, reuse=reuse):
        wpe = tf1.get_variable('wpe', [hparams.n_ctx, hparams.n_embd],
                               initializer=tf1.random_normal_initializer(stddev=0.01))
        wte = tf1.get_variable('wte', [hparams.n_vocab, hparams.n_embd],
                               initializer=tf1.random_normal_initializer(stddev=0.02))
        # Gather from the variables' values, not the variables: a gather on a resource
        # variable switches it to copy-on-read, and each step then copied all of wte.
        wte, wpe = wte.value(), wpe.value()
        batch, sequence = shape_list(X)
        positions = tf.range(sequence)[None] if past is None else past.positions(sequence)
        h = tf.gather(wte, X) + tf.gather(wpe, positions)
        for layer in range(hparams.n_layer):
            if recompute:
                h = recomputed(_recomputed_block(layer, hparams, dtype, lora))(h)
            else:
                h = block(h, f'h{layer}', past=past, hparams=hparams, layer=layer,
                          dtype=dtype, lora=lora)
        if last_only:
            h, sequence = h[:, -1:], 1
        h = norm(h, 'ln_f')
        # The output projection is the token embedding, transposed.
        h_flat = tf.reshape(h, [batch * sequence, hparams.n_embd])
        logits = matmul(h_flat, wte, transpose_b=True, dtype=dtype)
        return {'logits': tf.reshape(logits, [batch, sequence, hparams.n_vocab])}


def recomputed(fn):
    """fn(h) whose activations the backward pass computes again instead of keeping (as
    tf.recompute_grad). The recomputation waits for the gradient of fn's output by a
    control dependency: tf.recompute_grad's data dependency (h + 0 where dy == dy) is
    folded away by Grappler, so every block's recomputation ran at the step's start and
    held its activations until its gradient, as if nothing were recomputed."""
    @tf.custom_gradient
    def run(h):
        def grad(dy, variables=None):
            with tf.control_dependencies([dy]):
                h_again = tf.identity(h)
            variables = list(variables or [])
            with tf.GradientTape() as tape:
                tape.watch([h_again] + variables)
                y = fn(h_again)
            grads = tape.gradient(y, [h_again] + variables, output_gradients=dy,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return grads[0], grads[1:]
        return fn(h), grad
    return run


def _recomputed_block(layer, hparams, dtype, lora):
    # The backward pass calls this again outside the model's variable scope: re-enter it.
    outer = tf1.get_variable_scope()

    def fn(h):
        with tf1.variable_scope(outer, reuse=tf1.AUTO_REUSE):
            return block(h, f'h{layer}', past=None, hparams=hparams, layer=layer,
                         dtype=dtype, lora=lora)
    return fn


def token_losses(logits, tokens):
    """Cross-entropy of each next token [batch, sequence - 1]: logits at position t
    predict tokens[t + 1]. The last position gets a dummy label and is dropped from the
    small loss tensor, not from the logits: slicing [batch, sequence, n_vocab] costs a
    copy forward and a zero-filled gradient backward."""
    labels = tf.concat([tokens[:, 1:], tokens[:, -1:]], axis=1)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32))
    return losses[:, :-1]
