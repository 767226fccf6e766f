import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from fixtures import (
    LORA,
    graph_logits,
    numpy_gpt2,
    script_env,
    tokens_for,
    variables_of,
    write_random_model,
)
from fixtures import train_config as config
from gpt2tune.commands import lora as lora_command
from gpt2tune.errors import UserError
from gpt2tune.model import lora, model_dir
from gpt2tune.train import training
from gpt2tune.train.stop_flag import StopFlag

tf1 = tf.compat.v1
def base_weights(models_dir):
    return variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))


def test_only_the_adapters_and_also_train_change(models_dir, trained):
    run, held = trained
    base = base_weights(models_dir)
    for name, value in held.items():
        if name.startswith('model/ln_f/'):
            assert not np.array_equal(value, base[name]), name
        else:
            np.testing.assert_array_equal(value, base[name], err_msg=name)
    saved = variables_of(str(run / 'model-3'))
    adapters = {n for n in saved if lora.is_adapter(n)}
    # attn/c_attn, attn/c_proj and mlp/c_fc of 2 blocks, A and B each.
    assert len(adapters) == 12 and all(np.any(saved[n] != 0) for n in adapters)
    # The checkpoint holds no frozen weight; Adam's slots only for what trains.
    assert {n for n in saved if n in base} == {'model/ln_f/g', 'model/ln_f/b'}
    slots = {n.rsplit('/Adam', 1)[0] for n in saved if '/Adam' in n}
    assert slots == adapters | {'model/ln_f/g', 'model/ln_f/b'}
    assert (run / 'lora.json').exists() and not (run / 'model-3.data-00000-of-00001').stat(
    ).st_size > 0.5 * os.path.getsize(os.path.join(models_dir, 'tiny',
                                                   'model.ckpt.data-00000-of-00001'))


def test_zero_initialised_b_leaves_the_base_model(models_dir):
    loaded = model_dir.load('tiny', models_dir)
    adapters = lora.Adapters(4, 8.0, lora.MATRICES)
    tokens = tokens_for(loaded.hparams)
    np.testing.assert_array_equal(
        graph_logits(loaded.hparams, loaded.checkpoint, tokens, adapters),
        graph_logits(loaded.hparams, loaded.checkpoint, tokens))


def test_merged_weights_give_the_adapted_models_logits(models_dir, trained, tmp_path):
    run, _ = trained
    loaded = model_dir.load(run.name, str(run.parent))  # the run folder is a model dir
    tokens = tokens_for(loaded.hparams)
    saved = variables_of(loaded.checkpoint)
    adapters = lora.read_config(loaded.checkpoint).adapters
    assert adapters == lora.Adapters(4, 8.0, ('attn/c_attn', 'attn/c_proj', 'mlp/c_fc'))
    # The adapters in the graph over the base (with the trained ln_f)...
    base = base_weights(models_dir)
    base.update({n: a for n, a in saved.items() if n in base})
    partly = tmp_path / 'with-ln_f'
    model_dir.save_arrays(str(partly), base, loaded.hparams, loaded.path)
    adapted = graph_logits(loaded.hparams, str(partly / 'model.ckpt'), tokens, adapters,
                           saved)
    # ... equal the merged weights, in the graph, in NumPy and written by `lora.py merge`.
    np.testing.assert_allclose(graph_logits(loaded.hparams, loaded.checkpoint, tokens),
                               adapted, atol=2e-5)
    merged = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
    np.testing.assert_allclose(numpy_gpt2(merged, loaded.hparams, tokens[0]), adapted[0],
                               atol=2e-4)
    assert np.abs(adapted - graph_logits(loaded.hparams, os.path.join(
        models_dir, 'tiny', 'model.ckpt'), tokens)).max() > 0.01  # the adapters matter
    lora_command.merge_run(str(run), str(tmp_path / 'merged'))
    written = variables_of(str(tmp_path / 'merged' / 'model.ckpt'))
    assert sorted(written) == sorted(base)
    for name in written:
        np.testing.assert_array_equal(written[name], merged[name], err_msg=name)


