import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import run_with_fakes
from fixtures import (
    ROOT,
    logged_losses,
    numpy_gpt2,
    run_script,
    script_env,
    train_command,
    variables_of,
)
from fixtures import train_config as config
from gpt2tune import resources
from gpt2tune.errors import UserError
from gpt2tune.train import loss_plot, train_graph, training
from gpt2tune.train.optimizers import learning_rate_at
from gpt2tune.train.train_config import TrainConfig
from test_loss_plot import BLUE, ORANGE, pixels_of


def losses_of(capsys):
    out = capsys.readouterr().out
    return [float(x) for x in re.findall(r'\] loss=(\S+) ', out)], out


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


def test_early_stopping_after_n_evaluations_without_improvement(tmp_path, models_dir, corpus,
                                                                monkeypatch, capsys):
    # Validation at steps 0 (the start, which does not count), 1 (best), 2 and 3 (worse).
    losses = iter([5.0, 4.0, 4.5, 4.6, 3.0])
    monkeypatch.setattr(training.Trainer, 'validation_loss', lambda self: next(losses))
    c = config(tmp_path, models_dir, corpus, steps=10, val_every=1, early_stopping=2)
    assert training.train(c) == 3
    out = capsys.readouterr().out
    assert 'early stopping: no better validation loss in 2 evaluations (best 4.0000' in out
    assert 'interrupted' not in out
    run = tmp_path / 'checkpoint' / 'run1'
    assert json.loads((run / 'best' / 'best.json').read_text())['step'] == 1
    state = json.loads((run / 'model-3.state.json').read_text())['trainer']
    assert state['stale_evaluations'] == 2  # a resumed run goes on counting


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


def test_validation_loss_matches_independent_forward_pass(tmp_path, models_dir, corpus):
    c = config(tmp_path, models_dir, corpus, val_every=1, val_batch_count=2,
               val_batch_size=2)
    t = training.Trainer(c)
    loss = t.validation_loss()
    t.close()
    ckpt = t.model_dir.checkpoint
    weights = {name: tf.train.load_checkpoint(ckpt).get_tensor(name).astype(float)
               for name, _ in tf.train.list_variables(ckpt)}
    expected = []
    for batch in t.val_batches:
        row_losses = []
        for row in batch:
            logits = numpy_gpt2(weights, t.model_dir.hparams, row)[:-1]
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            row_losses.append(-logp[np.arange(len(row) - 1), row[1:]].mean())
        expected.append(np.mean(row_losses))
    assert loss == pytest.approx(np.mean(expected), abs=1e-4)


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
def test_home_in_path_flags_is_expanded_everywhere(tmp_path, models_dir, corpus,
                                                   monkeypatch):
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / 'tiny')
    monkeypatch.setenv('HOME', str(tmp_path))
    training.train(config(tmp_path, '~/models', corpus, steps=1, save_every=1,
                          checkpoint_dir='~/ck', sample_dir='~/samples', sample_every=1))
    assert (tmp_path / 'ck' / 'run1' / 'model-1.index').exists()
    assert (tmp_path / 'samples' / 'run1' / 'samples-1').exists()
    assert not (tmp_path / '~').exists()


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


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='/nonexistent.txt'), '/nonexistent.txt: no such file or directory'),
    (dict(sample_length=0), '--sample_length 0: must be a whole number, at least 1'),
    (dict(top_p=1.5), '--top_p 1.5: must be between 0 and 1'),
    (dict(top_k=10 ** 6), '--top_k 1000000: must be between 0'),
    (dict(model_name='nope'), 'nope: no such model directory'),
    (dict(lr_schedule='cosine', steps=0), '--lr_schedule cosine decays towards --steps'),
    (dict(optimizer='adagrad'), '--optimizer adagrad: choose adam, adafactor or sgd'),
    (dict(layers_to_train=3), '--layers_to_train 3: the model has 2 blocks'),
    (dict(layers_to_train=1, also_train='ln_f,h0/nope'), '--also_train h0/nope: the model '
                                                         'has no weight model/h0/nope'),
    (dict(also_train='wte'), '--also_train adds to --layers_to_train'),
    (dict(early_stopping=2), '--early_stopping 2 watches the validation loss'),
    (dict(max_checkpoints=-1), '--max_checkpoints -1: must be 0 or more'),
])
def test_bad_input_is_one_clear_error(tmp_path, models_dir, corpus, overrides, message):
    with pytest.raises(UserError, match=message):
        training.train(config(tmp_path, models_dir, corpus, **overrides))
    assert not (tmp_path / 'checkpoint').exists()


def test_a_containers_memory_limit_counts(tmp_path):
    limit = tmp_path / 'memory.max'
    limit.write_text('1073741824\n')
    assert resources.physical_memory(str(limit)) == 1 << 30
    limit.write_text('max\n')
    assert resources.physical_memory(str(limit)) > 1 << 30


