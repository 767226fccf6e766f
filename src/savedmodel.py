"""GPT-2 generation as one TensorFlow function, for a SavedModel: the prompt, the
key/value cache and the choice of each token all run inside the graph, so TensorFlow
Serving (or any TensorFlow program) generates with no code of ours. export_savedmodel.py
writes it; this module builds it.

    generator = Generator(variables(arrays), hparams, end_id=50256,
                          assets={'encoder.json': path})
    out = generator.generate(prompt_ids, prompt_lengths, max_new_tokens, temperature,
                             top_k, top_p, seed)
    out['new_ids'], out['new_lengths']

Inputs (the serving signature):
  prompt_ids     int32 [batch, width]  prompts right-padded to one width (any padding id)
  prompt_lengths int32 [batch]         each prompt's tokens, 1..width
  max_new_tokens int32 []              at least 1; longest prompt + max_new_tokens - 1
                                       positions must fit in the context (n_ctx)
  temperature    float32 []            above 0
  top_k          int32 []              keep the k most likely tokens (0: all)
  top_p          float32 []            nucleus among what top_k kept (1 or 0: off)
  seed           int64 []              the same seed and inputs give the same ids
Outputs:
  new_ids        int32 [batch, max_new_tokens]  generated ids; after a row's end, end_id
  new_lengths    int32 [batch]         tokens each row generated before end_id

Each row computes what it would alone, as in our API: the prompts are moved to the right
(left-padded) and numbered from each one's first token, and no position attends to the
padding (model.KVCache's `start`). Sampling follows sample.choose: temperature, top-k,
then nucleus among the top-k's renormalised probabilities.
"""

import tensorflow as tf

import model

tf1 = tf.compat.v1

SIGNATURE = (
    tf.TensorSpec([None, None], tf.int32, 'prompt_ids'),
    tf.TensorSpec([None], tf.int32, 'prompt_lengths'),
    tf.TensorSpec([], tf.int32, 'max_new_tokens'),
    tf.TensorSpec([], tf.float32, 'temperature'),
    tf.TensorSpec([], tf.int32, 'top_k'),
    tf.TensorSpec([], tf.float32, 'top_p'),
    tf.TensorSpec([], tf.int64, 'seed'),
)


class LoopCache(model.KVCache):
    """model.KVCache's interface over tensors a while loop carries instead of variables:
    per layer, keys and values [n_alloc, batch, heads, features], written at `offset`;
    `start` [batch] is each row's first real position (positions() is KVCache's)."""

    def __init__(self, keys, values, offset, start):  # no placeholders: not KVCache's
        self.keys, self.values = list(keys), list(values)
        self.offset, self.start = offset, start

    def update(self, layer, k, v):
        """Write k, v [batch, heads, n_new, features] at offset; return the keys and
        values of every position so far, [offset + n_new, batch, heads, features]."""
        end = self.offset + tf.shape(k)[2]
        at = tf.range(self.offset, end)[:, None]
        self.keys[layer] = tf.tensor_scatter_nd_update(
            self.keys[layer], at, tf.transpose(k, [2, 0, 1, 3]))
        self.values[layer] = tf.tensor_scatter_nd_update(
            self.values[layer], at, tf.transpose(v, [2, 0, 1, 3]))
        return self.keys[layer][:end], self.values[layer][:end]


def left_aligned(prompt_ids, prompt_lengths):
    """Right-padded prompts [batch, width] as our decoders take them (sample.left_pad):
    (tokens [batch, longest], padded on the left with 0, start [batch])."""
    longest = tf.reduce_max(prompt_lengths)
    start = longest - prompt_lengths
    source = tf.range(longest)[None] - start[:, None]  # [batch, longest]
    tokens = tf.gather(prompt_ids, tf.maximum(source, 0), batch_dims=1)
    return tf.where(source >= 0, tokens, 0), start


def choose(logits, temperature, top_k, top_p, seed):
    """The next token of each row of logits [batch, n_vocab] (sample.choose without the
    repetition penalty and min-p); one draw per row from the stateless generator."""
    logits = logits / temperature
    nucleus = (top_p > 0) & (top_p < 1)

    def among_most_likely():
        k = tf.where(top_k > 0, top_k, tf.shape(logits)[1])
        values, candidates = tf.math.top_k(logits, k)  # most likely first
        cumulative = tf.cumsum(tf.nn.softmax(values), axis=-1)
        n_kept = tf.reduce_sum(tf.cast(cumulative < top_p, tf.int32), -1) + 1
        kept = tf.logical_or(tf.logical_not(nucleus),
                             tf.range(k)[None] < n_kept[:, None])
        values = tf.where(kept, values, tf.constant(-float('inf'), values.dtype))
        pick = tf.random.stateless_categorical(values, 1, seed, dtype=tf.int32)[:, 0]
        return tf.gather(candidates, pick, batch_dims=1)

    def among_all():  # no sort of the whole vocabulary when nothing is cut
        return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]

    return tf.cond((top_k > 0) | nucleus, among_most_likely, among_all)


def variables(arrays):
    """The model's weights (release names -> arrays) as variables a Generator holds."""
    return {name: tf.Variable(array, trainable=False, name=name)
            for name, array in arrays.items()}


