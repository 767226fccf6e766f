"""The decoder's forward pass in each precision and kernel form (the TensorFlow float32
form is what a GPU runs, forced here): its logits against an independent forward pass
(fixtures.numpy_gpt2), and each row's logits bit-identical alone and beside others of
other lengths joining at other steps, in more rows than a TensorFlow tile."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures import ROOT, numpy_gpt2, random_arrays
from gpt2tune import resources
from gpt2tune.generate import int8_product, kernels, numpy_model
from gpt2tune.model.hparams import HParams

KERNELS = [('float32', 'numpy'), ('float32', 'tensorflow'), ('bfloat16', 'tensorflow'),
           ('int8', 'numpy', 'u8s8'), ('int8', 'numpy', 'u8u8')]
# Wider than the tiny model, with a small vocabulary: a row's products, norms and
# attention over enough numbers that a kernel mixing rows shows in the last bits.
WIDE = HParams(n_vocab=300, n_ctx=48, n_embd=128, n_head=4, n_layer=2)


@pytest.fixture(scope='module')
def arrays():
    return random_arrays(WIDE, seed=3)


@pytest.fixture(scope='module', params=KERNELS, ids='-'.join)
def forward(request, arrays):
    f = numpy_model.Forward(arrays, WIDE, *request.param)
    yield f
    f.close()


def test_prefill_and_step_logits_equal_an_independent_forward_pass(forward, arrays):
    """Two rows: 7 prompt tokens, then 5 more one at a time, beside each other."""
    tokens = np.random.RandomState(4).randint(0, WIDE.n_vocab, size=[2, 12])
    cache = numpy_model.Cache(WIDE, 2, WIDE.n_ctx)
    got = [np.stack([forward.prefill(cache, slot, tokens[slot, :7]) for slot in (0, 1)])]
    got += [forward.step(cache, [0, 1], tokens[:, t]) for t in range(7, 12)]
    weights = {name: a.astype(np.float64) for name, a in arrays.items()}
    expected = np.stack([numpy_gpt2(weights, WIDE, row)[6:] for row in tokens])
    error = np.abs(np.stack(got, 1) - expected)
    if forward.kernel.precision == 'float32':
        assert error.max() < 1e-4
    else:  # rounding: a bias or a gain left out shows in the mean, if not the max
        largest, mean = {'bfloat16': (0.02, 0.003), 'int8': (0.07, 0.012)}[
            forward.kernel.precision]
        assert error.max() < largest and error.mean() < mean


def test_a_prompt_prefilled_in_chunks_gives_an_independent_forward_passs_logits(forward,
                                                                                arrays):
    """30 tokens in chunks of 11, 11 and 8 (each after the positions before it): every
    position's logits, and the last chunk's last as 'last' gives it."""
    tokens = np.random.RandomState(6).randint(0, WIDE.n_vocab, size=30)
    cache = numpy_model.Cache(WIDE, 2, WIDE.n_ctx)
    every = [forward.prefill(cache, 1, tokens[start:start + 11], start, logits='every')
             for start in (0, 11, 22)]
    assert cache.lengths[1] == 30
    weights = {name: a.astype(np.float64) for name, a in arrays.items()}
    error = np.abs(np.concatenate(every) - numpy_gpt2(weights, WIDE, tokens))
    if forward.kernel.precision == 'float32':
        assert error.max() < 1e-4
    else:  # rounding, as above
        largest, mean = {'bfloat16': (0.05, 0.003), 'int8': (0.12, 0.015)}[
            forward.kernel.precision]
        assert error.max() < largest and error.mean() < mean
    assert forward.prefill(cache, 0, tokens[:11], logits=None) is None
    forward.prefill(cache, 0, tokens[11:22], 11, logits=None)
    last = forward.prefill(cache, 0, tokens[22:], 22)
    np.testing.assert_array_equal(last, every[-1][-1])  # the same numbers either way
    both = forward.step(cache, [0, 1], [5, 5])  # the same keys and values in either slot
    np.testing.assert_array_equal(both[0], both[1])


def blas_threads_in_a_prompts_attention(forward, monkeypatch):
    """(BLAS's threads before, those seen inside each layer's attention of a prompt, after),
    BLAS given 2 threads first, whatever the machine's cores."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [lib['num_threads'] for lib in threadpool_info() if lib['user_api'] == 'blas']

    seen = []
    attention = numpy_model._attention

    def watched(*arrays):
        seen.append(blas_threads())
        return attention(*arrays)

    monkeypatch.setattr(numpy_model, '_attention', watched)
    with threadpool_limits(2, user_api='blas'):
        before = blas_threads()
        forward.prefill(numpy_model.Cache(WIDE, 1, WIDE.n_ctx), 0, [1, 2, 3])
        after = blas_threads()
    assert before == [2] * len(before) and before
    return before, seen, after


