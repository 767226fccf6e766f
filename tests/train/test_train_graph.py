"""The graph of a training step (train/train_graph.py): gradients accumulated, averaged
and clipped, float16 loss scaling, bfloat16 products, weight decay, frozen layers,
recomputation, the loss mask and packed documents, initialisation."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fixtures import (
    logged_losses,
    numpy_gpt2,
    variables_of,
)
from fixtures import train_config as config
from gpt2tune import resources
from gpt2tune.train import train_graph, training
from gpt2tune.train.train_config import TrainConfig


@pytest.mark.slow
def test_accumulated_gradients_equal_one_bigger_batch(tmp_path, models_dir, corpus):
    common = dict(steps=1, optimizer='sgd', learning_rate=0.5, save_every=1)
    training.train(config(tmp_path / 'a', models_dir, corpus, batch_size=4, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, batch_size=1,
                          accumulate_gradients=4, **common))
    a = variables_of(str(tmp_path / 'a' / 'checkpoint' / 'run1' / 'model-1'))
    b = variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-1'))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    assert not np.allclose(a['model/wte'], before['model/wte'])
    for name in before:
        np.testing.assert_allclose(a[name], b[name], atol=2e-6, err_msg=name)


@pytest.mark.slow
def test_float16_with_loss_scaling_tracks_float32(tmp_path, models_dir, corpus):
    training.train(config(tmp_path / 'a', models_dir, corpus, steps=12))
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=12, precision='float16'))
    f32, f16 = ([v[0] for _, v in sorted(logged_losses(str(tmp_path / run / 'checkpoint' /
                                                          'run1')).items())]
                for run in ('a', 'b'))
    assert f16 != f32  # the products really ran in float16
    np.testing.assert_allclose(f16, f32, rtol=0.01)
    saved = variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-12'))
    assert saved['model/wte'].dtype == np.float32  # float32 master weights
    assert saved['loss_scale'] == train_graph.INITIAL_LOSS_SCALE  # no overflow, no growth yet


@pytest.mark.slow
def test_a_float16_sgd_step_with_loss_scaling_moves_the_weights_as_float32_does(
        tmp_path, models_dir, corpus):
    """SGD's step is the gradient itself: a gradient left multiplied by the loss scale
    (or divided by it twice) moves the weights thousands of times too far (or too
    little), which Adam, blind to the gradients' scale, would hide."""
    common = dict(steps=1, save_every=1, optimizer='sgd', learning_rate=0.5)
    training.train(config(tmp_path / 'a', models_dir, corpus, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, precision='float16', **common))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    f32, f16 = (variables_of(str(tmp_path / run / 'checkpoint' / 'run1' / 'model-1'))
                for run in ('a', 'b'))
    assert f16['loss_scale'] == train_graph.INITIAL_LOSS_SCALE  # the step was not skipped
    for name in before:
        step32, step16 = f32[name] - before[name], f16[name] - before[name]
        assert np.linalg.norm(step32) > 0, name
        # float16 products: about three significant digits in each gradient.
        assert np.linalg.norm(step16 - step32) <= 0.01 * np.linalg.norm(step32), name


def test_a_float16_overflow_skips_the_step_and_halves_the_scale(tmp_path, models_dir, corpus,
                                                                monkeypatch, capsys):
    # 10 nats times 2^126 overflows float32 itself; 2^125 and 2^124 overflow float16's
    # products in the backward pass. So three steps are skipped, each halving the scale.
    monkeypatch.setattr(train_graph, 'INITIAL_LOSS_SCALE', 2.0 ** 126)
    training.train(config(tmp_path, models_dir, corpus, steps=3, save_every=3,
                          precision='float16'))
    out = capsys.readouterr().out
    for step, scale in ((1, 126), (2, 125), (3, 124)):
        assert (f'step {step}: gradients overflowed float16 at loss scale {2.0 ** scale:g}; '
                f'step skipped, scale now {2.0 ** (scale - 1):g}') in out
    saved = variables_of(str(tmp_path / 'checkpoint' / 'run1' / 'model-3'))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    for name in before:
        np.testing.assert_array_equal(saved[name], before[name], err_msg=name)
    assert saved['loss_scale'] == 2.0 ** 123 and saved['global_step'] == 3


def test_loss_scale_grows_after_a_run_of_finite_steps(tmp_path, models_dir, corpus,
                                                      monkeypatch):
    monkeypatch.setattr(train_graph, 'LOSS_SCALE_GROWTH_STEPS', 2)
    training.train(config(tmp_path, models_dir, corpus, steps=5, save_every=5,
                          precision='float16'))
    saved = variables_of(str(tmp_path / 'checkpoint' / 'run1' / 'model-5'))
    assert saved['loss_scale'] == train_graph.INITIAL_LOSS_SCALE * 4  # doubled at 2 and 4
    assert saved['loss_scale_good_steps'] == 1


