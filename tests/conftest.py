"""Shared fixtures: the GPT-2 vocabulary (real when GPT2_VOCAB_DIR is set, else a small
one trained here), tiny random models in the release layout, and joke files."""

import os
import subprocess
import sys

import pytest

import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def vocab_dir(tmp_path_factory):
    real = os.environ.get('GPT2_VOCAB_DIR')
    if real and os.path.isfile(os.path.join(real, 'encoder.json')):
        return real
    directory = tmp_path_factory.mktemp('vocab')
    fixtures.write_vocabulary(directory, fixtures.SAMPLE_TEXT, n_merges=300)
    return str(directory)


@pytest.fixture(scope='session')
def real_vocab():
    """The real GPT-2 vocabulary, or skip: for checks against GPT-2's published ids."""
    real = os.environ.get('GPT2_VOCAB_DIR')
    if not (real and os.path.isfile(os.path.join(real, 'encoder.json'))):
        pytest.skip('GPT2_VOCAB_DIR is not set to the GPT-2 vocabulary')
    return real


@pytest.fixture(scope='session')
def models_dir(tmp_path_factory, vocab_dir):
    """A models folder holding `tiny`: 2 layers, 32 wide, n_ctx 64, random weights."""
    import encoder
    from init_model import init_model
    from model import HParams

    directory = tmp_path_factory.mktemp('models')
    hparams = HParams(n_vocab=encoder.load_encoder(vocab_dir).n_vocab, n_ctx=64, n_embd=32,
                      n_head=4, n_layer=2)
    init_model(str(directory / 'tiny'), hparams, vocab_dir, seed=1)
    return str(directory)


@pytest.fixture(scope='session')
def jokes_json(tmp_path_factory):
    real = os.environ.get('JOKES_JSON')
    if real and os.path.isfile(real):
        return real
    path = tmp_path_factory.mktemp('jokes') / 'stupidstuff.json'
    fixtures.write_stupidstuff(path)
    return str(path)


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """A small repeated corpus: the same few jokes many times."""
    path = tmp_path_factory.mktemp('corpus') / 'jokes.txt'
    jokes = ['Why did the chicken cross the road?|To get to the other side!',
             'What do you call a fish with no eyes?|A fsh.',
             'I told my wife she drew her eyebrows too high.|She looked surprised.']
    path.write_text('<|endoftext|>'.join(jokes * 40), encoding='utf-8')
    return str(path)


def train_config(tmp_path, models_dir, corpus, **overrides):
    """A TrainConfig for the tiny model, writing under tmp_path."""
    from train_config import TrainConfig
    values = dict(dataset=corpus, model_name='tiny', models_dir=models_dir, batch_size=2,
                  learning_rate=3e-3, steps=4, save_every=1000, sample_every=1000,
                  sample_length=8, seed=1, precision='float32',
                  checkpoint_dir=str(tmp_path / 'checkpoint'),
                  sample_dir=str(tmp_path / 'samples'))
    values.update(overrides)
    return TrainConfig(**values)


def variables_of(ckpt):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(ckpt)}


def run_script(script, *args, stdin=None, env=None, cwd=ROOT, check=True):
    """Run one of the project's scripts (path from the repository root) as a user would,
    with PYTHONPATH=src."""
    full_env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src'), **(env or {}))
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], input=stdin,
                            capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} {args} exited {result.returncode}:\n'
                             f'{result.stderr[-3000:]}')
    return result
