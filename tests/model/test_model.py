"""GPT-2 in TensorFlow (model/model.py) on the tiny model: its logits against an
independent forward pass, the attention's and GELU's gradients, recomputation's memory."""


import numpy as np
import pytest
import tensorflow as tf

from fixtures import numpy_gpt2, variables_of
from gpt2tune.model import model, model_dir
from gpt2tune.model.hparams import HParams

tf1 = tf.compat.v1


def model_logits(hparams, ckpt, tokens):
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [None, None])
        logits = model.model(hparams, X)['logits']
        model_dir.restore(sess, ckpt)
        return sess.run(logits, {X: tokens})


def test_logits_match_numpy_forward_pass(tiny):
    hparams, ckpt = tiny
    tokens = np.random.RandomState(0).randint(0, hparams.n_vocab, size=[2, 20])
    ours = model_logits(hparams, ckpt, tokens)
    weights = variables_of(ckpt, np.float64)
    for row in range(2):
        np.testing.assert_allclose(ours[row], numpy_gpt2(weights, hparams, tokens[row]),
                                   atol=1e-5, rtol=0)


def test_the_tiny_model_has_random_biases_and_gains_and_a_varied_greedy_continuation(tiny):
    """What makes the parity tests able to see a bias or layer-norm mistake: no bias is
    zero, no gain is one; and greedy decoding does not repeat one token, so that a
    decoder's wrong position or cache shows in the tokens it picks."""
    hparams, ckpt = tiny
    weights = variables_of(ckpt, np.float64)
    for name, value in weights.items():
        if name.endswith('/b'):
            assert np.all(value != 0), name
        if name.endswith('/g'):
            assert np.all(value != 1) and value.std() > 0.1, name
    tokens = [0]
    for _ in range(20):
        tokens.append(int(numpy_gpt2(weights, hparams, tokens)[-1].argmax()))
    assert len(set(tokens[1:])) >= 5, tokens


def autodiff_attention(q, k, v):
    """Causal attention as plain TensorFlow ops, differentiated automatically."""
    n = q.shape[2]
    w = tf.matmul(q, k, transpose_b=True) / np.sqrt(q.shape[-1])
    w = w - 1e10 * (1 - np.tril(np.ones([n, n], np.float32)))
    return tf.matmul(tf.nn.softmax(w), v)


@pytest.mark.parametrize('dtype, tolerance', [(tf.float32, 1e-5), (tf.bfloat16, 5e-2)])
def test_attention_gradient_equals_automatic_differentiation(dtype, tolerance):
    rs = np.random.RandomState(0)
    with tf.Graph().as_default(), tf1.Session() as sess:
        q, k, v, da = (tf.constant(rs.normal(size=[2, 3, 6, 4]).astype(np.float32))
                       for _ in range(4))
        ours = model.attend(q, k, v, offset=0, dtype=dtype)
        reference = autodiff_attention(q, k, v)
        (ours, *ours_grads), (reference, *reference_grads) = sess.run([
            [ours, *tf.gradients(ours, [q, k, v], da)],
            [reference, *tf.gradients(reference, [q, k, v], da)]])
    for got, want in zip([ours, *ours_grads], [reference, *reference_grads], strict=True):
        np.testing.assert_allclose(got, want, atol=tolerance, rtol=tolerance)


def peak_bytes_of_a_step(hparams, recompute, dtype):
    """The most bytes TensorFlow's allocator held at once during one training step of a
    model with random weights (its allocation records: no timing involved)."""
    from gpt2tune.train import train_graph
    from gpt2tune.train.train_config import TrainConfig
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        g = train_graph.build_train_graph(hparams, TrainConfig(dataset='x', batch_size=1),
                                          recompute, dtype, adapters=None)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            feed = {g.context: np.zeros([1, hparams.n_ctx], np.int32), g.lr: 1e-4}
            sess.run(g.train_op, feed)
            options = tf.compat.v1.RunOptions(
                trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            metadata = tf.compat.v1.RunMetadata()
            sess.run(g.train_op, feed, options=options, run_metadata=metadata)
    records = sorted((r.alloc_micros, r.alloc_bytes)
                     for device in metadata.step_stats.dev_stats
                     for node in device.node_stats for memory in node.memory
                     for r in memory.allocation_records)
    return max(np.cumsum([size for _, size in records]))


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
def test_recomputation_holds_one_blocks_activations_not_every_blocks(dtype):
    """Each block is recomputed when its gradient comes, not at the step's start (where
    tf.recompute_grad's recomputation ran once Grappler had folded its dependency away)."""
    hparams = HParams(n_vocab=64, n_ctx=256, n_embd=32, n_head=4, n_layer=8)
    kept = peak_bytes_of_a_step(hparams, False, dtype)
    recomputed = peak_bytes_of_a_step(hparams, True, dtype)
    assert recomputed < kept / 3, (recomputed, kept)


def test_gelu_gradient_equals_automatic_differentiation():
    with tf.Graph().as_default(), tf1.Session() as sess:
        x = tf.constant(np.linspace(-6, 6, 1001, dtype=np.float32))
        formula = 0.5 * x * (1 + tf.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
        ours, want = sess.run([tf.gradients(model.gelu(x), x), tf.gradients(formula, x)])
        np.testing.assert_allclose(sess.run(model.gelu(x)), sess.run(formula), atol=1e-6)
    np.testing.assert_allclose(ours[0], want[0], atol=1e-6)
