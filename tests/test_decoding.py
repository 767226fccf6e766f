"""The CPU decoder's kernels, and the slot decoder of continuous batching against an
independent forward pass (fixtures.numpy_gpt2): rows joining, leaving and sliding at
different steps each get the logits of their own tokens alone."""

import numpy as np
import pytest

import decoding
import kernels
import model_dir
import numpy_model
import slot_decoder
from fixtures import numpy_gpt2


@pytest.fixture(scope='module')
def tiny_arrays(models_dir):
    loaded = model_dir.load('tiny', models_dir)
    return loaded.hparams, model_dir.load_arrays(loaded.checkpoint, loaded.hparams)


def next_token_losses(arrays, hparams, tokens, kernel):
    """Each position's loss (nats) predicting tokens [rows, n] one step at a time with a
    CpuDecoder whose products run in `kernel`: [rows, n - 1]."""
    decoder = decoding.CpuDecoder(numpy_model.prepare(arrays, kernel), hparams, tokens.shape[1])
    logits = [decoder.prefill(tokens[:, :1].tolist())]
    logits += [decoder.extend(tokens[:, t]) for t in range(1, tokens.shape[1] - 1)]
    logits = np.stack(logits, 1).astype(np.float64)  # [rows, n - 1, n_vocab]
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    return log_z - np.take_along_axis(logits, tokens[:, 1:, None], -1)[..., 0]


@pytest.mark.parametrize('kernel', kernels.KERNELS)
def test_cpu_decoder_logits_equal_a_plain_numpy_forward_pass(tiny_arrays, kernel):
    hparams, arrays = tiny_arrays
    tokens = np.random.RandomState(4).randint(0, hparams.n_vocab, size=[3, 6])
    decoder = decoding.CpuDecoder(numpy_model.prepare(arrays, kernel), hparams, 1)
    got = decoder.prefill(tokens.tolist())
    weights = {name: a.astype(np.float64) for name, a in arrays.items()}
    expected = np.stack([numpy_gpt2(weights, hparams, row)[-1] for row in tokens])
    np.testing.assert_allclose(got, expected, atol=1e-4 if kernel == 'float32' else 0.05,
                               rtol=0)


def test_bfloat16_products_keep_the_loss_within_a_hundredth_of_a_nat(tiny_arrays):
    """The tiny model made confident (its token embedding scaled up, so the loss depends
    on every logit), scored on 4 rows of 40 tokens in float32 and in bfloat16."""
    hparams, arrays = tiny_arrays
    arrays = dict(arrays, **{'model/wte': arrays['model/wte'] * 8})
    tokens = np.random.RandomState(5).randint(0, hparams.n_vocab, size=[4, 40])
    exact = next_token_losses(arrays, hparams, tokens, 'float32')
    low = next_token_losses(arrays, hparams, tokens, 'bfloat16')
    assert exact.std() > 0.5  # a loss that varies from token to token
    assert abs(low.mean() - exact.mean()) < 0.01
    assert not np.array_equal(low, exact)  # the products did run in bfloat16


@pytest.fixture(scope='module')
def tiny(models_dir):
    loaded = model_dir.load('tiny', models_dir)
    return model_dir.load_arrays(loaded.checkpoint, loaded.hparams), loaded.hparams


def check(arrays, hparams, tokens, logits):
    """logits are GPT-2's after `tokens` alone."""
    expected = numpy_gpt2(arrays, hparams, np.array(tokens))[-1]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_rows_joining_and_leaving_at_different_steps_each_compute_alone(tiny):
    arrays, hparams = tiny
    decoder = slot_decoder.SlotDecoder(numpy_model.prepare(arrays), hparams, max_rows=3)
    rng = np.random.default_rng(0)
    seqs = {key: list(rng.integers(0, hparams.n_vocab, size)) for key, size in
            (('a', 5), ('b', 1), ('c', 9), ('d', 3))}

    def add(*keys):
        for key, logits in zip(keys, decoder.add(list(keys), [seqs[k] for k in keys]),
                               strict=True):
            check(arrays, hparams, seqs[key], logits)
            seqs[key].append(int(np.argmax(logits)))

    def step():
        for key, logits in zip(decoder.rows, decoder.step([seqs[k][-1] for k in decoder.rows]),
                               strict=True):
            check(arrays, hparams, seqs[key], logits)
            seqs[key].append(int(np.argmax(logits)))

    add('a', 'b')
    step()
    step()
    add('c')
    step()
    decoder.remove('a')  # c moves into a's slot
    assert decoder.rows == ['c', 'b']
    step()
    add('d')
    step()
    decoder.remove('d')
    step()
    assert [decoder.length(k) for k in decoder.rows] == [len(seqs['c']) - 1,
                                                          len(seqs['b']) - 1]


def test_reset_row_continues_from_its_window_alone(tiny):
    arrays, hparams = tiny
    decoder = slot_decoder.SlotDecoder(numpy_model.prepare(arrays), hparams, max_rows=2)
    full = list(range(1, hparams.n_ctx + 1))
    decoder.add(['long', 'short'], [full, [7, 8]])
    assert decoder.length('long') == hparams.n_ctx
    with pytest.raises(ValueError, match='reset'):
        decoder.step([1, 2])
    window = full[-(hparams.n_ctx // 2):]
    decoder.reset('long', window[:-1])
    long_logits, short_logits = decoder.step([window[-1], 9])
    check(arrays, hparams, window, long_logits)
    check(arrays, hparams, [7, 8, 9], short_logits)


def test_too_many_rows_is_refused(tiny):
    arrays, hparams = tiny
    decoder = slot_decoder.SlotDecoder(numpy_model.prepare(arrays), hparams, max_rows=1)
    decoder.add(['a'], [[1]])
    with pytest.raises(ValueError, match='no room'):
        decoder.add(['b'], [[2]])
