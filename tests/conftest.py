"""Shared fixtures, for the tests in every folder below (the helpers they use are in
support/fixtures.py): the GPT-2 vocabulary (real when GPT2_VOCAB_DIR is set, else a small
one trained here), tiny random models in the release layout, joke files, a LoRA run,
the tiny model exported for transformers, the server (support/fixtures.py's Server)."""

import os

import pytest

import fixtures
from fixtures import KEY, Server


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
    """A models folder holding `tiny`: 2 layers, 32 wide, n_ctx 64, random weights, biases
    and layer-norm gains and biases (fixtures.random_arrays)."""
    from gpt2tune.data import encoder
    from gpt2tune.model.hparams import HParams

    directory = tmp_path_factory.mktemp('models')
    hparams = HParams(n_vocab=encoder.load_encoder(vocab_dir).n_vocab, n_ctx=64, n_embd=32,
                      n_head=4, n_layer=2)
    fixtures.write_random_model(directory / 'tiny', hparams, vocab_dir, seed=1)
    return str(directory)


@pytest.fixture(scope='session')
def tiny(models_dir):
    """(hparams, checkpoint path) of the tiny model."""
    from gpt2tune.model import model_dir
    loaded = model_dir.load('tiny', models_dir)
    return loaded.hparams, loaded.checkpoint


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


@pytest.fixture(scope='module')
def trained(tmp_path_factory, models_dir, corpus):
    """A LoRA run of 3 steps (fixtures.LORA), its adapters and the base weights held by its
    session at the end (read before it closed)."""
    from gpt2tune.model import model_dir
    from gpt2tune.train import training
    from gpt2tune.train.stop_flag import StopFlag

    tmp = tmp_path_factory.mktemp('lora')
    t = training.Trainer(fixtures.train_config(tmp, models_dir, corpus, steps=3, save_every=3,
                                               learning_rate=0.01, **fixtures.LORA))
    try:
        with t.graph.as_default():
            t.run(StopFlag())
            held = t.sess.run({v.op.name: v for v in model_dir.model_variables()})
    finally:
        t.close()
    return tmp / 'checkpoint' / 'run1', held


@pytest.fixture
def two_checkpoints(tmp_path, models_dir, corpus):
    """A run with complete checkpoints at steps 2 and 4."""
    from gpt2tune.train import training

    training.train(fixtures.train_config(tmp_path, models_dir, corpus, steps=4, save_every=2))
    return fixtures.run_dir(tmp_path)


@pytest.fixture(scope='module')
def exported(models_dir, tmp_path_factory):
    from gpt2tune.commands import huggingface as huggingface_command

    out = tmp_path_factory.mktemp('hf') / 'tiny-hf'
    huggingface_command.export(os.path.join(models_dir, 'tiny'), str(out))
    return out


@pytest.fixture(scope='module')
def server(models_dir):
    s = Server(models_dir, '--api_key', KEY, '--max_batch', '8')
    yield s
    s.stop()


@pytest.fixture
def slow_server(models_dir, tmp_path):
    """A server whose engine pauses after its second step until `release` exists. A test
    waits for the pause, not for a first chunk: a token's text may be held back for more
    than two steps (the rest of a character)."""
    s = Server(models_dir, fakes=[f'serve_pause=2:{tmp_path / "release"}'])
    s.release = tmp_path / 'release'
    yield s
    s.stop()
