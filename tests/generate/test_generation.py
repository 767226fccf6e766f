"""Text from the tiny model through the Python API (generate/generation.py): batches,
seeds, streams, the sliding window, clear errors, a quiet start, the docs' example, a
training run's folder (the sampling scripts: tests/commands/)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from fixtures import ROOT, script_env
from gpt2tune import cli
from gpt2tune.errors import UserError
from gpt2tune.generate import generation

PROMPTS = ['Why did the chicken cross the road?|', 'Knock knock|',
           'A man walks into a bar and orders a drink from the bartender|']


@pytest.fixture(scope='module')
def gpt2(models_dir):
    g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=3, seed=1)
    yield g
    g.close()


def test_different_prompts_in_one_batch_equal_each_prompt_alone(models_dir, gpt2):
    together = gpt2.generate(PROMPTS, length=12, top_k=1, return_tokens=True)
    alone = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=1, seed=1)
    try:
        assert together == [alone.generate(p, length=12, top_k=1, return_tokens=True)[0]
                            for p in PROMPTS]
    finally:
        alone.close()
    assert all(len(t) == 12 for t in together)  # random weights rarely pick <|endoftext|>


@pytest.mark.parametrize('precision', ['float32', 'bfloat16', 'int8'])
def test_the_same_seed_gives_the_same_samples_at_any_batch_size(models_dir, precision):
    """Three prompts, three samples each, past the context (the window slides), in two
    calls: the same tokens whether rows decode one, three or eight at a time."""
    samples = {}
    for batch_size in (1, 3, 8):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=batch_size,
                                 seed=7, precision=precision)
        try:
            samples[batch_size] = [g.generate(PROMPTS, nsamples=3, length=70, top_k=40,
                                              return_tokens=True, stop_at_endoftext=False)
                                   for _ in range(2)]
        finally:
            g.close()
    assert samples[1] == samples[3] == samples[8]
    assert samples[1][0] != samples[1][1]  # the second call's rows are new ones


def test_streams_of_a_seeded_model_are_its_rows_in_turn(models_dir):
    """Two streams of one seeded model give the two samples one generate call gives."""
    path = os.path.join(models_dir, 'tiny')
    streamed = generation.GPT2.load(path, seed=4)
    together = generation.GPT2.load(path, seed=4, batch_size=2)
    try:
        texts = [''.join(streamed.stream(PROMPTS[1], length=15, top_k=40)) for _ in range(2)]
        assert texts == together.generate(PROMPTS[1], nsamples=2, length=15, top_k=40)
        assert texts[0] != texts[1]
    finally:
        streamed.close()
        together.close()


def test_nsamples_per_prompt_in_prompt_order(gpt2):
    texts = gpt2.generate(PROMPTS[:2], nsamples=2, length=5, include_prefix=True)
    assert [t.startswith(p) for t, p in zip(texts, [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2,
                                            strict=True)] == [True] * 4


@pytest.mark.slow
def test_seeded_model_repeats_and_unseeded_calls_differ(models_dir):
    def texts(seed):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=seed)
        try:
            return g.generate(PROMPTS[0], nsamples=2, length=8, return_tokens=True)
        finally:
            g.close()
    assert texts(5) == texts(5)
    assert texts(5) != texts(6)
    # Unseeded models draw from fresh entropy: 16 tokens sampled alike twice would take
    # a model far more certain than this random one.
    assert texts(None) != texts(None)


def test_sliding_window_generates_past_the_context(gpt2):
    n_ctx = gpt2.hparams.n_ctx
    long = gpt2.generate(PROMPTS[0], length=n_ctx + 40, top_k=1, return_tokens=True,
                         stop_at_endoftext=False)[0]
    short = gpt2.generate(PROMPTS[0], length=20, top_k=1, return_tokens=True,
                          stop_at_endoftext=False)[0]
    assert len(long) == n_ctx + 40 and long[:20] == short


@pytest.mark.parametrize('stop', [(), ('a stop text no sample reaches',)])
def test_stream_pieces_add_up_to_the_sample(gpt2, stop):
    """Also when the sample runs its full length: the stream holds back the end of the
    text that could begin a stop text, or a cut UTF-8 character, until the end."""
    pieces = list(gpt2.stream(PROMPTS[1], length=10, top_k=1, stop=stop))
    assert ''.join(pieces) == gpt2.generate(PROMPTS[1], length=10, top_k=1, stop=stop)[0]


def test_min_p_one_keeps_only_the_top_token_as_top_k_one_does(gpt2):
    greedy = gpt2.generate(PROMPTS[1], length=10, top_k=1, return_tokens=True)
    assert gpt2.generate(PROMPTS[1], length=10, min_p=1.0, return_tokens=True) == greedy


def test_unknown_option_and_long_prompt_are_clear_errors(gpt2):
    with pytest.raises(UserError, match='unexpected keyword'):
        gpt2.generate('x', top_z=3)
    with pytest.raises(UserError, match='more than the model\'s context of 64'):
        gpt2.generate('word ' * 100)


USER_PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
logging.getLogger('mine').info('before')
from gpt2tune.generate.generation import GPT2
gpt2 = GPT2.load(sys.argv[1], seed=1)
print(len(gpt2.generate('Hi|', length=3)))
logging.getLogger('mine').info('after')
gpt2.close()
"""


@pytest.mark.slow
def test_the_api_is_quiet_in_a_users_program_and_leaves_its_logging_alone(models_dir):
    # As in a user's shell (this process's quiet start set both when it imported generation).
    env = {k: v for k, v in script_env().items()
           if k not in ('TF_CPP_MIN_LOG_LEVEL', cli.QUIET_MARK)}
    result = subprocess.run([sys.executable, '-c', USER_PROGRAM,
                             os.path.join(models_dir, 'tiny')],
                            capture_output=True, text=True, env=env, timeout=300)
    assert (result.returncode, result.stdout) == (0, '1\n'), result.stderr[-2000:]
    assert result.stderr == 'mine: before\nmine: after\n'


def readme_example():
    with open(os.path.join(ROOT, 'docs', 'generating.md'), encoding='utf-8') as f:
        readme = f.read()
    return re.search(r'<!-- api example -->\n```python\n(.*?)```', readme, re.S).group(1)


def test_the_docs_api_example_runs(models_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / '117M')
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), 'docs/generating.md', 'exec'), {})
    printed = capsys.readouterr().out
    # The same calls on the same seed: six jokes cut at their first newline, one a line,
    # then the streamed text.
    g = generation.GPT2.load('models/117M', seed=1)
    try:
        jokes = g.generate(['Why did the chicken cross the road?|', 'Knock knock|'],
                           nsamples=3, length=40, top_k=40, temperature=0.7, stop=['\n'])
        g.generate('A man walks into a bar|', length=20, return_tokens=True)
        streamed = ''.join(g.stream('My dog|', length=30))
    finally:
        g.close()
    assert len(jokes) == 6 and not any('\n' in joke for joke in jokes)
    assert printed == ''.join(joke + '\n' for joke in jokes) + streamed


@pytest.mark.slow
def test_api_loads_a_training_run_folder(tmp_path, models_dir, corpus):
    from fixtures import train_config
    from gpt2tune.train import training
    training.train(train_config(tmp_path, models_dir, corpus, steps=2, save_every=2))
    g = generation.GPT2.load(str(tmp_path / 'checkpoint' / 'run1'))
    try:
        assert g.model.checkpoint.endswith('model-2')
        assert len(g.generate('hi', length=3, return_tokens=True,
                              stop_at_endoftext=False)[0]) == 3
    finally:
        g.close()
