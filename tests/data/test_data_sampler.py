"""Training batches from corpora of every shape: each one trains or is refused."""

import signal

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from gpt2tune.data.data_sampler import PackedSampler, Sampler
from gpt2tune.errors import UserError

EOT = 0
LENGTH = 128


class TimeLimit:
    """Fails a case that takes longer than `seconds` (a sampler that never returns)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def expire(signum, frame):
            raise TimeoutError(f'no batch within {self.seconds} s')
        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def corpus(lengths, seed):
    rs = np.random.RandomState(seed)
    return [rs.randint(1, 50, size=n).astype(np.int32) for n in lengths]


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.lists(st.integers(0, 3 * LENGTH), min_size=1, max_size=6),
                  st.integers(0, 100), st.sampled_from([Sampler, PackedSampler]))
def test_every_corpus_trains_or_is_refused(lengths, seed, kind):
    chunks = corpus(lengths, seed)
    sampler = Sampler(chunks, seed=seed) if kind is Sampler else \
        PackedSampler(chunks, EOT, seed=seed)
    try:
        sampler.check(LENGTH)
    except UserError:
        assert not any(n > LENGTH for n in lengths) if kind is Sampler else sum(lengths) == 0
        return
    with TimeLimit(5):
        tokens, mask = sampler.batch(4, LENGTH)
    assert tokens.shape == mask.shape == (4, LENGTH)
    if kind is Sampler:  # each window is a piece of one chunk
        for row in tokens:
            assert any(row.tolist() == c[i:i + LENGTH].tolist() for c in chunks
                       for i in range(len(c) - LENGTH))


@pytest.mark.parametrize('lengths', [[LENGTH + 1], [3, LENGTH + 1], [LENGTH + 1, 3, 3]])
def test_a_single_window_is_drawn(lengths):
    """The cases that crashed (one chunk of n_ctx + 1) or hung (short chunks beside it)."""
    chunks = corpus(lengths, 0)
    long = next(c for c in chunks if len(c) == LENGTH + 1)
    with TimeLimit(5):
        tokens, _ = Sampler(chunks, seed=1).batch(3, LENGTH)
    assert (tokens == long[:LENGTH]).all()


def test_windows_are_uniform_over_starts():
    chunks = [np.arange(LENGTH + 3), np.arange(1000, 1000 + LENGTH + 1)]
    sampler = Sampler(chunks, seed=2)
    firsts = [int(sampler.sample(LENGTH)[0]) for _ in range(4000)]
    counts = {v: firsts.count(v) for v in set(firsts)}
    assert set(counts) == {0, 1, 2, 1000}
    assert all(800 < n < 1200 for n in counts.values())


def test_packing_starts_windows_at_document_boundaries():
    eot = EOT
    docs = [np.arange(1, n + 1) for n in (3, 5, 2, 9, 4)]
    chunk = np.concatenate([np.append(d, eot) for d in docs])
    sampler = PackedSampler([chunk], eot, seed=3)
    # What may stand in a window: a whole document with its <|endoftext|>, or one of the
    # two window-sized pieces of the 9-token document (10 tokens with its EOT).
    units = [np.append(d, eot).tolist() for d in docs if len(d) < 8]
    units += [list(range(1, 9)), [9, eot]]
    seen = []
    for _ in range(4):
        tokens, mask = sampler.batch(batch_size=6, length=8)
        for row, row_mask in zip(tokens, mask, strict=True):
            kept = row[row_mask == 1].tolist()
            assert (row[row_mask == 0] == eot).all() and row_mask[0] == 1
            assert (row_mask[:len(kept)] == 1).all()  # padding only at the end
            while kept:  # the window is units end to end, starting at its first token
                unit = next((u for u in units if kept[:len(u)] == u), None)
                assert unit is not None, kept
                seen.append(tuple(unit))
                kept = kept[len(unit):]
    assert set(seen) == {tuple(u) for u in units}  # every document came round
    # The second piece follows the first (it may still be pending at the very end).
    assert seen.count(tuple(range(1, 9))) - seen.count((9, eot)) in (0, 1)


def test_resuming_with_packing_turned_on_or_off_is_one_clear_error():
    chunks = corpus([LENGTH + 5, 40], 0)
    windows, packed = Sampler(chunks, seed=1), PackedSampler(chunks, EOT, seed=1)
    with pytest.raises(UserError, match='--pack: this run was trained without --pack'):
        packed.load_state(windows.state())
    with pytest.raises(UserError, match='--pack: this run was trained with --pack'):
        windows.load_state(packed.state())
