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

from gpt2tune.model import model

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


# New positions' keys and values gather in a block of CHUNK positions before they join
# the cache of every position: a tensor a loop carries is copied whenever it is written,
# so each step copies the block and, every CHUNK steps, the whole cache once; about
# 2 * sqrt(positions) positions a step at the best CHUNK, against every position for a
# cache written at each step.
CHUNK = 32


class LoopCache(model.KVCache):
    """model.KVCache's interface over tensors a while loop carries instead of variables.
    `state`: per layer, keys and values [n_alloc, batch, heads, features] of the positions
    before `chunk_start`, and the keys and values [CHUNK, batch, heads, features] of those
    from chunk_start on; then chunk_start. `start` [batch] is each row's first real
    position (positions() is KVCache's)."""

    def __init__(self, state, offset, start):
        keys, values, chunk_keys, chunk_values, self.chunk_start = state
        self.keys, self.values = list(keys), list(values)
        self.chunk_keys, self.chunk_values = list(chunk_keys), list(chunk_values)
        self.offset, self.start = offset, start

    @classmethod
    def empty(cls, n_alloc, batch, hparams, start):
        shape = [hparams.n_head, hparams.n_embd // hparams.n_head]
        cache, chunk = tf.zeros([n_alloc, batch, *shape]), tf.zeros([CHUNK, batch, *shape])
        n = hparams.n_layer
        return cls(([cache] * n, [cache] * n, [chunk] * n, [chunk] * n, 0), 0, start)

    @property
    def state(self):
        """What the loop carries: the LoopCache(state, ...) of the next step."""
        return (self.keys, self.values, self.chunk_keys, self.chunk_values,
                self.chunk_start)

    def joined(self):
        """The state after a step: the block joins the cache once full (the next step
        then writes a new block from its start)."""
        def join():
            at = tf.range(self.chunk_start, self.chunk_start + CHUNK)[:, None]
            return tuple([tf.tensor_scatter_nd_update(cache, at, new) for cache, new in zip(
                              caches, chunks, strict=True)]
                         for caches, chunks in ((self.keys, self.chunk_keys),
                                                (self.values, self.chunk_values)))
        full = self.offset + 1 - self.chunk_start == CHUNK
        keys, values = tf.cond(full, join, lambda: (self.keys, self.values))
        chunk_start = tf.where(full, self.chunk_start + CHUNK, self.chunk_start)
        return keys, values, self.chunk_keys, self.chunk_values, chunk_start

    def update(self, layer, k, v):
        """The prompt's k, v [batch, heads, n_new, features] written into the cache at
        offset (the block starts after them); returns the keys and values of every
        position so far, [offset + n_new, batch, heads, features]."""
        end = self.offset + tf.shape(k)[2]
        at = tf.range(self.offset, end)[:, None]
        self.keys[layer] = tf.tensor_scatter_nd_update(
            self.keys[layer], at, tf.transpose(k, [2, 0, 1, 3]))
        self.values[layer] = tf.tensor_scatter_nd_update(
            self.values[layer], at, tf.transpose(v, [2, 0, 1, 3]))
        self.chunk_start = end
        return self.keys[layer][:end], self.values[layer][:end]

    def attend_one(self, layer, q, k, v):
        """One new position per row: its k, v into the block, then model.attend_one over
        the cache before the block and the block so far."""
        at = [[self.offset - self.chunk_start]]
        self.chunk_keys[layer] = tf.tensor_scatter_nd_update(
            self.chunk_keys[layer], at, tf.transpose(k, [2, 0, 1, 3]))
        self.chunk_values[layer] = tf.tensor_scatter_nd_update(
            self.chunk_values[layer], at, tf.transpose(v, [2, 0, 1, 3]))
        filled = self.offset + 1 - self.chunk_start
        return model.attend_one(
            q, [self.keys[layer][:self.chunk_start], self.chunk_keys[layer][:filled]],
            [self.values[layer][:self.chunk_start], self.chunk_values[layer][:filled]],
            start=self.start)


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
    `generate`, the serving signature. (No XLA: the loop slices its cache by values,
    shapes XLA cannot fix when it compiles.)"""

    def __init__(self, weights, hparams, end_id, *, assets=None):
        super().__init__(name='gpt2')
        self.hparams, self.end_id = hparams, end_id
        self.weights = weights
        self.assets = {name: tf.saved_model.Asset(path)
                       for name, path in (assets or {}).items()}
        self.generate = tf.function(self._generate, input_signature=SIGNATURE)

    def _generate(self, prompt_ids, prompt_lengths, max_new_tokens, temperature, top_k,
                  top_p, seed):
        with tf.control_dependencies(self._checks(prompt_ids, prompt_lengths, max_new_tokens,
                                                  temperature, top_k, top_p)):
            tokens, start = left_aligned(prompt_ids, prompt_lengths)
        new_ids, new_lengths = self._loop(tokens, start, max_new_tokens, temperature, top_k,
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
        batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
        # Positions fed: the prompt's, then every new token but the last.
        cache = LoopCache.empty(width + max_new_tokens - 1, batch, self.hparams, start)
        logits = self._logits(tokens, cache)
        seed_pair = tf.bitcast(seed, tf.int32)  # [2]: a stateless sampler's seed pair

        def step(i, logits, ended, lengths, ids, state):
            token = choose(logits, temperature, top_k, top_p,
                           tf.random.experimental.stateless_fold_in(seed_pair, i))
            token = tf.where(ended, self.end_id, token)
            ended = ended | (token == self.end_id)
            lengths += tf.cast(tf.logical_not(ended), tf.int32)
            ids = ids.write(i, token)

            def forward():
                cache = LoopCache(state, width + i, start)
                return self._logits(token[:, None], cache), cache.joined()
            logits, state = tf.cond(
                (i + 1 < max_new_tokens) & tf.logical_not(tf.reduce_all(ended)),
                forward, lambda: (logits, state))
            return i + 1, logits, ended, lengths, ids, state

        def going_on(i, logits, ended, *_):
            return (i < max_new_tokens) & tf.logical_not(tf.reduce_all(ended))

        ids = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
        i, _, _, lengths, ids, _ = tf.while_loop(going_on, step, (
            0, logits, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32), ids,
            cache.state))
        new_ids = tf.transpose(ids.stack())  # [batch, steps]
        new_ids = tf.pad(new_ids, [[0, 0], [0, max_new_tokens - i]],
                         constant_values=self.end_id)
        return new_ids, lengths
