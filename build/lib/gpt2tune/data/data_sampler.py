"""Training batches from token arrays: random windows (OpenAI/nshepperd's sampler) or
packed whole documents. All randomness is NumPy's and its state is part of the sampler's
`state()`, so a resumed run draws exactly the batches the uninterrupted run would have.

    sampler = Sampler(chunks, seed=1)
    tokens, mask = sampler.batch(batch_size=2, length=1024)
    sampler, val_batches, n_tokens = load_data(config, enc, hparams)   # a run's data
"""

import bisect

import numpy as np

from gpt2tune.data.load_dataset import load_dataset
from gpt2tune.errors import UserError, user_path


def rng_state(rs):
    kind, keys, pos, has_gauss, cached = rs.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def set_rng_state(rs, state):
    kind, keys, pos, has_gauss, cached = state
    rs.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


class Sampler:
    """Random windows of `length` tokens, each inside one chunk, uniform over the window
    starts nshepperd's sampler allowed (a window never ends on a chunk's last token)."""

    def __init__(self, chunks, seed=None):
        self.chunks = chunks
        self.rs = np.random.RandomState(seed=seed)
        self._starts = None  # (length, cumulative count of window starts per chunk)

    def check(self, length, what='dataset'):
        if not any(len(chunk) > length for chunk in self.chunks):
            longest = max((len(c) for c in self.chunks), default=0)
            raise UserError(f'{what}: its longest chunk has {longest} tokens; windows of '
                            f'{length} need more (add text, or raise --combine)')

    def sample(self, length):
        """One window, drawn directly (no rejection loop, so rare windows cannot stall)."""
        if self._starts is None or self._starts[0] != length:
            counts = [max(len(chunk) - length, 0) for chunk in self.chunks]
            self._starts = length, np.cumsum(counts).tolist()
        cumulative = self._starts[1]
        index = self.rs.randint(0, cumulative[-1])
        i = bisect.bisect_right(cumulative, index)
        within_chunk = index - (cumulative[i - 1] if i else 0)
        return self.chunks[i][within_chunk:within_chunk + length]

    def batch(self, batch_size, length):
        """tokens [batch, length] and loss mask [batch, length] (all ones)."""
        tokens = np.stack([self.sample(length) for _ in range(batch_size)]).astype(np.int32)
        return tokens, np.ones(tokens.shape, np.float32)

    def state(self):
        return {'rng': rng_state(self.rs)}

    def load_state(self, state):
        if 'order' in state:
            raise UserError('--pack: this run was trained with --pack; pass it again, or '
                            '--restore_from fresh to start over')
        set_rng_state(self.rs, state['rng'])


class PackedSampler:
    """Windows that start at a document boundary and hold whole documents, each followed by
    <|endoftext|>, as many as fit; the rest is padding the loss mask leaves out. Documents
    longer than a window are cut into window-sized pieces. Each pass over the documents is
    in a fresh random order."""

    def __init__(self, chunks, eot_token, seed=None):
        self.eot = eot_token
        self.docs = []
        for chunk in chunks:
            ends = np.flatnonzero(chunk == eot_token)
            starts = np.concatenate([[0], ends + 1])
            stops = np.concatenate([ends + 1, [len(chunk)]])  # each doc keeps its EOT
            self.docs += [chunk[a:b] for a, b in zip(starts, stops, strict=True) if b > a]
        self.rs = np.random.RandomState(seed=seed)
        self.order, self.position = [], 0
        self.pending = None  # the pieces of a document not yet placed in a window

    def check(self, length, what='dataset'):
        if not self.docs:
            raise UserError(f'{what}: holds no documents to pack')

    def _next_doc(self):
        if self.position == len(self.order):
            self.order = self.rs.permutation(len(self.docs)).tolist()
            self.position = 0
        self.position += 1
        return self.docs[self.order[self.position - 1]]

    def _pieces(self, doc, length):
        if doc[-1] != self.eot:
            doc = np.append(doc, self.eot)
        return [doc[i:i + length] for i in range(0, len(doc), length)]

    def window(self, length):
        tokens = np.full(length, self.eot, np.int32)
        mask = np.zeros(length, np.float32)
        filled = 0
        while filled < length:
            if self.pending is None:
                self.pending = self._pieces(self._next_doc(), length)
            piece = self.pending[0]
            if filled + len(piece) > length:
                break
            tokens[filled:filled + len(piece)] = piece
            mask[filled:filled + len(piece)] = 1
            filled += len(piece)
            self.pending = self.pending[1:] or None
        return tokens, mask

    def batch(self, batch_size, length):
        windows = [self.window(length) for _ in range(batch_size)]
        return np.stack([w[0] for w in windows]), np.stack([w[1] for w in windows])

    def state(self):
        return {'rng': rng_state(self.rs), 'order': self.order, 'position': self.position,
                'pending': None if self.pending is None else
                [piece.tolist() for piece in self.pending]}

    def load_state(self, state):
        if 'order' not in state:
            raise UserError('--pack: this run was trained without --pack; drop it, or '
                            '--restore_from fresh to start over')
        if state['order'] and max(state['order']) >= len(self.docs) or \
                len(state['order']) not in (0, len(self.docs)):
            raise UserError(f'--dataset: holds {len(self.docs)} documents, but this packed '
                            f'run\'s data order has {len(state["order"])}; train on the '
                            'same data, or --restore_from fresh to start over')
        set_rng_state(self.rs, state['rng'])
        self.order, self.position = state['order'], state['position']
        self.pending = None if state['pending'] is None else [
            np.array(piece, np.int32) for piece in state['pending']]


def add_noise(tokens, rs, p, n_vocab):
    """Replace each token by a random one with probability p (nshepperd's --noise)."""
    if p <= 0:
        return tokens
    mask = rs.uniform(size=tokens.shape) < p
    return np.where(mask, rs.randint(0, n_vocab, size=tokens.shape), tokens).astype(np.int32)


def load_data(c, enc, hparams):
    """A run's data: the training sampler, the validation batches (each checked against
    n_ctx) and the number of training tokens."""
    chunks = load_dataset(enc, user_path(c.dataset), c.combine, encoding=c.encoding)
    val_chunks = (load_dataset(enc, user_path(c.val_dataset), c.combine, encoding=c.encoding)
                  if c.val_dataset else chunks)
    for what, data in (('--dataset', chunks), ('--val_dataset', val_chunks)):
        for tokens in data:
            if len(tokens) and tokens.max() >= hparams.n_vocab:
                raise UserError(f'{what}: token id {int(tokens.max())} is outside the '
                                f'model\'s vocabulary [0, {hparams.n_vocab})')
    if c.pack:
        sampler = PackedSampler(chunks, enc.eot_token, seed=c.seed)
    else:
        sampler = Sampler(chunks, seed=c.seed)
    sampler.check(hparams.n_ctx, f'--dataset {c.dataset}')
    val_batches = []
    if c.val_every:
        val_sampler = Sampler(val_chunks, seed=1)
        val_sampler.check(hparams.n_ctx, f'--val_dataset {c.val_dataset or c.dataset}')
        val_batches = [val_sampler.batch(c.val_batch_size, hparams.n_ctx)[0]
                       for _ in range(c.val_batch_count)]
    n_tokens = sum(len(t) for t in chunks)
    print('dataset has', n_tokens, 'tokens')
    return sampler, val_batches, n_tokens
