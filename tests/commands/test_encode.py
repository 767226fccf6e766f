import json
import os
import re

import numpy as np
import pytest

from fixtures import reference_tokenizer, run_script
from gpt2tune.data import encoder


@pytest.fixture
def texts(tmp_path):
    (tmp_path / 'a.txt').write_text('Why did the chicken cross the road?|To get across.',
                                    encoding='utf-8')
    (tmp_path / 'b.txt').write_text('Knock knock.|Who is there?', encoding='utf-8')
    return tmp_path


def encode(models_dir, *args, check=True):
    return run_script('encode.py', '--models_dir', models_dir, '--model_name', 'tiny', *args,
                      check=check)


def test_npz_holds_reference_ids_joined_by_endoftext(models_dir, vocab_dir, texts):
    out = texts / 'out.npz'
    encode(models_dir, str(texts / '*.txt'), str(out))
    with np.load(out) as npz:
        arrays = [npz[name] for name in npz.files]
    reference = reference_tokenizer(vocab_dir)
    expected = reference.encode((texts / 'a.txt').read_text(encoding='utf-8') +
                                '<|endoftext|>' + (texts / 'b.txt').read_text(encoding='utf-8'))
    assert len(arrays) == 1
    assert arrays[0].tolist() == expected.ids
    assert arrays[0].tolist().count(reference.token_to_id('<|endoftext|>')) == 1


def test_combine_zero_gives_one_array_per_file(models_dir, vocab_dir, texts):
    out = texts / 'out.npz'
    encode(models_dir, '--combine', '0', str(texts), str(out))
    reference = reference_tokenizer(vocab_dir)
    with np.load(out) as npz:
        assert [npz[name].tolist() for name in npz.files] == [
            reference.encode((texts / name).read_text(encoding='utf-8')).ids
            for name in ('a.txt', 'b.txt')]


def test_endoftext_as_text_reproduces_the_original_encoding(models_dir, vocab_dir, texts):
    out = texts / 'out.npz'
    encode(models_dir, '--endoftext_as_text', str(texts / '*.txt'), str(out))
    # The 2019 encoder read <|endoftext|> between the files as plain text.
    text = (texts / 'a.txt').read_text(encoding='utf-8') + '<|endoftext|>' + \
        (texts / 'b.txt').read_text(encoding='utf-8')
    with np.load(out) as npz:
        assert npz['arr_0'].tolist() == reference_tokenizer(vocab_dir, special=False).encode(
            text).ids


def test_encoded_jokes_match_reference_ids(models_dir, vocab_dir, jokes_json, tmp_path):
    with open(jokes_json, encoding='utf-8') as f:
        text = '<|endoftext|>'.join(j['body'] for j in json.load(f))
    (tmp_path / 'jokes.txt').write_text(text, encoding='utf-8')
    encode(models_dir, str(tmp_path / 'jokes.txt'), str(tmp_path / 'jokes.npz'))
    with np.load(tmp_path / 'jokes.npz') as npz:
        ours = npz['arr_0'].tolist()
    # As read back with universal newlines, as encode.py reads text.
    assert ours == reference_tokenizer(vocab_dir).encode(
        (tmp_path / 'jokes.txt').read_text(encoding='utf-8')).ids


@pytest.mark.parametrize('name, content, message', [
    ('missing.txt', None, 'missing.txt: no such file or directory'),
    ('nothing*.txt', None, r'nothing\*.txt: no file matches this pattern'),
    ('empty', 'a directory', 'empty: directory holds no files'),
    ('e.txt', b'', 'e.txt: file is empty'),
    ('bad.txt', b'fine text \xff more', 'bad.txt: byte offset 10 is not valid utf-8'),
])
def test_bad_input_is_one_line_and_leaves_no_output(models_dir, tmp_path, name, content,
                                                    message):
    if content == 'a directory':
        (tmp_path / name).mkdir()
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    result = encode(models_dir, str(tmp_path / name), str(tmp_path / 'out.npz'), check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1
    assert re.search(message, lines[0])
    assert not [f for f in os.listdir(tmp_path) if f.startswith('out.npz')]


def test_encoding_errors_replace_accepts_bad_bytes(models_dir, vocab_dir, tmp_path):
    (tmp_path / 'bad.txt').write_bytes(b'fine text \xff more')
    encode(models_dir, '--encoding_errors', 'replace', str(tmp_path / 'bad.txt'),
           str(tmp_path / 'out.npz'))
    with np.load(tmp_path / 'out.npz') as npz:
        assert npz['arr_0'].tolist() == reference_tokenizer(vocab_dir).encode(
            'fine text \ufffd more').ids


def test_npz_with_ids_outside_the_vocabulary_is_refused(tmp_path, models_dir):
    from gpt2tune.data.load_dataset import load_dataset
    from gpt2tune.errors import UserError
    np.savez(tmp_path / 'bad.npz', np.array([1, 2, 70000]))
    enc = encoder.get_encoder('tiny', models_dir)
    with pytest.raises(UserError, match=f'token id 70000, outside the vocabulary '
                                        f'\\[0, {enc.n_vocab}\\)'):
        load_dataset(enc, str(tmp_path / 'bad.npz'))
