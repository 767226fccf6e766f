"""gpt2tune-init (commands/init_model.py): a model directory of the shape asked for, its
vocabulary's size, the parameters it reports, --size, an existing directory refused (the
initialisation itself: tests/model/test_model_dir.py)."""

import json
import os

import numpy as np
import pytest

from fixtures import variables_of
from gpt2tune.commands import init_model
from gpt2tune.errors import UserError
from gpt2tune.model import model_dir

SMALL = ['--n_ctx', '32', '--n_embd', '16', '--n_head', '2', '--n_layer', '1']


def test_the_model_has_the_shape_asked_for_and_the_vocabularys_size(tmp_path, vocab_dir):
    init_model.main([str(tmp_path / 'small'), '--vocab_dir', vocab_dir, *SMALL])
    with open(os.path.join(vocab_dir, 'encoder.json'), encoding='utf-8') as f:
        n_vocab = len(json.load(f))
    assert json.loads((tmp_path / 'small' / 'hparams.json').read_text()) == {
        'n_vocab': n_vocab, 'n_ctx': 32, 'n_embd': 16, 'n_head': 2, 'n_layer': 1}
    assert variables_of(str(tmp_path / 'small' / 'model.ckpt'))['model/wte'].shape == (
        n_vocab, 16)


def test_the_parameters_printed_are_the_checkpoints(tmp_path, vocab_dir, capsys):
    init_model.main([str(tmp_path / 'small'), '--vocab_dir', vocab_dir, *SMALL])
    stored = variables_of(str(tmp_path / 'small' / 'model.ckpt'))
    count = sum(int(np.prod(a.shape)) for a in stored.values())
    assert capsys.readouterr().out.startswith(f'{tmp_path / "small"}: {count:,} parameters, ')


def test_size_gives_a_released_models_shape(tmp_path, vocab_dir, monkeypatch):
    made = []
    monkeypatch.setattr(model_dir, 'init_random', lambda directory, hparams, vocab, seed:
                        made.append(hparams))
    init_model.main([str(tmp_path / 'medium'), '--vocab_dir', vocab_dir, '--size', '355M',
                     '--n_embd', '48'])
    # GPT-2 medium: 24 blocks of 16 heads, 1024 wide (--size wins over --n_embd).
    assert [(h.n_embd, h.n_head, h.n_layer, h.n_ctx) for h in made] == [(1024, 16, 24, 1024)]


def test_an_existing_directory_is_refused_and_left_alone(tmp_path, vocab_dir):
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'notes.txt').write_text('mine')
    with pytest.raises(UserError, match='taken: already exists'):
        init_model.main([str(tmp_path / 'taken'), '--vocab_dir', vocab_dir, *SMALL])
    assert os.listdir(tmp_path / 'taken') == ['notes.txt']
