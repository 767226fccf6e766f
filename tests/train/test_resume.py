"""Resuming a run from its own checkpoints (train/resume.py): a damaged newest one is
skipped for the one before, never another model's or vocabulary's; changed flags are
warned of; a 2019 run resumes with a fresh optimizer."""

import os
import shutil

import pytest
import tensorflow as tf

from fixtures import run_dir, write_random_model
from fixtures import train_config as config
from gpt2tune.errors import UserError
from gpt2tune.train import training

tf1 = tf.compat.v1

pytestmark = pytest.mark.slow  # every test here trains


def damage_truncated_data(run):
    path = run / 'model-4.data-00000-of-00001'
    path.write_bytes(path.read_bytes()[:1000])


def damage_garbage_index(run):
    (run / 'model-4.index').write_bytes(b'not an index' * 10)


def damage_missing_index(run):
    os.remove(run / 'model-4.index')


def damage_missing_run_state(run):
    os.remove(run / 'model-4.state.json')


def damage_run_state_without_trainer(run):
    (run / 'model-4.state.json').write_text('{"step": 4}')


@pytest.mark.parametrize('damage', [damage_truncated_data, damage_garbage_index,
                                    damage_missing_index, damage_missing_run_state,
                                    damage_run_state_without_trainer])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
        tmp_path, models_dir, corpus, two_checkpoints, capsys, damage):
    damage(two_checkpoints)
    capsys.readouterr()
    training.train(config(tmp_path, models_dir, corpus, steps=5, save_every=2))
    out = capsys.readouterr().out
    assert f'warning: skipping damaged checkpoint {two_checkpoints}/model-4 (' in out
    assert out.split('Loading checkpoint ')[-1].startswith(f'{two_checkpoints}/model-2\n')
    assert '\n[3 | ' in out
    assert 'tiny/model.ckpt' not in out  # never the pretrained weights


def test_all_checkpoints_damaged_stops_instead_of_starting_over(
        tmp_path, models_dir, corpus, two_checkpoints):
    for step in (2, 4):
        (two_checkpoints / f'model-{step}.index').write_bytes(b'garbage')
    with pytest.raises(UserError, match='no checkpoint could be loaded .*--restore_from fresh'):
        training.train(config(tmp_path, models_dir, corpus, steps=5))


def test_changed_model_shape_is_refused_before_training(tmp_path, models_dir, corpus,
                                                        two_checkpoints):
    from gpt2tune.model.hparams import HParams
    hparams = HParams.from_json(os.path.join(models_dir, 'tiny', 'hparams.json'))
    wider = HParams(**{**hparams.__dict__, 'n_embd': 64})
    write_random_model(tmp_path / 'models' / 'tiny', wider, os.path.join(models_dir, 'tiny'),
                       seed=1)
    with pytest.raises(UserError, match='model/wte has shape .* but hparams.json implies'):
        training.train(config(tmp_path, str(tmp_path / 'models'), corpus, steps=6))


def test_changed_vocabulary_is_refused(tmp_path, models_dir, corpus,
                                       two_checkpoints):
    other = tmp_path / 'models' / 'tiny'
    shutil.copytree(os.path.join(models_dir, 'tiny'), other)
    with open(other / 'vocab.bpe', 'a', encoding='utf-8') as f:
        f.write('\n')
    with pytest.raises(UserError, match='trained with another vocabulary'):
        training.train(config(tmp_path, str(tmp_path / 'models'), corpus, steps=6))


def test_changed_flags_warn_once_each(tmp_path, models_dir, corpus, two_checkpoints,
                                      capsys):
    capsys.readouterr()
    training.train(config(tmp_path, models_dir, corpus, steps=5, learning_rate=1e-4,
                          grad_clip=1.0))
    out = capsys.readouterr().out
    assert out.count('warning: --learning_rate was 0.003 in this run, now 0.0001') == 1
    assert out.count('warning: --grad_clip was 0.0 in this run, now 1.0') == 1


def write_2019_run(run, models_dir, step):
    """A run folder as nshepperd's 2019 train.py left it: model variables only (no
    optimizer slots, no global_step), model-<step>.*, the state file and `counter`."""
    from gpt2tune.model import model, model_dir
    loaded = model_dir.load('tiny', models_dir)
    with tf.Graph().as_default(), tf1.Session() as sess:
        model.model(loaded.hparams, tf1.placeholder(tf.int32, [None, None]))
        model_dir.restore(sess, loaded.checkpoint)
        all_vars = [v for v in tf1.trainable_variables() if 'model' in v.name]
        saver = tf1.train.Saver(var_list=all_vars, max_to_keep=5,
                                keep_checkpoint_every_n_hours=2)
        run.mkdir(parents=True)
        saver.save(sess, str(run / 'model'), global_step=step)
    (run / 'counter').write_text(f'{step}\n')


def test_a_2019_run_resumes_with_a_fresh_optimizer(tmp_path, models_dir, corpus, capsys):
    write_2019_run(run_dir(tmp_path), models_dir, 5)
    assert training.train(config(tmp_path, models_dir, corpus, steps=7, save_every=1)) == 7
    out = capsys.readouterr().out
    assert 'model-5 has no optimizer or data state (written by the 2019 train.py?): ' \
        'loading its weights, the optimizer starts afresh' in out
    assert '\n[6 | ' in out and '\n[7 | ' in out and '\n[1 | ' not in out
    stored = dict(tf.train.list_variables(str(run_dir(tmp_path) / 'model-7')))
    assert stored['global_step'] == [] and 'model/wte/Adam' in stored