@pytest.mark.slow
def test_memory_check_warn_goes_on(tmp_path, models_dir, corpus, monkeypatch, capsys):
    monkeypatch.setattr(resources, 'physical_memory', lambda: 1 << 20)
    assert training.train(config(tmp_path, models_dir, corpus, steps=1,
                                 memory_check='warn')) == 1
    assert 'warning: --optimizer adam: training' in capsys.readouterr().out


def test_corpus_too_short_for_the_context(tmp_path, models_dir):
    short = tmp_path / 'short.txt'
    short.write_text('just a few words', encoding='utf-8')
    with pytest.raises(UserError, match='windows of 64 need more'):
        training.train(config(tmp_path, models_dir, str(short)))
    assert not (tmp_path / 'checkpoint').exists()  # checked before the run folder is made


def test_parser_is_built_from_the_config_and_print_config_needs_no_tensorflow():
    result = subprocess.run(
        [sys.executable, '-X', 'importtime', 'train.py', '--dataset', 'x', '--optimizer',
         'adafactor', '--no-memory_saving_gradients', '--print_config'], capture_output=True,
        text=True, cwd=ROOT, check=True)
    values = json.loads(result.stdout)
    assert values == {**dataclasses.asdict(TrainConfig(dataset='x')), 'optimizer': 'adafactor',
                      'memory_saving_gradients': False}
    assert 'train_config' in result.stderr and '| tensorflow' not in result.stderr


def test_learning_rate_schedules():
    c = TrainConfig(dataset='x', learning_rate=1.0, warmup_steps=2, steps=12,
                    lr_schedule='cosine', min_lr=0.1)
    lrs = [learning_rate_at(c, s) for s in range(12)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5)
    linear = TrainConfig(dataset='x', learning_rate=1.0, steps=10, lr_schedule='linear')
    assert learning_rate_at(linear, 5) == pytest.approx(0.5)
    assert learning_rate_at(TrainConfig(dataset='x'), 99) == 0.00002


def start_held_run(tmp_path, models_dir, corpus, step):
    """train.py in tmp_path, held by the fake after `step` until a signal: returned once
    it holds, its stdout still open."""
    cmd = run_with_fakes.command(f'hold_after_step={step}', 'train.py',
                                 *train_command(models_dir, corpus)[2:])
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=script_env())
    for line in proc.stdout:
        if line.startswith(f'fake: holding after step {step} '):
            return proc
    proc.kill()
    raise AssertionError(f'train.py ended before step {step}: exit {proc.wait()}')


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path, models_dir, corpus):
    # The fake holds the run after step 3 until the signal: it comes during that step.
    proc = start_held_run(tmp_path, models_dir, corpus, 3)
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert 'interrupted' in out and '[4 | ' not in out
    assert (tmp_path / 'checkpoint' / 'run1' / 'counter').read_text() == '3\n'
    assert (tmp_path / 'checkpoint' / 'run1' / 'model-3.index').exists()


@pytest.mark.parametrize('saving, code, message', [
    (False, 130, 'SIGINT again: stopping now; training since step 7 (the newest checkpoint) '
                 'is lost'),
    (True, 0, 'SIGINT: already stopping, saving first')])
def test_a_second_signal_stops_at_once_unless_saving(saving, code, message):
    program = ('import os, signal\nfrom gpt2tune.train import stop_flag\n'
               'stop = stop_flag.StopFlag()\n'
               'stop.saved = 7\n'
               'with stop.installed():\n'
               f'    stop.saving = {saving}\n'
               '    os.kill(os.getpid(), signal.SIGINT)\n'
               '    os.kill(os.getpid(), signal.SIGINT)\n'
               'print("requested", stop.requested)\n')
    result = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                            env=script_env(), timeout=120)
    assert result.returncode == code
    assert 'SIGINT: stopping after this step and saving' in result.stdout
    assert message in result.stdout
    assert ('requested True' in result.stdout) == saving


def test_a_signal_after_another_workers_stop_or_the_final_save_is_no_second_signal():
    program = ('import os, signal\nfrom gpt2tune.train import stop_flag\n'
               'stop = stop_flag.StopFlag()\n'
               'with stop.installed():\n'
               '    stop.requested = True  # agreed with a worker that got the signal\n'
               '    os.kill(os.getpid(), signal.SIGTERM)\n'
               '    stop.finished = True  # the final save is done\n'
               '    os.kill(os.getpid(), signal.SIGTERM)\n'
               'print("exited normally")\n')
    result = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                            env=script_env(), timeout=120)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        'SIGTERM: stopping after this step and saving (send it again to stop at once)',
        'SIGTERM: the run is saved, finishing', 'exited normally']


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