def test_the_sampling_api_reads_a_lora_run(models_dir, trained, tmp_path):
    """A run folder, a copy of it (the base is referenced, not copied) and the model
    `lora.py merge` writes sample alike, and unlike the base with the run's trained ln_f
    (what the adapters change)."""
    from gpt2tune.generate import generation
    run, _ = trained
    shutil.copytree(run, tmp_path / 'run1')
    lora_command.merge_run(str(run), str(tmp_path / 'merged'))
    loaded = model_dir.load(run.name, str(run.parent))
    base = base_weights(models_dir)
    base.update({n: a for n, a in variables_of(loaded.checkpoint).items() if n in base})
    model_dir.save_arrays(str(tmp_path / 'unadapted'), base, loaded.hparams, loaded.path)
    texts = []
    for path in (run, tmp_path / 'run1', tmp_path / 'merged', tmp_path / 'unadapted'):
        gpt2 = generation.GPT2.load(str(path), seed=0)
        texts.append(gpt2.generate('Why', nsamples=4, length=8, stop_at_endoftext=False))
        gpt2.close()
    assert texts[0] == texts[1] == texts[2] != texts[3]


@pytest.mark.slow
def test_a_resumed_lora_run_repeats_the_uninterrupted_one(tmp_path, models_dir, corpus):
    common = dict(noise=0.1, save_every=2, optimizer='adam', learning_rate=0.01, **LORA)
    training.train(config(tmp_path / 'a', models_dir, corpus, steps=4, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=2, **common))
    training.train(config(tmp_path / 'b', models_dir, corpus, steps=4, **common))
    whole = variables_of(str(tmp_path / 'a' / 'checkpoint' / 'run1' / 'model-4'))
    resumed = variables_of(str(tmp_path / 'b' / 'checkpoint' / 'run1' / 'model-4'))
    assert sorted(whole) == sorted(resumed)
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def test_resuming_on_another_base_is_one_error(tmp_path, models_dir, corpus, vocab_dir,
                                               capsys):
    training.train(config(tmp_path, models_dir, corpus, steps=1, save_every=1, **LORA))
    capsys.readouterr()
    other = tmp_path / 'other'
    hparams = model_dir.load('tiny', models_dir).hparams
    write_random_model(other / 'tiny', hparams, vocab_dir, seed=2)
    with pytest.raises(UserError) as refused:
        training.train(config(tmp_path, str(other), corpus, steps=2, **LORA))
    message = str(refused.value)  # train.py prints it as one line, `error: ...`
    assert 'trained on the base' in message and str(other / 'tiny') in message
    assert '\n' not in message
    assert 'dataset has' not in capsys.readouterr().out  # refused before loading anything
    assert sorted(p.name for p in (tmp_path / 'checkpoint' / 'run1').glob('model-*.index')) \
        == ['model-1.index']


def test_a_run_resumes_on_its_base_moved_elsewhere(tmp_path, models_dir, corpus):
    """lora.json's path of the base is where it was; the same weights elsewhere resume."""
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'a' / 'tiny')
    training.train(config(tmp_path, str(tmp_path / 'a'), corpus, steps=1, save_every=1,
                          **LORA))
    os.rename(tmp_path / 'a', tmp_path / 'b')
    assert training.train(config(tmp_path, str(tmp_path / 'b'), corpus, steps=2,
                                 **LORA)) == 2
    assert sorted(p.name for p in (tmp_path / 'checkpoint' / 'run1').glob('model-*.index')) \
        == ['model-1.index', 'model-2.index']


@pytest.mark.parametrize('overrides, message', [
    (dict(lora_rank=4, lora_targets='attn/c_q'), '--lora_targets attn/c_q: not a matrix'),
    (dict(lora_rank=4, layers_to_train=1), '--lora_rank trains adapters in every block'),
    (dict(lora_rank=4, restore_from='elsewhere'), 'a LoRA run\'s base is its model'),
    (dict(lora_rank=-1), '--lora_rank and --lora_alpha must be above 0'),
])
def test_bad_lora_settings_are_one_clear_error(tmp_path, models_dir, corpus, overrides,
                                               message):
    with pytest.raises(UserError, match=message):
        training.train(config(tmp_path, models_dir, corpus, **overrides))
    assert not (tmp_path / 'checkpoint').exists()