class Generator(tf.Module):
    """The model's weights as variables (`weights`, from variables()), the vocabulary
    files as assets (file name -> path: they travel in the SavedModel's assets/), and
    `generate`, the serving signature. `jit_compile` compiles the loop with XLA; the
    checks of the inputs run outside it (XLA drops assertions)."""

    def __init__(self, weights, hparams, end_id, *, assets=None, jit_compile=False):
        super().__init__(name='gpt2')
        self.hparams, self.end_id = hparams, end_id
        self.weights = weights
        self.assets = {name: tf.saved_model.Asset(path)
                       for name, path in (assets or {}).items()}
        self.loop = tf.function(self._loop, jit_compile=jit_compile)
        self.generate = tf.function(self._generate, input_signature=SIGNATURE)

    def _generate(self, prompt_ids, prompt_lengths, max_new_tokens, temperature, top_k,
                  top_p, seed):
        with tf.control_dependencies(self._checks(prompt_ids, prompt_lengths, max_new_tokens,
                                                  temperature, top_k, top_p)):
            tokens, start = left_aligned(prompt_ids, prompt_lengths)
        new_ids, new_lengths = self.loop(tokens, start, max_new_tokens, temperature, top_k,
                                         top_p, seed)
        return {'new_ids': new_ids, 'new_lengths': new_lengths}

    def _checks(self, prompt_ids, prompt_lengths, max_new_tokens, temperature, top_k, top_p):
        """Assertions whose messages name the input and its limits."""
        n_ctx, n_vocab = self.hparams.n_ctx, self.hparams.n_vocab
        batch, width = tf.shape(prompt_ids)[0], tf.shape(prompt_ids)[1]
        real = tf.range(width)[None] < prompt_lengths[:, None]  # [batch, width]
        longest = tf.reduce_max(prompt_lengths)
        check = tf.debugging
        return [
            check.assert_equal(tf.size(prompt_lengths), batch, message=(
                'prompt_lengths: one length for each row of prompt_ids')),
            check.assert_greater_equal(prompt_lengths, 1, message=(
                'prompt_lengths: each prompt needs at least one token (start an empty one '
                f'with <|endoftext|>, id {self.end_id})')),
            check.assert_less_equal(prompt_lengths, width, message=(
                'prompt_lengths: more than the width of prompt_ids')),
            check.assert_greater_equal(max_new_tokens, 1, message=(
                'max_new_tokens: must be at least 1')),
            check.assert_less_equal(max_new_tokens, n_ctx, message=(
                f'max_new_tokens: more than the model context (n_ctx {n_ctx})')),
            check.assert_less_equal(longest + max_new_tokens - 1, n_ctx, message=(
                'the longest prompt + max_new_tokens - 1 positions are more than the '
                f'model context (n_ctx {n_ctx})')),
            check.assert_greater(temperature, 0.0, message='temperature: must be above 0'),
            check.assert_greater_equal(top_k, 0, message='top_k: must be at least 0'),
            check.assert_less_equal(top_k, n_vocab, message=(
                f'top_k: more than the vocabulary (n_vocab {n_vocab})')),
            check.assert_greater_equal(top_p, 0.0, message='top_p: must be between 0 and 1'),
            check.assert_less_equal(top_p, 1.0, message='top_p: must be between 0 and 1'),
            check.assert_greater_equal(tf.boolean_mask(prompt_ids, real), 0, message=(
                'prompt_ids: negative token id')),
            check.assert_less(tf.boolean_mask(prompt_ids, real), n_vocab, message=(
                f'prompt_ids: token id beyond the vocabulary (n_vocab {n_vocab})')),
        ]

    def _logits(self, tokens, cache):
        """model.model over this module's variables: the next token's logits [batch,
        n_vocab] after tokens [batch, n] at cache.offset."""
        def weight(getter, name, *args, **kwargs):
            return self.weights[name]
        with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=weight):
            logits = model.model(self.hparams, tokens, past=cache, last_only=True)['logits']
        return logits[:, -1]

    def _loop(self, tokens, start, max_new_tokens, temperature, top_k, top_p, seed):
        """Prefill left-aligned tokens [batch, width], then one token per row per step
        until max_new_tokens or every row has ended: (new_ids, new_lengths)."""
        h = self.hparams
        batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
        # Positions fed: the prompt's, then every new token but the last.
        empty = tf.zeros([width + max_new_tokens - 1, batch, h.n_head, h.n_embd // h.n_head])
        cache = LoopCache([empty] * h.n_layer, [empty] * h.n_layer, 0, start)
        logits = self._logits(tokens, cache)
        seed_pair = tf.bitcast(seed, tf.int32)  # [2]: the int32 seeds XLA's sampler takes

        def step(i, logits, ended, lengths, ids, keys, values):
            token = choose(logits, temperature, top_k, top_p,
                           tf.random.experimental.stateless_fold_in(seed_pair, i))
            token = tf.where(ended, self.end_id, token)
            ended = ended | (token == self.end_id)
            lengths += tf.cast(tf.logical_not(ended), tf.int32)
            ids = ids.write(i, token)

            def forward():
                cache = LoopCache(keys, values, width + i, start)
                return self._logits(token[:, None], cache), cache.keys, cache.values
            logits, keys, values = tf.cond(
                (i + 1 < max_new_tokens) & tf.logical_not(tf.reduce_all(ended)),
                forward, lambda: (logits, keys, values))
            return i + 1, logits, ended, lengths, ids, keys, values

        def going_on(i, logits, ended, *_):
            return (i < max_new_tokens) & tf.logical_not(tf.reduce_all(ended))

        ids = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
        i, _, _, lengths, ids, _, _ = tf.while_loop(going_on, step, (
            0, logits, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32), ids,
            cache.keys, cache.values))
        new_ids = tf.transpose(ids.stack())  # [batch, steps]
        new_ids = tf.pad(new_ids, [[0, 0], [0, max_new_tokens - i]],
                         constant_values=self.end_id)
        return new_ids, lengths
