"""gpt2tune-lora (commands/lora.py): `merge` writes a model directory, refuses an existing
one, and leaves nothing when it fails (the adapters' arithmetic and the merged weights of
a LoRA run: tests/model/test_lora.py)."""

import os

import numpy as np
import pytest

from fixtures import variables_of
from gpt2tune import cli
from gpt2tune.commands import lora as lora_command
from gpt2tune.errors import UserError
from gpt2tune.model import model_dir


def test_merge_writes_a_model_directory_with_the_weights_it_was_given(models_dir, tmp_path,
                                                                      capsys):
    """A model without adapters merges to the same weights, vocabulary and hparams."""
    tiny = os.path.join(models_dir, 'tiny')
    lora_command.main(['merge', tiny, str(tmp_path / 'merged')])
    original = variables_of(os.path.join(tiny, 'model.ckpt'))
    written = variables_of(str(tmp_path / 'merged' / 'model.ckpt'))
    assert sorted(written) == sorted(original)
    for name in original:
        np.testing.assert_array_equal(written[name], original[name], err_msg=name)
    for name in ('hparams.json', 'encoder.json', 'vocab.bpe'):
        with open(os.path.join(tiny, name), 'rb') as a, \
                open(tmp_path / 'merged' / name, 'rb') as b:
            assert a.read() == b.read(), name
    assert capsys.readouterr().out.startswith(f'{tmp_path / "merged"}: ')


def test_merge_into_an_existing_directory_is_refused_before_loading(models_dir, tmp_path,
                                                                     monkeypatch):
    def no_tensorflow(verbose=False):
        raise AssertionError('TensorFlow started')
    monkeypatch.setattr(cli, 'start_tensorflow', no_tensorflow)
    (tmp_path / 'taken').mkdir()
    with pytest.raises(UserError, match='taken: already exists'):
        lora_command.merge_run(os.path.join(models_dir, 'tiny'), str(tmp_path / 'taken'))
    assert os.listdir(tmp_path / 'taken') == []


def test_a_failed_merge_leaves_nothing(models_dir, tmp_path, monkeypatch):
    def failing_save(directory, arrays, hparams, vocab_dir):
        os.makedirs(directory)
        open(os.path.join(directory, 'model.ckpt.index'), 'w').close()
        raise OSError('disk full')
    monkeypatch.setattr(model_dir, 'save_arrays', failing_save)
    with pytest.raises(OSError, match='disk full'):
        lora_command.merge_run(os.path.join(models_dir, 'tiny'), str(tmp_path / 'merged'))
    assert os.listdir(tmp_path) == []