@pytest.mark.slow
def test_bfloat16_products_track_float32(tmp_path, models_dir, corpus, capsys):
    training.train(config(tmp_path / 'a', models_dir, corpus, steps=12))
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=12, precision='bfloat16'))
    assert 'precision: bfloat16 matrix products, float32 weights (as asked)' in \
        capsys.readouterr().out
    f32, bf16 = ([v[0] for _, v in sorted(logged_losses(str(tmp_path / run / 'checkpoint' /
                                                           'run1')).items())]
                 for run in ('a', 'b'))
    assert bf16 != f32  # the products really ran in bfloat16
    np.testing.assert_allclose(bf16, f32, rtol=0.02)
    assert variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-12'))[
        'model/wte'].dtype == np.float32


@pytest.mark.slow
def test_weight_decay_shrinks_matrices_not_biases_or_norms(tmp_path, models_dir, corpus):
    common = dict(steps=1, save_every=1, learning_rate=0.01)
    training.train(config(tmp_path / 'a', models_dir, corpus, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, weight_decay=0.5, **common))
    a = variables_of(str(tmp_path / 'a' / 'checkpoint' / 'run1' / 'model-1'))
    b = variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-1'))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    for name in before:
        if name.endswith(('/b', '/g')):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:  # decoupled decay: w - lr * wd * w on top of the same Adam step
            np.testing.assert_allclose(b[name], a[name] - 0.01 * 0.5 * before[name],
                                       atol=1e-6, err_msg=name)


def test_layers_to_train_leaves_the_others_bit_equal(tmp_path, models_dir, corpus):
    training.train(config(tmp_path, models_dir, corpus, steps=2, save_every=2,
                          layers_to_train=1, also_train='ln_f', weight_decay=0.1))
    after = variables_of(str(tmp_path / 'checkpoint' / 'run1' / 'model-2'))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    trained = {n for n in before if n.startswith(('model/h1/', 'model/ln_f/'))}
    for name in before:
        if name in trained:
            assert not np.array_equal(after[name], before[name]), name
        else:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    # Optimizer state only for what trains; the checkpoint keeps every release weight.
    slots = {n.rsplit('/Adam', 1)[0] for n in after if '/Adam' in n}
    assert slots == trained


def test_weight_decay_waits_for_the_forward_pass(models_dir):
    """Every decay write depends on the cross-entropy of the forward pass, which reads
    every weight: so no decay can run before the forward pass has read its weight."""
    from gpt2tune.model import model_dir
    hparams = model_dir.load('tiny', models_dir).hparams
    c = TrainConfig(dataset='x', weight_decay=0.1)
    with tf.Graph().as_default():
        train_graph.build_train_graph(hparams, c, recompute=False, adapters=None)
        ops = tf.compat.v1.get_default_graph().get_operations()
        forward_end = next(op.name for op in ops
                           if op.type == 'SparseSoftmaxCrossEntropyWithLogits')
        decays = [op for op in ops if op.type == 'AssignSubVariableOp']
        assert len(decays) == len([v for v in tf.compat.v1.trainable_variables()
                                   if v.shape.rank >= 2])
        for op in decays:
            seen, todo = set(), [op]
            while todo:
                current = todo.pop()
                for parent in [t.op for t in current.inputs] + list(current.control_inputs):
                    if parent.name not in seen:
                        seen.add(parent.name)
                        todo.append(parent)
            assert forward_end in seen, op.name


def test_gpus_get_the_fastest_precision_they_have():
    assert resources.gpu_precision((8, 6)) == tf.bfloat16  # Ampere and later
    assert resources.gpu_precision((7, 5)) == tf.float16  # T4, RTX 20xx
    assert resources.gpu_precision((7, 0)) == tf.float16  # V100
    assert resources.gpu_precision((6, 1)) == tf.float32


def test_a_float32_run_resumes_in_float16_with_a_fresh_loss_scale(tmp_path, models_dir, corpus,
                                                                    capsys):
    training.train(config(tmp_path, models_dir, corpus, steps=2, save_every=2))
    training.train(config(tmp_path, models_dir, corpus, steps=3, precision='float16'))
    out = capsys.readouterr().out
    assert 'has no loss_scale, loss_scale_good_steps: starting those afresh' in out
    assert '[3 | ' in out


def test_a_seeded_gpu_run_asks_for_op_determinism(monkeypatch):
    monkeypatch.setattr(resources, 'gpus', lambda: [])
    assert not resources.needs_op_determinism(1)  # CPU kernels repeat without it
    monkeypatch.setattr(resources, 'gpus', lambda: ['GPU:0'])
    assert resources.needs_op_determinism(1)
    assert not resources.needs_op_determinism(None)


@pytest.mark.slow
def test_gradient_clipping_bounds_the_step(tmp_path, models_dir, corpus):
    training.train(config(tmp_path, models_dir, corpus, steps=1, save_every=1,
                          optimizer='sgd', learning_rate=1.0, grad_clip=1e-3))
    after = variables_of(str(tmp_path / 'checkpoint' / 'run1' / 'model-1'))
    before = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    change = np.sqrt(sum(np.sum((after[n] - before[n]) ** 2) for n in before))
    assert 0 < change <= 1e-3 * 1.001