def test_a_prompts_attention_leaves_the_cores_to_the_products_thread_pool(forward,
                                                                         monkeypatch):
    """A prompt's attention multiplies in NumPy's BLAS: on one thread where the products
    run in another library's pool on the CPU (ONNX Runtime's, TensorFlow's there), on all
    of BLAS's where they are BLAS's own (float32 in NumPy, or on a GPU); as before once
    the prompt is in."""
    before, seen, after = blas_threads_in_a_prompts_attention(forward, monkeypatch)
    kernel = forward.kernel
    own_pool = isinstance(kernel, kernels.Int8Kernel) or (
        isinstance(kernel, kernels.TensorFlowKernel) and kernel.device == 'CPU')
    assert seen == [[1] * len(before) if own_pool else before] * WIDE.n_layer
    assert after == before


def test_with_a_gpu_a_prompts_attention_keeps_blas_threads(arrays, monkeypatch):
    """TensorFlow's products on a GPU (one listed here) leave the CPU's cores to BLAS."""
    import tensorflow as tf
    gpu = tf.config.PhysicalDevice('/physical_device:GPU:0', 'GPU')
    listed = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, 'list_physical_devices',
                        lambda kind=None: [gpu] if kind == 'GPU' else listed(kind))
    forward = numpy_model.Forward(arrays, WIDE, 'float32', 'tensorflow')
    try:
        assert forward.kernel.device == 'GPU'
        before, seen, _ = blas_threads_in_a_prompts_attention(forward, monkeypatch)
    finally:
        forward.close()
    assert seen == [before] * WIDE.n_layer


def decode(forward, plan, max_rows):
    """Greedy decoding by a plan {row: (prompt, step it joins, steps it takes)} in one
    shared cache of max_rows slots, a slot reused once its row left: {row: [logits after
    its prompt, then after each token]}."""
    cache = numpy_model.Cache(WIDE, max_rows, WIDE.n_ctx)
    free, slots, tokens, logits = list(range(max_rows)), {}, {}, {}
    last = max(start + steps for _, start, steps in plan.values())
    for step in range(last + 1):
        for row, (prompt, start, steps) in plan.items():
            if start == step:
                slots[row] = free.pop(0)
                logits[row] = [forward.prefill(cache, slots[row], prompt)]
                tokens[row] = int(np.argmax(logits[row][-1]))
            elif row in slots and step == start + steps + 1:
                free.append(slots.pop(row))
        going = [row for row in slots if plan[row][1] < step]
        if going:
            out = forward.step(cache, [slots[r] for r in going], [tokens[r] for r in going])
            for row, row_logits in zip(going, out, strict=True):
                logits[row].append(row_logits)
                tokens[row] = int(np.argmax(row_logits))
    return logits


def test_a_rows_logits_are_bit_identical_alone_and_beside_others(forward):
    """20 rows (more than a bfloat16 tile), prompts of 1 to 30 tokens, joining at steps
    0 to 9 and leaving after 3 to 12 steps; each row's logits at its prefill and at every
    step equal those of the same row decoded alone."""
    rs = np.random.RandomState(7)
    plan = {row: (rs.randint(0, WIDE.n_vocab, size=rs.randint(1, 31)).tolist(),
                  rs.randint(0, 10), rs.randint(3, 13)) for row in range(20)}
    together = decode(forward, plan, max_rows=20)
    for row, (prompt, _, steps) in plan.items():
        alone = decode(forward, {row: (prompt, 0, steps)}, max_rows=1)[row]
        assert len(alone) == len(together[row]) == steps + 1
        for step, (a, b) in enumerate(zip(alone, together[row], strict=True)):
            assert np.array_equal(a, b), f'row {row} differs at step {step}'


def test_bfloat16_holds_its_matrices_once_in_bfloat16(arrays):
    forward = numpy_model.Forward(arrays, WIDE, 'bfloat16')
    try:
        held = {v.dtype.base_dtype.name
                for v in forward.kernel.graph.get_collection('variables')
                if len(v.shape) == 2}
        assert held == {'bfloat16'}
        assert not hasattr(forward.kernel, 'w')  # no float32 copy of the matrices
    finally:
        forward.close()


@pytest.mark.parametrize('gpus, form', [([], 'numpy'), (['GPU:0'], 'tensorflow')])
def test_float32_decodes_in_tensorflow_where_a_gpu_is_bfloat16_always_int8_never(
        monkeypatch, gpus, form):
    monkeypatch.setattr(resources, 'gpus', lambda: gpus)
    assert kernels.choose_form('float32') == form
    assert kernels.choose_form('bfloat16') == 'tensorflow'
    assert kernels.choose_form('int8') == 'numpy'


@pytest.mark.parametrize('precision, form', [('bfloat16', 'NumPy'), ('int8', 'TensorFlow')])
def test_there_is_no_numpy_bfloat16_kernel_nor_tensorflow_int8(arrays, precision, form):
    with pytest.raises(ValueError, match=f'no {precision} kernel in {form}'):
        numpy_model.Forward(arrays, WIDE, precision, form.lower())


