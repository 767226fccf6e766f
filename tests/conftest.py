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