@pytest.mark.slow
def test_memory_saving_gradients_give_the_same_step(tmp_path, models_dir, corpus,
                                                   monkeypatch):
    graphs = []
    build = train_graph.build_train_graph

    def build_and_keep(*args, **kwargs):
        built = build(*args, **kwargs)
        graphs.append(tf.compat.v1.get_default_graph())
        return built
    monkeypatch.setattr(train_graph, 'build_train_graph', build_and_keep)
    common = dict(steps=1, optimizer='sgd', learning_rate=0.5, save_every=1,
                  accumulate_gradients=2)
    training.train(config(tmp_path / 'a', models_dir, corpus, **common,
                          memory_saving_gradients=False))
    training.train(config(tmp_path / 'b', models_dir, corpus, **common,
                          memory_saving_gradients=True))
    a = variables_of(str(tmp_path / 'a' / 'checkpoint' / 'run1' / 'model-1'))
    b = variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-1'))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=2e-6, err_msg=name)
    # The second graph runs each block's forward pass again in the backward pass: one
    # attention softmax per block among the gradients.
    recomputed = [sorted(op.name.split('/')[-3] for op in graph.get_operations()
                         if op.type == 'Softmax' and op.name.startswith('gradients/'))
                  for graph in graphs]
    assert recomputed == [[], ['h0', 'h1']]


def test_loss_counts_only_the_targets_the_mask_keeps(models_dir):
    """Packing's loss: an independent forward pass, averaged over the targets whose
    loss_mask is 1; what stands in the padding after them changes nothing."""
    from gpt2tune.model import model_dir
    loaded = model_dir.load('tiny', models_dir)
    hparams = loaded.hparams
    rs = np.random.RandomState(4)
    tokens = rs.randint(0, hparams.n_vocab, size=[2, 16]).astype(np.int32)
    mask = np.zeros([2, 16], np.float32)
    mask[0, :10], mask[1, :6] = 1, 1
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        context = tf.compat.v1.placeholder(tf.int32, [None, None])
        loss_mask = tf.compat.v1.placeholder(tf.float32, [None, None])
        loss = train_graph.masked_loss(hparams, context, context, loss_mask, False,
                                       tf.float32)
        model_dir.restore(sess, loaded.checkpoint)
        ours = sess.run(loss, {context: tokens, loss_mask: mask})
        padding = np.where(mask == 1, tokens, rs.randint(0, hparams.n_vocab, size=[2, 16]))
        assert sess.run(loss, {context: padding, loss_mask: mask}) == pytest.approx(ours)
    weights = {k: v.astype(float) for k, v in variables_of(loaded.checkpoint).items()}
    kept = []
    for row, row_mask in zip(tokens, mask, strict=True):
        logits = numpy_gpt2(weights, hparams, row)[:-1]
        logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        losses = -logp[np.arange(15), row[1:]]
        kept += losses[row_mask[1:] == 1].tolist()
    assert len(kept) == 9 + 5
    assert ours == pytest.approx(np.mean(kept), abs=1e-4)


def test_a_packed_step_learns_only_from_the_documents(tmp_path, models_dir, corpus):
    """A --pack step's loss: an independent forward pass over the windows it drew, counting
    the targets inside whole documents, not the padding after them."""
    t = training.Trainer(config(tmp_path, models_dir, corpus, pack=True))
    drawn = []
    batch = t.sampler.batch
    t.sampler.batch = lambda *args: drawn.append(batch(*args)) or drawn[-1]
    try:
        loss = t.train_step(False).loss
    finally:
        t.close()
    (tokens, mask), = drawn
    assert 0 < mask.sum() < mask.size  # whole documents, then padding
    weights = {k: v.astype(float) for k, v in variables_of(t.model_dir.checkpoint).items()}
    kept = []
    for row, row_mask in zip(tokens, mask, strict=True):
        logits = numpy_gpt2(weights, t.model_dir.hparams, row)[:-1]
        logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        kept += (-logp[np.arange(len(row) - 1), row[1:]])[row_mask[1:] == 1].tolist()
    assert loss == pytest.approx(np.mean(kept), abs=1e-4)


def test_initialize_feeds_zeros_and_runs_the_other_initializers():
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        zeros = tf.compat.v1.Variable(tf.zeros([300, 200]), name='moment')
        ones = tf.compat.v1.Variable(tf.ones([3]), name='ones')
        scale = tf.compat.v1.Variable(2.0 ** 15, name='scale')
        feeds = []
        real_run = sess.run
        sess.run = lambda fetches, feed_dict=None: (feeds.append(feed_dict),
                                                    real_run(fetches, feed_dict))[1]
        train_graph.initialize(sess)
        sess.run = real_run
        assert list(feeds[0]) == [zeros.initial_value]  # fed, not computed in the graph
        np.testing.assert_array_equal(sess.run(zeros), np.zeros([300, 200], np.float32))
        np.testing.assert_array_equal(sess.run(ones), np.ones(3, np.float32))
        assert sess.run(scale) == 2.0 ** 15
