import json

import hypothesis
import hypothesis.strategies as st
import pytest

from fixtures import MIXED_TEXTS, reference_tokenizer
from gpt2tune.data import encoder
from gpt2tune.errors import UserError


@pytest.fixture(scope='module')
def enc(vocab_dir):
    return encoder.load_encoder(vocab_dir)


def test_known_gpt2_ids(real_vocab):
    enc = encoder.load_encoder(real_vocab)
    assert enc.encode('Hello world') == [15496, 995]
    assert enc.encode(' the<|endoftext|>') == [262, 50256]
    assert enc.n_vocab == 50257 and enc.eot_token == 50256


@pytest.mark.parametrize('text', MIXED_TEXTS)
def test_ids_match_independent_bpe(enc, vocab_dir, text):
    ref = reference_tokenizer(vocab_dir)
    assert enc.encode(text) == ref.encode(text).ids


def test_ids_match_independent_bpe_on_jokes(enc, vocab_dir, jokes_json):
    ref = reference_tokenizer(vocab_dir)
    with open(jokes_json, encoding='utf-8') as f:
        bodies = [joke['body'] for joke in json.load(f)]
    ours = enc.encode_batch(bodies)
    assert ours == [e.ids for e in ref.encode_batch(bodies)]


def test_endoftext_is_one_token(enc):
    ids = enc.encode('a<|endoftext|>b')
    assert ids.count(enc.eot_token) == 1
    assert enc.decode(ids) == 'a<|endoftext|>b'


def test_endoftext_as_text_keeps_original_behaviour(vocab_dir):
    legacy = encoder.load_encoder(vocab_dir, allow_special=False)
    reference = reference_tokenizer(vocab_dir, special=False)
    for text in MIXED_TEXTS:
        assert legacy.encode(text) == reference.encode(text).ids, text
    ids = legacy.encode('a<|endoftext|>b')
    assert legacy.eot_token not in ids
    assert legacy.decode(ids) == 'a<|endoftext|>b'


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.text())
def test_round_trip_random_unicode(enc, text):
    assert enc.decode(enc.encode(text)) == text


def test_merge_order_mismatch_is_refused(tmp_path, vocab_dir):
    with open(f'{vocab_dir}/encoder.json', encoding='utf-8') as f:
        vocab = json.load(f)
    with open(f'{vocab_dir}/vocab.bpe', encoding='utf-8') as f:
        lines = f.read().split('\n')
    lines[1], lines[2] = lines[2], lines[1]  # the first two merges swapped
    (tmp_path / 'encoder.json').write_text(json.dumps(vocab), encoding='utf-8')
    (tmp_path / 'vocab.bpe').write_text('\n'.join(lines), encoding='utf-8')
    with pytest.raises(UserError, match='merge 2 .* ids must follow merge order'):
        encoder.load_encoder(str(tmp_path))


def test_missing_vocabulary_names_the_file(tmp_path):
    with pytest.raises(UserError, match='encoder.json: missing'):
        encoder.load_encoder(str(tmp_path))