@pytest.mark.slow
def test_recomputation_gives_the_same_lora_step(tmp_path, models_dir, corpus):
    common = dict(steps=1, optimizer='sgd', learning_rate=0.5, save_every=1,
                  accumulate_gradients=2, **LORA)
    for name, recompute in (('a', False), ('b', True)):
        training.train(config(tmp_path / name, models_dir, corpus, **common,
                              memory_saving_gradients=recompute))
    a, b = (variables_of(str(tmp_path / name / 'checkpoint' / 'run1' / 'model-1'))
            for name in 'ab')
    assert sorted(a) == sorted(b) and any(lora.is_adapter(n) for n in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=2e-6, err_msg=name)


@pytest.mark.slow
def test_lora_with_the_other_training_settings(tmp_path, models_dir, corpus, capsys):
    """Adafactor, a schedule, bfloat16 products, decay, clipping, validation, early
    stopping, samples: the run trains, and best/ is a LoRA model directory that loads."""
    training.train(config(tmp_path, models_dir, corpus, steps=6, optimizer='adafactor',
                          lr_schedule='cosine', warmup_steps=1, precision='bfloat16',
                          weight_decay=0.01, grad_clip=1.0, val_every=2, val_batch_count=2,
                          early_stopping=5, learning_rate=0.01, sample_every=6, **LORA))
    out = capsys.readouterr().out
    assert 'validation] loss=' in out and '======== SAMPLE 1 ========' in out
    best = tmp_path / 'checkpoint' / 'run1' / 'best'
    saved = variables_of(str(best / 'model.ckpt'))
    assert (best / 'lora.json').exists() and len([n for n in saved if lora.is_adapter(n)]) == 12
    assert set(saved) - {n for n in saved if lora.is_adapter(n)} == {'model/ln_f/g',
                                                                     'model/ln_f/b'}
    loaded = model_dir.load('best', str(best.parent))
    assert set(model_dir.load_arrays(loaded.checkpoint, loaded.hparams)) == \
        set(base_weights(models_dir))


@pytest.mark.slow
def test_two_lora_workers_equal_one_process_with_twice_the_batch(tmp_path, models_dir,
                                                                 corpus):
    from workers import command, finish, start_workers
    flags = ('--steps', '2', '--lora_rank', '4', '--learning_rate', '0.01')
    subprocess.run(command(models_dir, corpus, tmp_path / 'one', 4, *flags),
                   env=script_env(), check=True, capture_output=True)
    finish(start_workers(command(models_dir, corpus, tmp_path / 'two', 2, *flags)))
    a = variables_of(str(tmp_path / 'one' / 'run1' / 'model-2'))
    b = variables_of(str(tmp_path / 'two' / 'run1' / 'model-2'))
    assert sorted(a) == sorted(b) and any(lora.is_adapter(n) for n in a)
    for name in a:  # Adam magnifies sums in another order near zero gradients
        np.testing.assert_allclose(a[name], b[name], atol=1e-4, err_msg=name)


@pytest.mark.parametrize('recompute', [False, True])
def test_a_lora_step_computes_no_gradient_of_a_frozen_matrix(models_dir, recompute):
    """tf.recompute_grad computes the gradient of every variable its block reads: the
    frozen matrices' [nx, nf] products would come back (and double the 1558M peak)."""
    from gpt2tune.train import train_graph
    from gpt2tune.train.train_config import TrainConfig
    hparams = model_dir.load('tiny', models_dir).hparams
    n = hparams.n_embd
    weight_shapes = ([n, 3 * n], [n, n], [n, 4 * n], [4 * n, n])
    with tf.Graph().as_default() as graph:
        c = TrainConfig(dataset='x', lora_rank=4, lora_targets='attn', also_train='h1/mlp')
        g = train_graph.build_train_graph(hparams, c, recompute,
                                          adapters=lora.from_config(c))
        step = {node.name for node in tf1.graph_util.extract_sub_graph(
            graph.as_graph_def(), [g.train_op.name]).node}
        products = [op for op in graph.get_operations() if op.name in step and
                    op.type == 'MatMul' and op.outputs[0].shape.as_list() in weight_shapes]
    # The MLP of block 1 trains (--also_train): its two weight gradients, nothing else.
    assert sorted(op.outputs[0].shape.as_list() for op in products) == [[n, 4 * n],
                                                                        [4 * n, n]]


