"""Model directories and their checkpoints (model/model_dir.py): loading, with each
missing or mismatched file named; saving in the release layout; random initialisation."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fixtures import variables_of
from gpt2tune.errors import UserError
from gpt2tune.model import model_dir
from gpt2tune.model.hparams import HParams, variable_shapes


def test_init_random_is_gpt2s_initialisation(tmp_path, tiny, vocab_dir):
    """init_model.py's weights: zero biases, unit gains, zero layer-norm biases."""
    hparams, _ = tiny
    model_dir.init_random(str(tmp_path / 'm'), hparams, vocab_dir, seed=1)
    weights = variables_of(model_dir.find_checkpoint(str(tmp_path / 'm')), np.float64)
    assert sorted(weights) == sorted(variable_shapes(hparams))
    for name, value in weights.items():
        if name.endswith(('/b', '/g')):
            assert np.all(value == (name.endswith('/g'))), name
        else:
            assert 0 < value.std() < 0.05, name


def test_vocabulary_without_endoftext_is_one_clear_error(tmp_path, models_dir):
    import json
    import shutil
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'm')
    vocab = json.loads((tmp_path / 'm' / 'encoder.json').read_text(encoding='utf-8'))
    del vocab['<|endoftext|>']
    (tmp_path / 'm' / 'encoder.json').write_text(json.dumps(vocab), encoding='utf-8')
    with pytest.raises(UserError, match='encoder.json: has no <\\|endoftext\\|> token'):
        model_dir.load('m', str(tmp_path))


def test_user_paths_expand_home_and_variables(tmp_path, models_dir, monkeypatch):
    import shutil
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / 'tiny')
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('MODELS', str(tmp_path / 'models'))
    for written in ('~/models', '$MODELS'):
        assert model_dir.load('tiny', written).path == str(tmp_path / 'models' / 'tiny')


def test_saved_checkpoint_is_exactly_the_release_contract(tiny):
    hparams, ckpt = tiny
    stored = dict(tf.train.list_variables(ckpt))
    assert stored == variable_shapes(hparams)
    assert 'model/h1/attn/c_attn/w' in stored
    assert stored['model/h0/mlp/c_fc/w'] == [1, hparams.n_embd, 4 * hparams.n_embd]


def test_state_file_paths_are_relative(tiny, models_dir):
    with open(f'{models_dir}/tiny/checkpoint', encoding='utf-8') as f:
        assert f.read().splitlines()[0] == 'model_checkpoint_path: "model.ckpt"'


def test_hparams_that_do_not_match_checkpoint_name_variable_and_shapes(tmp_path, tiny,
                                                                         models_dir):
    hparams, _ = tiny
    wrong = HParams(n_vocab=hparams.n_vocab, n_ctx=32, n_embd=hparams.n_embd,
                          n_head=hparams.n_head, n_layer=hparams.n_layer)
    with pytest.raises(UserError, match=r'model/wpe has shape \[64, 32\] but hparams.json '
                                        r'implies \[32, 32\]'):
        model_dir.check_checkpoint(f'{models_dir}/tiny/model.ckpt', wrong)


def test_missing_model_directory_says_how_to_download(tmp_path):
    with pytest.raises(UserError, match='download_model.sh 117M'):
        model_dir.load('117M', str(tmp_path))


def test_missing_files_are_named(tmp_path):
    (tmp_path / 'm').mkdir()
    (tmp_path / 'm' / 'hparams.json').write_text('{}')
    with pytest.raises(UserError, match='missing encoder.json, vocab.bpe'):
        model_dir.load('m', str(tmp_path))