@pytest.mark.parametrize('flags, form', [({'avx2', 'avx512_vnni'}, 'u8s8'), ({'avx2'}, 'u8u8')])
def test_int8_picks_its_integer_form_from_the_cpu(arrays, monkeypatch, flags, form):
    monkeypatch.setattr(resources, 'cpu_flags', lambda: flags)
    assert numpy_model.Forward(arrays, WIDE, 'int8').kernel.form == form


def next_token_losses(arrays, tokens, precision):
    forward = numpy_model.Forward(arrays, WIDE, precision)
    try:
        return numpy_model.next_token_losses(forward, tokens)
    finally:
        forward.close()


@pytest.mark.parametrize('precision, nats', [('bfloat16', 0.01), ('int8', 0.02)])
def test_a_lower_precision_keeps_the_loss_within_its_bound(arrays, precision, nats):
    """The model made confident (its token embedding scaled up, so the loss depends on
    every logit), scored on 4 rows of 40 tokens in float32 and in `precision`."""
    confident = dict(arrays, **{'model/wte': arrays['model/wte'] * 8})
    tokens = np.random.RandomState(5).randint(0, WIDE.n_vocab, size=[4, 40])
    exact = next_token_losses(confident, tokens, 'float32')
    low = next_token_losses(confident, tokens, precision)
    assert exact.std() > 0.5  # a loss that varies from token to token
    assert abs(low.mean() - exact.mean()) < nats
    assert not np.array_equal(low, exact)  # the products did run in `precision`


def test_a_full_cache_is_refused_before_a_step(arrays):
    forward = numpy_model.Forward(arrays, WIDE, 'float32')
    cache = numpy_model.Cache(WIDE, 1, 4)
    forward.prefill(cache, 0, [1, 2, 3, 4])
    with pytest.raises(ValueError, match='fills its cache'):
        forward.step(cache, [0], [5])


def test_logits_are_float32_in_every_kernel(forward):
    cache = numpy_model.Cache(WIDE, 2, WIDE.n_ctx)
    assert forward.prefill(cache, 0, [1, 2, 3]).dtype == np.float32
    forward.prefill(cache, 1, [4])
    assert forward.step(cache, [0, 1], [5, 6]).dtype == np.float32


@pytest.mark.parametrize('form', int8_product.FORMS)
def test_int8_gives_a_prompts_positions_and_a_steps_rows_the_same_product(arrays, form):
    """The same numbers through what lies between attentions as a prompt (rows=False) and
    as a step's rows; wte quantized per vocabulary row (the logits' output column)."""
    kernel = numpy_model.Forward(arrays, WIDE, 'int8', 'numpy', form).kernel
    assert kernel.matrices['model/wte'].scale.shape == (WIDE.n_vocab,)
    rs = np.random.RandomState(8)
    x = rs.normal(0, 1, [5, WIDE.n_embd]).astype(np.float32)
    a = rs.normal(0, 3, [5, WIDE.n_embd]).astype(np.float32)
    for layer in (0, WIDE.n_layer - 1):
        for prompt, step in zip(kernel.after_attention(layer, x, a, rows=False),
                                kernel.after_attention(layer, x, a, rows=True), strict=True):
            assert prompt is None and step is None or np.array_equal(prompt, step)


def test_each_kernel_describes_itself(forward):
    precision, form = forward.kernel.precision, type(forward.kernel).__name__
    assert forward.kernel.describe().startswith(precision)
    assert ('TensorFlow' in forward.kernel.describe()) == (form == 'TensorFlowKernel')


def test_what_lies_between_attentions_gives_a_row_the_same_numbers_in_any_step(forward):
    """Random rows through a block's MLP and the next block's qkv, and through the last
    block's MLP and the logits: each row of a step of 2 to 20 rows equals the row alone
    (many rows: a kernel whose sums depend on the rows beside rounds differently only
    now and then)."""
    rs = np.random.RandomState(8)
    kernel = forward.kernel
    for n in list(range(2, 21)) * 4:
        x = rs.normal(0, 1, [n, WIDE.n_embd]).astype(np.float32)
        a = rs.normal(0, 3, [n, WIDE.n_embd]).astype(np.float32)
        for layer in (0, WIDE.n_layer - 1):
            together = kernel.after_attention(layer, x, a, rows=True)
            for r in range(n):
                alone = kernel.after_attention(layer, x[r:r + 1], a[r:r + 1], rows=True)
                for t, o in zip(together, alone, strict=True):
                    assert t is None and o is None or np.array_equal(t[r], o[0]), (n, r)


@pytest.mark.slow
def test_rows_stay_invariant_with_onednn_held_below_bfloat16_instructions():
    """The invariance tests above in a process whose oneDNN may not use AMX or
    AVX512_BF16 (ONEDNN_MAX_CPU_ISA: a ceiling, so a CPU without them runs as it would
    anyway): the path of CPUs without bfloat16 units, where oneDNN's products of 1, 4 and
    8 rows differ, forced on one that has them."""
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', __file__, '-k',
         'bit_identical or between_attentions'],
        env=dict(os.environ, ONEDNN_MAX_CPU_ISA='AVX512_CORE'), capture_output=True,
        text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f'{2 * len(KERNELS)} passed' in result.stdout
