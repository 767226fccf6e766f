"""The int8 kernel's product: 8-bit quantization per output column and per row, exact
integer sums in each of ONNX Runtime's forms, each row's numbers its own."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures import script_env
from gpt2tune import resources
from gpt2tune.generate import int8_product


def integer_reference(x_u8, q):
    """(x_u8 - 128) @ q in int64: the exact sums."""
    return (x_u8.astype(np.int64) - 128) @ q.astype(np.int64)


@pytest.fixture
def w():
    return np.random.default_rng(0).standard_normal([70, 135]).astype(np.float32)


@pytest.mark.parametrize('form', int8_product.FORMS)
def test_integer_sums_are_exact_in_each_form(form):
    """Activations over all of uint8; weights within +-63, where even x86's pairwise int16
    sums without VNNI cannot saturate (255 * 63 * 2 < 2**15), so each form is exact on
    any CPU. Long rows (3072, GPT-2's widest) to exercise the library's blocking."""
    rng = np.random.default_rng(1)
    q = rng.integers(-63, 64, [3072, 40]).astype(np.int8)
    x_u8 = rng.integers(0, 256, [5, 3072]).astype(np.uint8)
    product = int8_product.IntegerProduct(q, form)
    np.testing.assert_array_equal(product(x_u8), integer_reference(x_u8, q))


@pytest.mark.parametrize('form', ['u8u8', 'chosen for this CPU'])
def test_the_form_used_is_exact_over_the_whole_int8_range(form):
    """u8u8 (where the CPU has no VNNI), and whichever form this CPU gets: exact with
    weights at +-127 and activations at 0 and 255, the extremes, on rows as long as
    1558M's widest (6400)."""
    if form != 'u8u8':
        form = int8_product.choose_form(resources.cpu_flags())
    rng = np.random.default_rng(2)
    q = rng.choice(np.array([-127, 127], np.int8), [6400, 24])
    x_u8 = rng.choice(np.array([0, 1, 255], np.uint8), [3, 6400])
    product = int8_product.IntegerProduct(q, form)
    np.testing.assert_array_equal(product(x_u8), integer_reference(x_u8, q))


def quantize_rows_reference(x):
    """The rows' quantization in NumPy, as int8_product documents it."""
    scale = np.abs(x).max(1, keepdims=True) / np.float32(127)
    scale[scale == 0] = 1
    return (np.clip(np.rint(x / scale), -127, 127) + 128).astype(np.uint8), scale


def test_rows_are_quantized_at_127_steps_of_their_largest_rounded_to_even():
    rng = np.random.default_rng(5)
    x = rng.standard_normal([7, 300]).astype(np.float32) * np.float32(50)
    x[1] = 0
    x[2, :3] = 2.66e-43, -1e-45, 0  # subnormal: its step rounds
    x[2, 3:] = 0
    x[3] = np.clip(x[3], -100, 100)
    x[3, :3] = 127, 2.5, -3.5  # a step of 1, and halves
    q, scale = int8_product.quantize_rows(x)
    assert q[3, :3].tolist() == [255, 130, 124]
    expected_q, expected_scale = quantize_rows_reference(x)
    np.testing.assert_array_equal(q, expected_q)
    np.testing.assert_array_equal(scale, expected_scale)


def test_quantized_rows_and_columns_give_back_the_values_to_half_a_step():
    rng = np.random.default_rng(3)
    w = rng.standard_normal([50, 20]).astype(np.float32)
    w[:, 3] = 0  # a column of zeros stays zeros
    q, scale = int8_product.quantize_columns(w)
    assert np.abs(q).max(0)[np.abs(w).max(0) > 0].tolist() == [127] * 19
    assert np.all(np.abs(q * scale - w) <= scale / 2 * (1 + 1e-6))
    x = rng.standard_normal([6, 50]).astype(np.float32) * np.float32(1e3)
    x[2] = 0
    x_u8, row_scale = int8_product.quantize_rows(x)
    assert np.all(np.abs((x_u8.astype(np.int64) - 128) * row_scale - x)
                  <= row_scale / 2 * (1 + 1e-6))


@pytest.mark.parametrize('form', int8_product.FORMS)
def test_product_is_close_to_float64_within_the_quantization_error(w, form):
    x = np.random.default_rng(4).standard_normal([5, 70]).astype(np.float32)
    out = int8_product.Int8Matrix(w, form)(x)
    reference = x.astype(np.float64) @ w.astype(np.float64)
    # each of 70 terms off by at most half a step of x times |w| plus half a step of w
    # times |x|: the bound, per element
    _, w_scale = int8_product.quantize_columns(w)
    x_scale = np.abs(x).max(1, keepdims=True) / 127
    bound = (x_scale / 2 * np.abs(w).sum(0) + w_scale / 2 * np.abs(x).sum(1, keepdims=True)
             + 70 * x_scale * w_scale / 4)
    assert np.all(np.abs(out - reference) <= bound)
    assert np.abs(out - reference).max() < 0.05 * np.abs(reference).max()


@pytest.mark.parametrize('form', int8_product.FORMS)
@pytest.mark.parametrize('rows', [2, 3, 16, 33])
def test_a_rows_numbers_are_bit_identical_alone_and_among_any_number_of_rows(w, form, rows):
    matrix = int8_product.Int8Matrix(w, form)
    x = np.random.default_rng(rows).standard_normal([rows, 70]).astype(np.float32)
    together = matrix(x)
    for r in (0, rows // 2, rows - 1):
        np.testing.assert_array_equal(matrix(x[r:r + 1])[0], together[r])


def test_a_subnormal_row_stays_within_int8():
    x = np.array([[2.66e-43, -1e-45, 0]], np.float32)
    x_u8, scale = int8_product.quantize_rows(x)
    assert x_u8[0, 0] > 128 and x_u8[0, 1] <= 128  # the signs kept


def test_a_row_with_nan_or_infinity_gives_a_row_that_is_not_finite(w):
    """As in float32: a diverged model's numbers stay visible, not quantized away."""
    x = np.random.default_rng(6).standard_normal([3, 70]).astype(np.float32)
    x[0, 5], x[1, 9] = np.nan, np.inf
    out = int8_product.Int8Matrix(w, 'u8s8')(x)
    assert np.isnan(out[0]).all() and not np.isfinite(out[1]).any()
    assert np.isfinite(out[2]).all()


def test_the_form_is_u8s8_only_where_the_cpu_has_vnni():
    assert int8_product.choose_form({'avx2', 'avx512_vnni'}) == 'u8s8'
    assert int8_product.choose_form({'avx2', 'avx_vnni'}) == 'u8s8'
    assert int8_product.choose_form({'avx2', 'avx512f', 'avx512bw'}) == 'u8u8'
    assert int8_product.choose_form(set()) == 'u8u8'


@pytest.mark.parametrize('usable, cpus, threads', [(2, 8, 2), (8, 8, 0)])
def test_the_pool_has_no_more_threads_than_the_process_may_keep_busy(monkeypatch, usable,
                                                                     cpus, threads):
    """Fewer cores to use than the machine has (a container's quota, an affinity): a
    thread each; else ONNX Runtime's default (0: a thread per physical core)."""
    from onnxruntime.capi import _pybind_state
    asked = []
    monkeypatch.setattr(_pybind_state, 'set_global_thread_pool_sizes',
                        lambda intra, inter: asked.append(intra))
    monkeypatch.setattr(int8_product, '_pool_started', False)
    monkeypatch.setattr(resources, 'usable_cores', lambda: usable)
    monkeypatch.setattr(os, 'cpu_count', lambda: cpus)
    int8_product.start_pool()
    assert asked == [threads]


def test_a_thread_pool_the_process_made_first_is_shared():
    """ONNX Runtime allows one global thread pool: where the process (a user's own code)
    made it before the first int8 model, the int8 products use it instead of failing."""
    q = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    x_u8 = np.array([[0, 129, 200, 255]], np.uint8)
    script = (
        'import numpy as np\n'
        'from onnxruntime.capi import _pybind_state\n'
        '_pybind_state.set_global_thread_pool_sizes(1, 1)\n'
        'from gpt2tune.generate import int8_product\n'
        f'q = np.array({q.tolist()}, np.int8)\n'
        f'x_u8 = np.array({x_u8.tolist()}, np.uint8)\n'
        'print(*int8_product.IntegerProduct(q, "u8s8")(x_u8)[0])\n')
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120, env=script_env())
    assert done.returncode == 0, done.stderr
    assert [int(n) for n in done.stdout.split()] == integer_reference(x_u8, q)[0].tolist()
