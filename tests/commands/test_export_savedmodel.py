"""The SavedModel export's command line (commands/export_savedmodel.py): its refusals in
one error line, and nothing left by a failed save."""

import os

import pytest
import tensorflow as tf

from fixtures import run_script
from gpt2tune.commands import export_savedmodel


def cli_error(result):
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['{models}/nothing', '{tmp}/out'], 'nothing: no such model directory'),
    (['{models}/tiny', '{tmp}/existing'], 'existing: already exists'),
    (['{models}/tiny', '{tmp}/missing/out'], 'missing: no such directory'),
    (['{models}/tiny', '{tmp}/out', '--top_k', '40'], 'unrecognized arguments: --top_k'),
    (['{models}/tiny', '{tmp}/out', '--checkpoint', '{tmp}/nowhere'],
     'nowhere: no such checkpoint'),
])
def test_bad_command_line_is_one_error_line_and_writes_nothing(models_dir, tmp_path, args,
                                                              message):
    (tmp_path / 'existing').mkdir()
    before = sorted(os.listdir(tmp_path))
    result = run_script('gpt2tune.commands.export_savedmodel',
                        *[a.format(models=models_dir, tmp=tmp_path) for a in args],
                        check=False)
    assert message in cli_error(result)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_failed_save_leaves_nothing(models_dir, tmp_path, monkeypatch):
    def failing_save(module, directory, **kwargs):
        open(os.path.join(directory, 'saved_model.pb'), 'w').close()
        raise OSError('disk full')
    monkeypatch.setattr(tf.saved_model, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        export_savedmodel.main([os.path.join(models_dir, 'tiny'), str(tmp_path / 'out')])
    assert os.listdir(tmp_path) == []
