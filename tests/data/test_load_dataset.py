"""Reading corpora (data/load_dataset.py): text read in pieces that encode like the whole,
token arrays of the vocabulary's width."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from gpt2tune.data import encoder, load_dataset


@pytest.fixture(scope='module')
def enc(vocab_dir):
    return encoder.load_encoder(vocab_dir)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.lists(st.sampled_from(list('ab é日\n\r\t .\'s') + ['<|endoftext|>']),
                          min_size=1).map(''.join), st.integers(1, 12))
def test_streamed_pieces_encode_like_the_whole_text(enc, tmp_path_factory, text, piece_chars):
    path = tmp_path_factory.mktemp('stream') / 'text.txt'
    path.write_text(text, encoding='utf-8', newline='')
    pieces = list(load_dataset.iter_text_pieces(str(path), piece_chars=piece_chars))
    whole = path.read_text(encoding='utf-8')  # universal newlines, like the original
    assert ''.join(pieces) == whole
    assert [t for p in pieces for t in enc.encode(p)] == enc.encode(whole)


def test_token_dtype_fits_vocabulary():
    assert load_dataset.token_dtype(50257) == np.uint16
    assert load_dataset.token_dtype(70000) == np.int32
