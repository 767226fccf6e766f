"""gpt2tune-huggingface (commands/huggingface.py): the files export writes for
transformers, its tokenizer's ids, import's refusal of an existing directory (the
conversion of the weights and config.json's checks: tests/export/test_huggingface.py)."""

import json
import os

import pytest

from fixtures import MIXED_TEXTS
from gpt2tune.commands import huggingface as huggingface_command
from gpt2tune.data import encoder
from gpt2tune.errors import UserError


def test_export_files_and_generation_config(exported):
    names = set(os.listdir(exported))
    assert {'config.json', 'model.safetensors', 'vocab.json', 'merges.txt',
            'tokenizer_config.json', 'generation_config.json'} <= names
    generation = json.loads((exported / 'generation_config.json').read_text())
    config = json.loads((exported / 'config.json').read_text())
    assert generation['eos_token_id'] == config['eos_token_id'] == config['vocab_size'] - 1


def test_transformers_tokenizer_gives_our_ids(models_dir, exported):
    transformers = pytest.importorskip('transformers')
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(exported))
    enc = encoder.load_encoder(os.path.join(models_dir, 'tiny'))
    for text in MIXED_TEXTS:
        assert tok(text)['input_ids'] == enc.encode(text), text


def test_import_into_an_existing_directory_is_refused_and_leaves_it(exported, tmp_path):
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'notes.txt').write_text('mine')
    with pytest.raises(UserError, match='taken: already exists'):
        huggingface_command.import_(str(exported), str(tmp_path / 'taken'))
    assert os.listdir(tmp_path / 'taken') == ['notes.txt']
    assert sorted(os.listdir(tmp_path)) == ['taken']
