"""A run's folder (train/checkpoints.py): training that never loses work, through a
killed save, a fresh start, retention, kills, signals and a full disk (the resumption
itself, a damaged checkpoint skipped: test_resume.py)."""

import json
import os
import resource
import signal
import subprocess
import tempfile

import numpy as np
import pytest
import tensorflow as tf

import run_with_fakes
import stress_resume
from fixtures import logged_losses, run_dir, script_env, train_command, variables_of
from fixtures import train_config as config
from gpt2tune.errors import UserError
from gpt2tune.train import training

pytestmark = pytest.mark.slow  # every test here trains or starts processes


@pytest.mark.parametrize('file', ['checkpoint', 'counter'])
def test_empty_state_file_or_counter_still_resumes_the_newest(
        tmp_path, models_dir, corpus, two_checkpoints, capsys, file):
    (two_checkpoints / file).write_text('')
    capsys.readouterr()
    training.train(config(tmp_path, models_dir, corpus, steps=5, save_every=2))
    out = capsys.readouterr().out
    assert f'Loading checkpoint {two_checkpoints}/model-4\n' in out
    assert '\n[5 | ' in out
    assert (two_checkpoints / 'counter').read_text() == '5\n'


def test_counter_without_checkpoints_is_refused(tmp_path, models_dir, corpus):
    run_dir(tmp_path).mkdir(parents=True)
    (run_dir(tmp_path) / 'counter').write_text('250\n')
    with pytest.raises(UserError, match='counter says step 250 but no checkpoint'):
        training.train(config(tmp_path, models_dir, corpus))


def test_stray_files_of_a_killed_save_are_cleaned(tmp_path, models_dir, corpus,
                                                  two_checkpoints):
    (two_checkpoints / 'model-6_temp').mkdir()
    (two_checkpoints / 'model-6_temp' / 'part-00000-of-00001.index').write_bytes(b'x')
    (two_checkpoints / 'counter.partial').write_text('6')
    (two_checkpoints / 'model-6.state.json').write_text('{}')
    (two_checkpoints / 'best.partial').mkdir()  # a best/ being written
    (two_checkpoints / 'best.old').mkdir()  # best/ moved out, the new one not yet in
    (two_checkpoints / 'best.old' / 'best.json').write_text('{"step": 2, "val_loss": 5.0}')
    training.train(config(tmp_path, models_dir, corpus, steps=4))
    names = os.listdir(two_checkpoints)
    assert not [n for n in names if 'model-6' in n or n.endswith(('.partial', '.old'))]
    assert (two_checkpoints / 'best' / 'best.json').read_text() == \
        '{"step": 2, "val_loss": 5.0}'


def test_best_model_is_replaced_whole(tmp_path, models_dir, corpus):
    training.train(config(tmp_path, models_dir, corpus, steps=6, val_every=2,
                          val_batch_count=2, learning_rate=1e-3))
    best = run_dir(tmp_path) / 'best'
    record = json.loads((best / 'best.json').read_text())
    assert record['step'] in (2, 4, 6)
    assert {'checkpoint', 'hparams.json', 'encoder.json', 'vocab.bpe'} <= set(os.listdir(best))
    assert not [n for n in os.listdir(run_dir(tmp_path)) if n.startswith('best.')]


def test_a_fresh_start_moves_the_earlier_run_aside(tmp_path, models_dir, corpus, capsys):
    """8 steps saved every 2, then --restore_from fresh for 2 steps, then `latest` to 4:
    it resumes the new run's step 2, never the old step 8."""
    training.train(config(tmp_path, models_dir, corpus, steps=8, save_every=2))
    training.train(config(tmp_path, models_dir, corpus, steps=2, save_every=2,
                          restore_from='fresh'))
    assert training.train(config(tmp_path, models_dir, corpus, steps=4, save_every=2)) == 4
    out = capsys.readouterr().out
    assert 'the earlier run in' in out and '(up to step 8) moves into replaced-' in out
    assert out.split('Loading checkpoint ')[-1].startswith(f'{run_dir(tmp_path)}/model-2\n')
    assert '\n[3 | ' in out.split('Loading checkpoint ')[-1]
    aside = [n for n in os.listdir(run_dir(tmp_path)) if n.startswith('replaced-')]
    assert len(aside) == 1
    old = set(os.listdir(run_dir(tmp_path) / aside[0]))
    assert {'model-8.index', 'model-8.state.json', 'counter', 'hparams.json'} <= old
    assert sorted(n for n in os.listdir(run_dir(tmp_path)) if n.endswith('.index')) == [
        'model-2.index', 'model-4.index']


@pytest.mark.parametrize('first, then, message', [
    (dict(pack=True), dict(pack=True, dataset='half'), '--dataset: holds 60 documents, but '
                                                       'this packed run\'s data order has 120'),
])
def test_resuming_with_other_data_settings_is_one_clear_error(tmp_path, models_dir, corpus,
                                                              first, then, message):
    half = tmp_path / 'half.txt'
    with open(corpus, encoding='utf-8') as f:
        jokes = f.read().split('<|endoftext|>')
    half.write_text('<|endoftext|>'.join(jokes[:60]), encoding='utf-8')
    training.train(config(tmp_path, models_dir, corpus, steps=2, save_every=2, **first))
    if then.get('dataset') == 'half':
        then = {**then, 'dataset': str(half)}
    with pytest.raises(UserError, match=message):
        training.train(config(tmp_path, models_dir, corpus, steps=4, **then))


