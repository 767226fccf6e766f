"""The SavedModel export (export/savedmodel.py): generation in the graph, loaded with
TensorFlow alone, against our API; seeded sampling; the signature's checks; what the
SavedModel carries (the command line's refusals: commands/test_export_savedmodel.py)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import fixtures
from fixtures import ROOT
from gpt2tune.commands import export_savedmodel
from gpt2tune.data import encoder
from gpt2tune.export import savedmodel
from gpt2tune.generate import generation, numpy_model, sample
from gpt2tune.model import model_dir
from gpt2tune.model.hparams import HParams

# Prompts of different lengths, right-padded to WIDTH (beyond the longest) with PAD: the
# signature must ignore whatever pads them.
PROMPTS = [[5, 17, 200, 33, 8, 91, 64], [44], [100, 101, 102, 103], [7, 7]]
WIDTH, PAD = 9, 3

# Run with `python -I` in a temporary folder: TensorFlow, and no code of the project.
LOAD_AND_GENERATE = r'''
import importlib.util, json, sys
import tensorflow as tf
sys.modules['gpt2tune'] = None  # no project code can load here, installed or not
request = json.load(sys.stdin)
generate = tf.saved_model.load(request['path']).signatures['serving_default']
specs = generate.structured_input_signature[1]
out = generate(**{name: tf.constant(value, specs[name].dtype)
                  for name, value in request['inputs'].items()})
print(json.dumps({name: value.numpy().tolist() for name, value in out.items()}))
'''


def inputs(max_new_tokens, *, prompts=PROMPTS, top_k=1, top_p=1.0, temperature=1.0, seed=0):
    ids = np.full([len(prompts), WIDTH], PAD, np.int32)
    for b, prompt in enumerate(prompts):
        ids[b, :len(prompt)] = prompt
    return {'prompt_ids': ids.tolist(), 'prompt_lengths': [len(p) for p in prompts],
            'max_new_tokens': max_new_tokens, 'temperature': temperature, 'top_k': top_k,
            'top_p': top_p, 'seed': seed}


def call(generate, request):
    """A serving signature or Generator.generate on a request of plain values."""
    out = generate(**{spec.name: tf.constant(request[spec.name], spec.dtype)
                      for spec in savedmodel.SIGNATURE})
    return {name: value.numpy() for name, value in out.items()}


def write_model(directory, vocab_dir, n_vocab, seed=2):
    """The tiny shape with fixtures.random_arrays, the token embedding spread ten times
    wider: the top two logits then lie far apart next to float32 rounding, and greedy
    ids from two implementations agree on any machine."""
    hparams = HParams(n_vocab=n_vocab, n_ctx=64, n_embd=32, n_head=4, n_layer=2)
    arrays = fixtures.random_arrays(hparams, seed)
    arrays['model/wte'] *= 10
    model_dir.save_arrays(str(directory), arrays, hparams, vocab_dir)
    return str(directory)


@pytest.fixture(scope='module')
def model(tmp_path_factory, vocab_dir):
    return write_model(tmp_path_factory.mktemp('models') / 'tiny', vocab_dir,
                       encoder.load_encoder(vocab_dir).n_vocab)


@pytest.fixture(scope='module')
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp('export') / 'tiny-savedmodel'
    export_savedmodel.main([model, str(out)])
    return str(out)


@pytest.fixture(scope='module')
def signature(exported):
    return tf.saved_model.load(exported).signatures['serving_default']


@pytest.mark.slow
def test_greedy_ids_in_a_fresh_tensorflow_process_equal_our_apis(model, exported, tmp_path):
    # The longest prompt and the new tokens fill the context exactly: n_ctx 64 positions.
    new_tokens = 64 - len(PROMPTS[0]) + 1
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [sys.executable, '-I', '-c', LOAD_AND_GENERATE], cwd=tmp_path, env=env, text=True,
        capture_output=True, timeout=300,
        input=json.dumps({'path': exported, 'inputs': inputs(new_tokens)}))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    # Our API in float32 (bfloat16 rounds differently).
    api = generation.GPT2.load(model, batch_size=len(PROMPTS), precision='float32')
    try:
        ours = api.generate(PROMPTS, length=new_tokens, top_k=1, return_tokens=True)
    finally:
        api.close()
    assert out['new_lengths'] == [len(tokens) for tokens in ours]
    assert [ids[:n] for ids, n in zip(out['new_ids'], out['new_lengths'], strict=True)] \
        == ours


def readme_example():
    with open(os.path.join(ROOT, 'docs', 'export.md'), encoding='utf-8') as f:
        readme = f.read()
    return re.search(r'<!-- savedmodel example -->\n```python\n(.*?)```', readme, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs_with_tensorflow_alone(tmp_path, vocab_dir):
    """On a model with GPT-2's 50257 token rows (the example's ids), exported where the
    example looks, exported/jokes/1."""
    model = write_model(tmp_path / 'tiny-50257', vocab_dir, 50257)
    out = tmp_path / 'exported' / 'jokes' / '1'
    out.parent.mkdir(parents=True)
    export_savedmodel.main([model, str(out)])
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([sys.executable, '-I', '-c', readme_example()], cwd=tmp_path,
                            env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    prompts = [[5195, 750, 262, 9015, 3272, 262, 2975, 30, 91], [25095, 735, 10643, 91]]
    signature = tf.saved_model.load(str(out)).signatures['serving_default']
    expected = call(signature, {**inputs(40, prompts=prompts, top_k=40), 'temperature': 0.7,
                                'seed': 1})
    assert result.stdout.splitlines() == [
        str(ids[:n].tolist()) for ids, n in zip(expected['new_ids'],
                                                expected['new_lengths'], strict=True)]


def generator(model, end_id=None):
    """A Generator of `model` in this process (its end token `end_id` if given)."""
    loaded = model_dir.load(os.path.basename(model), os.path.dirname(model))
    weights = savedmodel.variables(model_dir.load_arrays(loaded.checkpoint, loaded.hparams))
    return savedmodel.Generator(weights, loaded.hparams,
                                loaded.encoder.eot_token if end_id is None else end_id)


def test_rows_end_at_the_end_token_and_are_filled_with_it(model, signature):
    """A Generator whose end token is one the greedy samples produce mid-way: each row
    ends at its first one, and the rest of the row is that token."""
    greedy = call(signature, inputs(20))['new_ids']
    end_id = int(greedy[1, 5])
    out = call(generator(model, end_id).generate, inputs(20))
    for row, ids, n in zip(greedy, out['new_ids'], out['new_lengths'], strict=True):
        first = list(row).index(end_id) if end_id in row else 20
        assert n == first
        assert list(ids[:n]) == list(row[:n]) and set(ids[n:]) <= {end_id}


def test_blocks_of_new_keys_and_values_of_any_size_give_the_same_ids(model, signature,
                                                                     monkeypatch):
    """The cache's block (savedmodel.CHUNK) joining it every 5 steps, against the export's
    default, over 40 new tokens: the same greedy ids."""
    monkeypatch.setattr(savedmodel, 'CHUNK', 5)
    np.testing.assert_array_equal(call(generator(model).generate, inputs(40))['new_ids'],
                                  call(signature, inputs(40))['new_ids'])


def test_seeded_sampling_repeats_and_seeds_differ(signature):
    first, again, other = (call(signature, inputs(24, top_k=0, seed=seed))
                           for seed in (7, 7, 8))
    np.testing.assert_array_equal(first['new_ids'], again['new_ids'])
    assert not np.array_equal(first['new_ids'], other['new_ids'])


def test_top_k_one_and_a_tiny_nucleus_are_greedy_whatever_the_seed(signature):
    greedy = call(signature, inputs(16))['new_ids']
    for request in (inputs(16, top_k=1, temperature=3.0, seed=5),
                    inputs(16, top_k=0, top_p=1e-6, seed=6),
                    inputs(16, top_k=40, top_p=1e-6, seed=7)):
        np.testing.assert_array_equal(call(signature, request)['new_ids'], greedy)


@pytest.mark.parametrize('top_k, top_p, temperature', [(3, 1.0, 1.0), (0, 0.6, 0.7),
                                                        (20, 0.5, 1.5)])
def test_sampled_tokens_are_those_sample_choose_keeps(model, signature, top_k, top_p,
                                                      temperature):
    """The first new token of 400 rows of one prompt (one draw each): every one among the
    candidates sample._kept gives for our decoder's logits, and as frequent as their
    probabilities where there are few."""
    loaded = model_dir.load(os.path.basename(model), os.path.dirname(model))
    arrays = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
    forward = numpy_model.Forward(arrays, loaded.hparams, 'float32')
    logits = forward.prefill(numpy_model.Cache(loaded.hparams, 1, loaded.hparams.n_ctx), 0,
                             PROMPTS[0])
    row = np.asarray(logits, np.float64) / temperature
    kept, values = sample._kept(row, top_k, top_p)
    request = inputs(1, prompts=[PROMPTS[0]] * 400, top_k=top_k, top_p=top_p,
                     temperature=temperature, seed=3)
    drawn = call(signature, request)['new_ids'][:, 0]
    assert set(drawn) <= set(kept.tolist())
    if len(kept) <= 10:
        expected = np.exp(values - values.max())
        counts = np.array([np.sum(drawn == token) for token in kept])
        np.testing.assert_allclose(counts / len(drawn), expected / expected.sum(), atol=0.08)


@pytest.mark.parametrize('change, message', [
    ({'max_new_tokens': 64 - len(PROMPTS[0]) + 2},
     r'the longest prompt \+ max_new_tokens - 1 positions are more than the model '
     r'context \(n_ctx 64\)'),
    ({'prompt_lengths': [7, -1, 4, 2]}, 'prompt_lengths: each prompt needs at least one'),
    ({'prompt_lengths': [7, 1, 4, WIDTH + 1]}, 'prompt_lengths: more than the width'),
    ({'prompt_lengths': [7, 1, 4]}, 'prompt_lengths: one length for each row'),
    ({'max_new_tokens': 0}, 'max_new_tokens: must be at least 1'),
    ({'temperature': 0.0}, 'temperature: must be above 0'),
    ({'top_k': 10**6}, r'top_k: more than the vocabulary \(n_vocab'),
    ({'top_p': 1.5}, 'top_p: must be between 0 and 1'),
    ({'prompt_ids': [[10**6] * WIDTH] * 4}, 'prompt_ids: token id beyond the vocabulary'),
])
def test_bad_inputs_fail_with_a_message_naming_them(signature, change, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call(signature, {**inputs(4), **change})
    assert call(signature, inputs(4))['new_ids'].shape == (len(PROMPTS), 4)  # still works


def test_savedmodel_carries_the_vocabulary_and_hparams(exported, model):
    for name in ('encoder.json', 'vocab.bpe', 'hparams.json'):
        with open(os.path.join(exported, 'assets', name), 'rb') as copy, \
                open(os.path.join(model, name), 'rb') as original:
            assert copy.read() == original.read(), name


def test_checkpoint_flag_takes_the_weights_from_elsewhere(model, vocab_dir, tmp_path):
    other = write_model(tmp_path / 'other', vocab_dir, encoder.load_encoder(vocab_dir).n_vocab,
                        seed=3)
    out = tmp_path / 'savedmodel'
    export_savedmodel.main([model, str(out), '--checkpoint', other])
    exported = tf.saved_model.load(str(out))
    expected = fixtures.variables_of(os.path.join(other, 'model.ckpt'))
    for name in ('model/wte', 'model/h1/mlp/c_fc/w', 'model/ln_f/b'):
        np.testing.assert_array_equal(exported.weights[name].numpy(), expected[name])
