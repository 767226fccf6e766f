import numpy as np
import pytest
import tensorflow as tf

import model
import model_dir
import sample
from cli import UserError
from conftest import run_script

tf1 = tf.compat.v1
LOGITS = np.array([[1.0, 3.0, 2.0, 0.0, -1.0],
                   [0.0, 0.0, 5.0, 4.9, 1.0]], np.float32)


def run(tensor):
    with tf1.Session(graph=tensor.graph) as sess:
        return sess.run(tensor)


def kept(filtered):
    return (filtered > -1e9).astype(int).tolist()


def test_top_k_keeps_the_k_largest():
    with tf.Graph().as_default():
        out = run(sample.top_k_logits(tf.constant(LOGITS), k=2))
    assert kept(out) == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]]
    np.testing.assert_array_equal(out[0, 1:3], LOGITS[0, 1:3])


def test_top_p_keeps_the_smallest_set_reaching_p():
    # Row 0 probabilities: .665 .245 .090 .033 .012 (sorted); row 1: .52 .47 ...
    with tf.Graph().as_default():
        out = run(sample.top_p_logits(tf.constant(LOGITS), p=0.8))
    assert kept(out) == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]]
    with tf.Graph().as_default():
        out = run(sample.top_p_logits(tf.constant(LOGITS), p=0.5))
    assert kept(out) == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]


def test_top_k_1_is_argmax():
    with tf.Graph().as_default():
        tokens = run(sample.sample_logits(tf.constant(LOGITS), top_k=1, temperature=0.7))
    assert tokens.tolist() == [1, 2]


def fake_step(script):
    """A model that emits the given tokens, checking what the loop feeds it."""
    calls = []

    def step(tokens, offset):
        calls.append((tokens.tolist(), offset))
        return np.array(script[len(calls) - 1])
    return step, calls


def test_generate_feeds_prompt_then_one_token_at_a_time():
    step, calls = fake_step([[7, 8], [9, 10], [11, 12]])
    out = sample.generate(step, [[1, 2, 3], [4, 5, 6]], length=3)
    assert out == [[7, 9, 11], [8, 10, 12]]
    assert calls == [([[1, 2, 3], [4, 5, 6]], 0), ([[7], [8]], 3), ([[9], [10]], 4)]


def test_generate_stops_each_row_at_endoftext_and_ends_when_all_did():
    step, calls = fake_step([[7, 99], [99, 8], [5, 9], [6, 6]])
    out = sample.generate(step, [[1], [2]], length=4, stop_token=99)
    assert out == [[7], []]
    assert len(calls) == 2


def test_generate_without_stop_runs_full_length():
    step, _ = fake_step([[99], [5], [6]])
    assert sample.generate(step, [[1]], length=3) == [[99, 5, 6]]


@pytest.fixture(scope='module')
def tiny(models_dir):
    return model_dir.load('tiny', models_dir)


def generate_with(tiny, *, seed, top_k=0, batch_size=2, length=10):
    hparams, enc, ckpt = tiny
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        gen = sample.Generator(hparams, batch_size, top_k=top_k)
        with tf1.Session() as sess:
            model_dir.restore(sess, ckpt)
            return gen.generate(sess, [[1, 2, 3]] * batch_size, length)


def test_fixed_seed_repeats_and_another_seed_differs(tiny):
    first = generate_with(tiny, seed=5)
    assert generate_with(tiny, seed=5) == first
    assert generate_with(tiny, seed=6) != first


def test_greedy_sampling_follows_argmax_of_full_recompute(tiny):
    hparams, _, ckpt = tiny
    out = generate_with(tiny, seed=1, top_k=1, batch_size=1, length=6)[0]
    tokens = [1, 2, 3]
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [1, None])
        logits = model.model(hparams, X)['logits']
        model_dir.restore(sess, ckpt)
        for _ in range(6):
            tokens.append(int(np.argmax(sess.run(logits, {X: [tokens]})[0, -1])))
    assert out == tokens[3:]


def test_prompt_too_long_for_n_ctx_is_refused(tiny):
    hparams, _, ckpt = tiny
    with tf1.Session(graph=tf.Graph()) as sess:
        gen = sample.Generator(hparams, 1)
        with pytest.raises(UserError, match='more than the model\'s n_ctx 64'):
            gen.generate(sess, [[1] * 60], length=5)


def test_interactive_script_through_stdin(models_dir):
    result = run_script('src/interactive_conditional_samples.py', '--models_dir', models_dir,
                        '--model_name', 'tiny', '--nsamples', '2', '--length', '8',
                        '--top_k', '40', '--temperature', '0.7', '--seed', '3',
                        stdin='Why did the chicken cross the road?|\n')
    out = result.stdout
    assert out.startswith('Model prompt >>> ' + '=' * 40 + ' SAMPLE 1 ' + '=' * 40)
    assert ' SAMPLE 2 ' in out and '=' * 80 in out
    assert out.rstrip().endswith('Model prompt >>>')


def test_interactive_empty_prompt_asks_again(models_dir):
    result = run_script('src/interactive_conditional_samples.py', '--models_dir', models_dir,
                        '--model_name', 'tiny', '--length', '4', stdin='\nhi\n')
    assert 'Prompt should not be empty!' in result.stdout
    assert ' SAMPLE 1 ' in result.stdout


def test_nsamples_not_multiple_of_batch_size_is_one_clear_line(models_dir):
    result = run_script('src/interactive_conditional_samples.py', '--models_dir', models_dir,
                        '--model_name', 'tiny', '--nsamples', '3', '--batch_size', '2',
                        stdin='', check=False)
    assert result.returncode == 2
    assert 'error: nsamples 3 is not a multiple of batch_size 2' in result.stderr


def test_length_above_n_ctx_is_refused(models_dir):
    result = run_script('src/generate_unconditional_samples.py', '--models_dir', models_dir,
                        '--model_name', 'tiny', '--length', '65', '--nsamples', '1',
                        check=False)
    assert result.returncode == 2
    assert "length 65: must be between 1 and the model's n_ctx 64" in result.stderr


def test_unconditional_samples_to_a_file(models_dir, tmp_path):
    out = tmp_path / 'samples.txt'
    run_script('src/generate_unconditional_samples.py', '--models_dir', models_dir,
               '--model_name', 'tiny', '--nsamples', '4', '--batch_size', '2',
               '--length', '5', '--output_file', str(out), '--seed', '1')
    text = out.read_text(encoding='utf-8')
    assert [f' SAMPLE {i} ' in text for i in range(1, 6)] == [True] * 4 + [False]