def test_a_state_without_the_data_order_is_one_clear_error(tmp_path, models_dir, corpus,
                                                          two_checkpoints):
    (two_checkpoints / 'model-4.state.json').write_text('{"step": 4, "trainer": {}}')
    with pytest.raises(UserError, match='step 4: the saved data order or noise state is '
                                        'incomplete \\(KeyError'):
        training.train(config(tmp_path, models_dir, corpus, steps=5))


def test_the_vocabulary_is_in_place_before_hparams_marks_the_folder_complete(
        tmp_path, models_dir, corpus, monkeypatch):
    """A kill while the vocabulary is copied must not leave hparams.json, which would
    make the next save skip the copy (and a resume see "another vocabulary")."""
    from gpt2tune.model import model_dir

    def killed(source, directory):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(model_dir, 'copy_vocabulary', killed)
    with pytest.raises(UserError, match='saving failed'):
        training.train(config(tmp_path, models_dir, corpus, steps=1, save_every=1))
    assert not (run_dir(tmp_path) / 'hparams.json').exists()
    monkeypatch.undo()
    training.train(config(tmp_path, models_dir, corpus, steps=2, save_every=1))
    assert {'hparams.json', 'encoder.json', 'vocab.bpe'} <= set(os.listdir(run_dir(tmp_path)))


def test_retention_holds_over_seven_restarts(tmp_path, models_dir, corpus):
    for steps in range(1, 8):
        training.train(config(tmp_path, models_dir, corpus, steps=steps, save_every=1))
    indexes = sorted(n for n in os.listdir(run_dir(tmp_path)) if n.endswith('.index'))
    assert indexes == [f'model-{s}.index' for s in (3, 4, 5, 6, 7)]
    states = sorted(n for n in os.listdir(run_dir(tmp_path)) if n.endswith('.state.json'))
    assert len(states) == 5


@pytest.mark.parametrize('kept, expected', [(2, [3, 4]), (0, [1, 2, 3, 4])])
def test_max_checkpoints_keeps_the_newest(tmp_path, models_dir, corpus, kept, expected):
    training.train(config(tmp_path, models_dir, corpus, steps=4, save_every=1,
                          max_checkpoints=kept, keep_checkpoint_every_hours=0))
    indexes = sorted(n for n in os.listdir(run_dir(tmp_path)) if n.endswith('.index'))
    assert indexes == [f'model-{s}.index' for s in expected]


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, models_dir,
                                                         corpus):
    flags = ['--noise', '0.1', '--save_every', '1000']  # later flags override earlier
    whole = tmp_path / 'whole'
    args = stress_resume.parse_args(['--models_dir', models_dir, '--model_name', 'tiny',
                                     '--dataset', corpus])
    env = script_env()
    subprocess.run(stress_resume.command(args, str(whole), 8) + flags, env=env,
                   check=True, capture_output=True)
    parts = tmp_path / 'parts'
    # The fake holds the run after step 3 until the signal, however fast the steps go.
    proc = subprocess.Popen(
        run_with_fakes.command('hold_after_step=3', 'train.py',
                               *stress_resume.command(args, str(parts), 8)[2:], *flags),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith('fake: holding after step 3'):
                proc.send_signal(signal.SIGTERM)
                break
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert (parts / 'checkpoint' / 'run1' / 'counter').read_text() == '3\n'
    subprocess.run(stress_resume.command(args, str(parts), 8) + flags, env=env,
                   check=True, capture_output=True)
    expected = logged_losses(str(whole / 'checkpoint' / 'run1'))
    got = logged_losses(str(parts / 'checkpoint' / 'run1'))
    assert sorted(got) == list(range(1, 9))
    assert {s: v[-1] for s, v in got.items()} == {s: v[0] for s, v in expected.items()}
    a = variables_of(str(whole / 'checkpoint' / 'run1' / 'model-8'))
    b = variables_of(str(parts / 'checkpoint' / 'run1' / 'model-8'))
    assert sorted(a) == sorted(b) and len(a) > 3 * 26  # model, both Adam moments, step...
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_sigkill_at_random_moments_resumes_exactly(models_dir, corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))  # where its folders go
    # Seed 1's 8 rounds: 2 killed during start-up (the first and the fifth), 6 after a save.
    args = stress_resume.parse_args(['--rounds', '8', '--seed', '1', '--models_dir',
                                     models_dir, '--model_name', 'tiny', '--dataset', corpus])
    result = stress_resume.stress(args)
    # Each round that waited for a save added a step at least: the kills came mid-run.
    assert result['steps'] >= result['saving_rounds'] == 6
    assert result['mismatched'] == [] and result['missing'] == []
    assert os.listdir(tmp_path) == []  # its working folders removed


def test_a_save_that_cannot_be_written_keeps_the_previous_checkpoint(
        tmp_path, models_dir, corpus, two_checkpoints):
    size = (two_checkpoints / 'model-4.data-00000-of-00001').stat().st_size

    def limit_file_size():  # a full disk, as a process sees it: writes fail past a size
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
    cmd = train_command(models_dir, corpus, '--checkpoint_dir', str(tmp_path / 'checkpoint'),
                        '--steps', '6', '--save_every', '2')
    result = subprocess.run(cmd, preexec_fn=limit_file_size, capture_output=True, text=True,
                            env=script_env(), timeout=300)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(error) == 1 and 'model-6: saving failed' in error[0]
    assert error[0].endswith('the newest complete checkpoint is still '
                             f'{two_checkpoints}/model-4')
    assert tf.train.latest_checkpoint(str(two_checkpoints)) == f'{two_checkpoints}/model-4'
    assert (two_checkpoints / 'counter').read_text() == '4\n'
    assert not [n for n in os.listdir(two_checkpoints) if 'model-6' in n]
