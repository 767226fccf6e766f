"""The training loop (train/training.py, Trainer.run) end to end on the tiny model:
the loss falls, checkpoints and samples, early stopping, validation, resume, one
writer per run, a loss that is not finite."""

import json
import os
import re
import shutil
import signal
import subprocess

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from fixtures import (
    BLUE,
    ORANGE,
    losses_of,
    pixels_of,
    run_script,
    start_held_run,
    train_command,
)
from fixtures import train_config as config
from gpt2tune.errors import UserError
from gpt2tune.train import evaluation, loss_plot, training


@pytest.mark.slow
@pytest.mark.parametrize('optimizer', ['adam', 'adafactor'])
def test_loss_falls_on_a_repeated_corpus(tmp_path, models_dir, corpus, capsys, optimizer):
    training.train(config(tmp_path, models_dir, corpus, steps=40, optimizer=optimizer))
    losses, _ = losses_of(capsys)
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


def test_checkpoints_samples_and_steps(tmp_path, models_dir, corpus, capsys):
    training.train(config(tmp_path, models_dir, corpus, steps=5, save_every=2,
                          sample_every=3))
    run = tmp_path / 'checkpoint' / 'run1'
    assert (run / 'counter').read_text() == '5\n'
    assert tf.train.latest_checkpoint(str(run)).endswith('model-5')
    for step in (2, 4, 5):
        assert (run / f'model-{step}.index').exists()
    assert not (run / 'model-3.index').exists()
    assert sorted(os.listdir(tmp_path / 'samples' / 'run1')) == ['samples-3']
    text = (tmp_path / 'samples' / 'run1' / 'samples-3').read_text(encoding='utf-8')
    assert text.startswith('======== SAMPLE 1 ========\n')
    assert '<|endoftext|>' not in text  # samples stop at the end of a joke
    losses, out = losses_of(capsys)
    assert '[5 | ' in out and '[6 | ' not in out
    # The epoch: tokens trained on (5 steps of 2 windows of n_ctx 64) over the dataset's.
    dataset_tokens = int(re.search(r'dataset has (\d+) tokens', out).group(1))
    assert f'epoch={5 * 2 * 64 / dataset_tokens:.2f}\n' in out
    # loss.png pictures this run's five losses: the picture of its metrics, with the
    # training curve in blue and no validation curve.
    metrics = loss_plot.read_metrics(str(run))
    assert metrics['loss'][0] == [1, 2, 3, 4, 5]
    assert metrics['loss'][1] == pytest.approx(losses, abs=0.005)
    picture = matplotlib.image.imread(run / 'loss.png')
    redrawn = matplotlib.image.imread(loss_plot.plot_run(str(run), str(tmp_path / 'again.png')))
    np.testing.assert_array_equal(picture, redrawn)
    rgb = np.round(picture[..., :3] * 255)
    assert picture.shape == (450, 800, 4)  # 8 x 4.5 inches at 100 dpi
    assert pixels_of(rgb, BLUE) > 300 and pixels_of(rgb, ORANGE) == 0  # a curve, not a legend
    # The run folder is itself a model directory in the release layout.
    assert {'hparams.json', 'encoder.json', 'vocab.bpe', 'checkpoint'} <= set(os.listdir(run))


def test_early_stopping_after_n_evaluations_without_improvement(tmp_path, models_dir, corpus,
                                                                monkeypatch, capsys):
    # Validation at steps 0 (the start, which does not count), 1 (best), 2 and 3 (worse).
    losses = iter([5.0, 4.0, 4.5, 4.6, 3.0])
    monkeypatch.setattr(evaluation.Evaluation, 'validation_loss', lambda self: next(losses))
    c = config(tmp_path, models_dir, corpus, steps=10, val_every=1, early_stopping=2)
    assert training.train(c) == 3
    out = capsys.readouterr().out
    assert 'early stopping: no better validation loss in 2 evaluations (best 4.0000' in out
    assert 'interrupted' not in out
    run = tmp_path / 'checkpoint' / 'run1'
    assert json.loads((run / 'best' / 'best.json').read_text())['step'] == 1
    state = json.loads((run / 'model-3.state.json').read_text())['trainer']
    assert state['stale_evaluations'] == 2  # a resumed run goes on counting


@pytest.mark.slow
def test_copy_into_model_dir_then_sample(tmp_path, models_dir, corpus):
    training.train(config(tmp_path, models_dir, corpus, steps=2))
    target = tmp_path / 'models' / '117M'
    shutil.copytree(os.path.join(models_dir, 'tiny'), target)
    run = tmp_path / 'checkpoint' / 'run1'
    subprocess.run(f'cp -r {run}/* {target}/', shell=True, check=True)
    result = run_script('src/interactive_conditional_samples.py', '--top_k', '40',
                        '--temperature', '0.7', '--nsamples', '2', '--length', '5',
                        stdin='Why did the chicken cross the road?|\n', cwd=str(tmp_path))
    assert ' SAMPLE 2 ' in result.stdout
    assert 'Loading checkpoint models/117M/model-2' in result.stderr  # the fine-tuned one


@pytest.mark.slow
@pytest.mark.parametrize('optimizer', ['adam', 'adafactor'])
def test_resumed_run_repeats_the_uninterrupted_losses(tmp_path, models_dir, corpus, capsys,
                                                      optimizer):
    common = dict(noise=0.1, save_every=3, optimizer=optimizer)
    training.train(config(tmp_path / 'a', models_dir, corpus, steps=6, **common))
    whole, _ = losses_of(capsys)
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=3, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=6, **common))
    resumed, out = losses_of(capsys)
    assert 'model-3' in out
    assert resumed == whole


def test_second_writer_on_a_run_is_refused(tmp_path, models_dir, corpus):
    # The fake holds the first run after step 1 (its summary written, the folder settled)
    # for as long as the second one takes, on any machine.
    proc = start_held_run(tmp_path, models_dir, corpus, 1)
    try:
        before = sorted(os.listdir(tmp_path / 'checkpoint' / 'run1'))
        second = subprocess.run(train_command(models_dir, corpus), cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert 'another train.py is writing to this run' in second.stderr
        assert sorted(os.listdir(tmp_path / 'checkpoint' / 'run1')) == before
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and 'interrupted' in out
    finally:
        proc.kill()


@pytest.mark.slow
def test_nan_loss_stops_without_a_checkpoint(tmp_path, models_dir, corpus, capsys):
    c = config(tmp_path, models_dir, corpus, steps=20, optimizer='sgd', learning_rate=1e12,
               save_every=1000)
    with pytest.raises(UserError, match=r'loss is (nan|inf).*nothing saved') as error:
        training.train(c)
    # It stops at the first step whose loss is not finite, not at the end of the run.
    failed = int(re.match(r'step (\d+):', str(error.value)).group(1))
    steps, _ = losses_of(capsys)
    assert failed < 20 and len(steps) == failed - 1
    assert not (tmp_path / 'checkpoint' / 'run1' / 'counter').exists()
