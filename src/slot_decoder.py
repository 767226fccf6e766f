"""The server's decoder (batching.Engine's): GPT-2's forward pass in NumPy
(numpy_model.py) over rows that join and leave the batch at any step.

    decoder = SlotDecoder(numpy_model.prepare(arrays), hparams, max_rows=16)
"""

import numpy as np

import numpy_model


class SlotDecoder:
    """GPT-2's forward pass in NumPy for continuous batching: up to `max_rows` rows, each
    joining and leaving when it likes and each with its own length. The rows in use are
    slots 0..n-1 of one key/value cache per layer, [max_rows, heads, n_ctx, features]; a
    row leaving makes room by moving the last one into its slot, so a step attends to a
    view of the cache, never a copy. Weight products go through numpy_model.dense over
    every row.

        decoder = SlotDecoder(numpy_model.prepare(arrays), hparams, max_rows=16)
        logits = decoder.add(['a', 'b'], [[50256], [464, 3290]])  # [2, n_vocab]
        logits = decoder.step([318, 262])   # one token per row, in decoder.rows order
        decoder.remove('a')

    Rows are named by any hashable key. New rows are prefilled together right-padded,
    each from position 0, their logits taken at their own last token; a step masks each
    row's keys past its own length; so each row computes what it would alone.
    """

    def __init__(self, weights, hparams, max_rows):
        self.w, self.hparams, self.n_ctx = weights, hparams, hparams.n_ctx
        self.keys, self.values = numpy_model.empty_cache(hparams, max_rows, hparams.n_ctx)
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

        x = numpy_model.embed(self.w, np.asarray(tokens), lengths)  # [rows, embd]
        x = numpy_model.blocks(self.w, self.hparams, x[:, None], store)
        self.lengths[:n] += 1
        return numpy_model.next_token_logits(self.w, x[:, 0])

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

        x = numpy_model.embed(self.w, tokens, np.arange(width))
        x = numpy_model.blocks(self.w, self.hparams, x, store)
        self.lengths[slots] = lengths
        if logits:
            return numpy_model.next_token_logits(self.w, x[np.arange(len(prompts)), lengths - 1])
        return None