def test_a_bfloat16_lora_run_holds_its_frozen_matrices_once_in_bfloat16(models_dir):
    """The frozen matrices are bfloat16 variables read by the products as they are (no
    float32 copy, no cast), loaded from the float32 checkpoint; what trains stays float32."""
    from gpt2tune.train import train_graph
    from gpt2tune.train.train_config import TrainConfig
    loaded = model_dir.load('tiny', models_dir)
    stored = base_weights(models_dir)
    with tf.Graph().as_default() as graph:
        c = TrainConfig(dataset='x', lora_rank=4, lora_targets='attn', also_train='h1/mlp')
        train_graph.build_train_graph(loaded.hparams, c, False, tf.bfloat16,
                                      adapters=lora.from_config(c))
        with tf1.Session() as sess:
            train_graph.initialize(sess)
            model_dir.restore(sess, loaded.checkpoint)
            held = {v.op.name: (v, sess.run(v)) for v in tf1.global_variables()
                    if v.op.name.startswith('model/')}
        casts = [op for op in graph.get_operations() if op.type == 'Cast' and
                 op.inputs[0].shape.rank == 3]  # a [1, nx, nf] matrix cast per step
    in_bfloat16 = {n for n, (v, _) in held.items() if v.dtype.base_dtype == tf.bfloat16}
    assert in_bfloat16 == {n for n in stored if n.endswith('/w') and '/h1/mlp/' not in n}
    assert not casts
    for name in stored:
        expected = stored[name].astype(tf.bfloat16.as_numpy_dtype) if name in in_bfloat16 \
            else stored[name]
        np.testing.assert_array_equal(held[name][1], expected, err_msg=name)
    assert all(v.dtype.base_dtype == tf.float32 for n, (v, _) in held.items()
               if n not in in_bfloat16)  # adapters, /b, the gains, wte, the trained MLP


@pytest.mark.slow
def test_a_lora_run_on_a_bfloat16_base_loses_what_one_on_a_float32_base_does(
        tmp_path, models_dir, corpus):
    """A fine-tuned tiny model, then the same LoRA run with each precision forced: the
    held-out loss stays within 0.01 nats."""
    training.train(config(tmp_path / 'tuned', models_dir, corpus, steps=40, save_every=40,
                          learning_rate=0.01))
    tuned = tmp_path / 'tuned' / 'checkpoint'  # the run folder is a model directory
    losses = {}
    for precision in ('float32', 'bfloat16'):
        t = training.Trainer(config(tmp_path / precision, str(tuned), corpus, steps=10,
                                    model_name='run1', learning_rate=0.01, val_every=10,
                                    val_batch_count=4, precision=precision, **LORA))
        try:
            with t.graph.as_default():
                t.run(StopFlag())
                losses[precision] = t.evaluation.validation_loss()
        finally:
            t.close()
    assert abs(losses['bfloat16'] - losses['float32']) < 0.01, losses


def test_the_savedmodel_of_a_lora_run_holds_the_merged_weights(models_dir, trained, tmp_path):
    from gpt2tune.commands import export_savedmodel
    run, _ = trained
    out = tmp_path / 'savedmodel'
    export_savedmodel.main([str(run), str(out)])
    exported = tf.saved_model.load(str(out)).weights
    ckpt = model_dir.find_checkpoint(str(run))
    hparams = model_dir.load('tiny', models_dir).hparams
    merged, base = model_dir.load_arrays(ckpt, hparams), base_weights(models_dir)
    name = 'model/h1/attn/c_attn/w'
    assert not np.array_equal(merged[name], base[name])  # the run's adapters moved it
    for name in merged:
        np.testing.assert_array_equal(exported[name].numpy(), merged[name], err_msg=name)
