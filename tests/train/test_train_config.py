"""A run's settings (train/train_config.py): the flags built from TrainConfig, the
one-line errors before any work, paths, the memory check's settings."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from fixtures import (
    ROOT,
)
from fixtures import train_config as config
from gpt2tune import resources
from gpt2tune.errors import UserError
from gpt2tune.train import training
from gpt2tune.train.train_config import TrainConfig


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='/nonexistent.txt'), '/nonexistent.txt: no such file or directory'),
    (dict(sample_length=0), '--sample_length 0: must be a whole number, at least 1'),
    (dict(top_p=1.5), '--top_p 1.5: must be between 0 and 1'),
    (dict(top_k=10 ** 6), '--top_k 1000000: must be between 0'),
    (dict(model_name='nope'), 'nope: no such model directory'),
    (dict(lr_schedule='cosine', steps=0), '--lr_schedule cosine decays towards --steps'),
    (dict(optimizer='adagrad'), '--optimizer adagrad: choose adam, adafactor or sgd'),
    (dict(layers_to_train=3), '--layers_to_train 3: the model has 2 blocks'),
    (dict(layers_to_train=1, also_train='ln_f,h0/nope'), '--also_train h0/nope: the model '
                                                         'has no weight model/h0/nope'),
    (dict(also_train='wte'), '--also_train adds to --layers_to_train'),
    (dict(early_stopping=2), '--early_stopping 2 watches the validation loss'),
    (dict(max_checkpoints=-1), '--max_checkpoints -1: must be 0 or more'),
])
def test_bad_input_is_one_clear_error(tmp_path, models_dir, corpus, overrides, message):
    with pytest.raises(UserError, match=message):
        training.train(config(tmp_path, models_dir, corpus, **overrides))
    assert not (tmp_path / 'checkpoint').exists()


@pytest.mark.slow
def test_memory_check_warn_goes_on(tmp_path, models_dir, corpus, monkeypatch, capsys):
    monkeypatch.setattr(resources, 'physical_memory', lambda: 1 << 20)
    assert training.train(config(tmp_path, models_dir, corpus, steps=1,
                                 memory_check='warn')) == 1
    assert 'warning: --optimizer adam: training' in capsys.readouterr().out


def test_corpus_too_short_for_the_context(tmp_path, models_dir):
    short = tmp_path / 'short.txt'
    short.write_text('just a few words', encoding='utf-8')
    with pytest.raises(UserError, match='windows of 64 need more'):
        training.train(config(tmp_path, models_dir, str(short)))
    assert not (tmp_path / 'checkpoint').exists()  # checked before the run folder is made


def test_parser_is_built_from_the_config_and_print_config_needs_no_tensorflow():
    result = subprocess.run(
        [sys.executable, '-X', 'importtime', 'train.py', '--dataset', 'x', '--optimizer',
         'adafactor', '--no-memory_saving_gradients', '--print_config'], capture_output=True,
        text=True, cwd=ROOT, check=True)
    values = json.loads(result.stdout)
    assert values == {**dataclasses.asdict(TrainConfig(dataset='x')), 'optimizer': 'adafactor',
                      'memory_saving_gradients': False}
    assert 'train_config' in result.stderr and '| tensorflow' not in result.stderr


@pytest.mark.slow
def test_home_in_path_flags_is_expanded_everywhere(tmp_path, models_dir, corpus,
                                                   monkeypatch):
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / 'tiny')
    monkeypatch.setenv('HOME', str(tmp_path))
    training.train(config(tmp_path, '~/models', corpus, steps=1, save_every=1,
                          checkpoint_dir='~/ck', sample_dir='~/samples', sample_every=1))
    assert (tmp_path / 'ck' / 'run1' / 'model-1.index').exists()
    assert (tmp_path / 'samples' / 'run1' / 'samples-1').exists()
    assert not (tmp_path / '~').exists()
