import os

import numpy as np
import pytest
import tensorflow as tf

from fixtures import numpy_gpt2
from gpt2tune.errors import UserError
from gpt2tune.model import model, model_dir
from gpt2tune.model.hparams import HParams, variable_shapes

tf1 = tf.compat.v1


def load_weights(ckpt):
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name).astype(np.float64)
            for name, _ in tf.train.list_variables(ckpt)}


@pytest.fixture(scope='module')
def tiny(models_dir):
    loaded = model_dir.load('tiny', models_dir)
    return loaded.hparams, loaded.checkpoint


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
    weights = load_weights(ckpt)
    for row in range(2):
        np.testing.assert_allclose(ours[row], numpy_gpt2(weights, hparams, tokens[row]),
                                   atol=1e-5, rtol=0)


def test_the_tiny_model_has_random_biases_and_gains_and_a_varied_greedy_continuation(tiny):
    """What makes the parity tests able to see a bias or layer-norm mistake: no bias is
    zero, no gain is one; and greedy decoding does not repeat one token, so that a
    decoder's wrong position or cache shows in the tokens it picks."""
    hparams, ckpt = tiny
    weights = load_weights(ckpt)
    for name, value in weights.items():
        if name.endswith('/b'):
            assert np.all(value != 0), name
        if name.endswith('/g'):
            assert np.all(value != 1) and value.std() > 0.1, name
    tokens = [0]
    for _ in range(20):
        tokens.append(int(numpy_gpt2(weights, hparams, tokens)[-1].argmax()))
    assert len(set(tokens[1:])) >= 5, tokens


def test_init_random_is_gpt2s_initialisation(tmp_path, tiny, vocab_dir):
    """init_model.py's weights: zero biases, unit gains, zero layer-norm biases."""
    hparams, _ = tiny
    model_dir.init_random(str(tmp_path / 'm'), hparams, vocab_dir, seed=1)
    weights = load_weights(model_dir.find_checkpoint(str(tmp_path / 'm')))
    assert sorted(weights) == sorted(variable_shapes(hparams))
    for name, value in weights.items():
        if name.endswith(('/b', '/g')):
            assert np.all(value == (name.endswith('/g'))), name
        else:
            assert 0 < value.std() < 0.05, name


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


def test_vocabulary_without_endoftext_is_one_clear_error(tmp_path, models_dir):
    import json
    import shutil
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'm')
    vocab = json.loads((tmp_path / 'm' / 'encoder.json').read_text(encoding='utf-8'))
    del vocab['<|endoftext|>']
    (tmp_path / 'm' / 'encoder.json').write_text(json.dumps(vocab), encoding='utf-8')
    with pytest.raises(UserError, match='encoder.json: has no <\\|endoftext\\|> token'):
        model_dir.load('m', str(tmp_path))


def test_user_paths_expand_home_and_variables(tmp_path, models_dir, monkeypatch):
    import shutil
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / 'tiny')
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('MODELS', str(tmp_path / 'models'))
    for written in ('~/models', '$MODELS'):
        assert model_dir.load('tiny', written).path == str(tmp_path / 'models' / 'tiny')


def test_saved_checkpoint_is_exactly_the_release_contract(tiny):
    hparams, ckpt = tiny
    stored = dict(tf.train.list_variables(ckpt))
    assert stored == variable_shapes(hparams)
    assert 'model/h1/attn/c_attn/w' in stored
    assert stored['model/h0/mlp/c_fc/w'] == [1, hparams.n_embd, 4 * hparams.n_embd]


def test_124m_shape_matches_released_data_file_size():
    shapes = variable_shapes(HParams())
    assert 4 * sum(int(np.prod(s)) for s in shapes.values()) == 497_759_232


def test_state_file_paths_are_relative(tiny, models_dir):
    with open(f'{models_dir}/tiny/checkpoint', encoding='utf-8') as f:
        assert f.read().splitlines()[0] == 'model_checkpoint_path: "model.ckpt"'


def test_hparams_that_do_not_match_checkpoint_name_variable_and_shapes(tmp_path, tiny,
                                                                         models_dir):
    hparams, _ = tiny
    wrong = HParams(n_vocab=hparams.n_vocab, n_ctx=32, n_embd=hparams.n_embd,
                          n_head=hparams.n_head, n_layer=hparams.n_layer)
    with pytest.raises(UserError, match=r'model/wpe has shape \[64, 32\] but hparams.json '
                                        r'implies \[32, 32\]'):
        model_dir.check_checkpoint(f'{models_dir}/tiny/model.ckpt', wrong)


def test_missing_model_directory_says_how_to_download(tmp_path):
    with pytest.raises(UserError, match='download_model.sh 117M'):
        model_dir.load('117M', str(tmp_path))


def test_missing_files_are_named(tmp_path):
    (tmp_path / 'm').mkdir()
    (tmp_path / 'm' / 'hparams.json').write_text('{}')
    with pytest.raises(UserError, match='missing encoder.json, vocab.bpe'):
        model_dir.load('m', str(tmp_path))


def test_bad_hparams_are_refused(tmp_path):
    path = tmp_path / 'hparams.json'
    path.write_text('{"n_vocab": 10, "n_ctx": 8, "n_embd": 6, "n_head": 4, "n_layer": 1}')
    with pytest.raises(UserError, match='n_embd 6 is not a multiple of n_head 4'):
        HParams.from_json(str(path))
