"""Sampling from GPT-2: temperature, top-k, nucleus (top-p), a key/value cache, and a
stop at <|endoftext|>.

    gen = Generator(hparams, batch_size=2, temperature=0.7, top_k=40)
    ... restore weights into sess ...
    samples = generate(gen.stepper(sess), [[50256]] * 2, length=100, stop_token=50256)

`generate` drives any `step(tokens, offset) -> next tokens` function, so the loop can be
tested with a fake model.
"""

import sys

import numpy as np
import tensorflow as tf

import model
import model_dir
from cli import UserError

tf1 = tf.compat.v1


def top_k_logits(logits, k):
    """Keep the k largest logits of each row [batch, n_vocab]; k == 0 keeps all."""
    if k == 0:
        return logits
    values, _ = tf.nn.top_k(logits, k=k)
    min_values = values[:, -1, None]
    return tf.where(logits < min_values, tf.fill(tf.shape(logits), -1e10), logits)


def top_p_logits(logits, p):
    """Nucleus sampling: keep the smallest set of largest logits whose probability
    reaches p (always at least the largest)."""
    batch = tf.shape(logits)[0]
    sorted_logits = tf.sort(logits, direction='DESCENDING', axis=-1)
    cumulative_probs = tf.cumsum(tf.nn.softmax(sorted_logits, axis=-1), axis=-1)
    n_kept = tf.reduce_sum(tf.cast(cumulative_probs < p, tf.int32), axis=-1) + 1
    last = tf.minimum(n_kept, tf.shape(logits)[1]) - 1
    min_values = tf.gather_nd(sorted_logits, tf.stack([tf.range(batch), last], axis=-1))
    return tf.where(logits < min_values[:, None], tf.fill(tf.shape(logits), -1e10), logits)


def sample_logits(logits, *, temperature=1.0, top_k=0, top_p=1.0):
    """Next tokens [batch] drawn from logits [batch, n_vocab]. top_p 1 (OpenAI's default)
    or 0 (nshepperd's) turns nucleus sampling off."""
    logits = logits / tf.cast(temperature, logits.dtype)
    logits = top_k_logits(logits, k=top_k)
    if 0 < top_p < 1:
        logits = top_p_logits(logits, p=top_p)
    # Seeded by the graph-level seed (tf1.set_random_seed), as the scripts' --seed sets.
    return tf.random.categorical(logits, num_samples=1, dtype=tf.int32)[:, 0]


def check_options(hparams, *, length, temperature, top_k, top_p):
    if not 0 < length <= hparams.n_ctx:
        raise UserError(f'length {length}: must be between 1 and the model\'s n_ctx '
                        f'{hparams.n_ctx}')
    if temperature <= 0:
        raise UserError(f'temperature {temperature}: must be above 0')
    if not 0 <= top_k <= hparams.n_vocab:
        raise UserError(f'top_k {top_k}: must be between 0 (off) and n_vocab {hparams.n_vocab}')
    if not 0 <= top_p <= 1:
        raise UserError(f'top_p {top_p}: must be between 0 and 1 (0 and 1 are off)')


class Generator:
    """The sampling graph: feed tokens at an offset, get the next token of each row.

    Two graphs share one cache: one for prompts of any length and one for a single
    token per row, whose attention has a faster form (model.attend_one)."""

    def __init__(self, hparams, batch_size, *, temperature=1.0, top_k=0, top_p=1.0,
                 reuse=False):
        self.hparams, self.batch_size = hparams, batch_size
        self.cache = model.KVCache(hparams, batch_size)
        self.tokens, self.logits, self.next_token = {}, {}, {}
        for n, width in (('prompt', None), ('one', 1)):
            self.tokens[n] = tf1.placeholder(tf.int32, [batch_size, width], f'tokens_{n}')
            results = model.model(hparams, self.tokens[n], past=self.cache, reuse=reuse)
            reuse = True
            self.logits[n] = results['logits'][:, -1]  # [batch, n_vocab], of the last token
            self.next_token[n] = sample_logits(self.logits[n], temperature=temperature,
                                               top_k=top_k, top_p=top_p)

    def stepper(self, sess, n_alloc, fetch='next_token'):
        """step(tokens [batch, n], offset) -> the fetched value ('next_token' or 'logits'),
        for sequences of at most n_alloc tokens; offset 0 starts a new batch of sequences."""
        fetches = getattr(self, fetch)

        def step(tokens, offset):
            if offset == 0:
                sess.run(self.cache.initializer, {self.cache.n_alloc: n_alloc})
            n = 'one' if np.shape(tokens)[1] == 1 else 'prompt'
            return sess.run(fetches[n], {self.tokens[n]: tokens, self.cache.offset: offset})
        return step

    def generate(self, sess, context, length, *, stop_token=None):
        """Sample `length` tokens after context [batch, n] (see `generate`)."""
        context = np.asarray(context)
        n_total = context.shape[1] + length
        if n_total > self.hparams.n_ctx:
            raise UserError(f'prompt of {context.shape[1]} tokens plus length {length} is '
                            f'{n_total} tokens, more than the model\'s n_ctx '
                            f'{self.hparams.n_ctx}: shorten the prompt or lower --length')
        return generate(self.stepper(sess, n_total), context, length, stop_token=stop_token)


def generate(step, context, length, *, stop_token=None):
    """Up to `length` new tokens per row of context [batch, n]; a row ends before its
    first `stop_token`, and the loop ends once every row has ended."""
    tokens = np.asarray(context, dtype=np.int32)
    batch = tokens.shape[0]
    out = np.zeros([batch, length], dtype=np.int32)
    ends = np.full(batch, length)
    offset = 0
    for i in range(length):
        next_tokens = np.asarray(step(tokens, offset))
        out[:, i] = next_tokens
        offset += tokens.shape[1]
        tokens = next_tokens[:, None]
        if stop_token is not None:
            ends = np.where((next_tokens == stop_token) & (ends == length), i, ends)
            if (ends < length).all():
                break
    return [out[b, :ends[b]].tolist() for b in range(batch)]


def load_generator(*, model_name, models_dir, checkpoint, batch_size, nsamples, length,
                   temperature, top_k, top_p, seed):
    """What both sampling scripts start with: check the options, load the model, build the
    graph and restore the weights. Returns (session, generator, encoder, length)."""
    if batch_size is None:
        batch_size = 1
    if batch_size < 1:
        raise UserError(f'batch_size {batch_size}: must be at least 1')
    if nsamples % batch_size:
        raise UserError(f'nsamples {nsamples} is not a multiple of batch_size {batch_size}')
    hparams, enc, ckpt = model_dir.load(model_name, models_dir, checkpoint)
    length = hparams.n_ctx // 2 if length is None else length
    check_options(hparams, length=length, temperature=temperature, top_k=top_k, top_p=top_p)
    np.random.seed(seed)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        gen = Generator(hparams, batch_size, temperature=temperature, top_k=top_k,
                        top_p=top_p)
        sess = tf1.Session(graph=graph)
        print('Loading checkpoint', ckpt, file=sys.stderr)
        model_dir.restore(sess, ckpt)
    return sess, gen, enc, length
