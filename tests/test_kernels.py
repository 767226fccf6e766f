import numpy as np
import pytest
import tensorflow as tf

import kernels
import resources
from cli import UserError

BFLOAT16 = tf.bfloat16.as_numpy_dtype


def random_matrix(rs, *shape):
    return rs.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize('kernel', kernels.KERNELS)
@pytest.mark.parametrize('rows', [1, 3, 16])
def test_every_kernel_multiplies_like_numpy(kernel, rows):
    rs = np.random.RandomState(rows)
    x, w = random_matrix(rs, rows, 48), random_matrix(rs, 48, 40)
    got = kernels.multiply(x, kernels.pack(w, kernel))
    assert type(got) is np.ndarray and got.dtype == np.float32 and got.shape == (rows, 40)
    # bfloat16 keeps 8 bits of mantissa: operands and result each off by up to 2^-9
    tolerance = 1e-5 if kernel == 'float32' or rows == 1 else 3 * 2**-9
    scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))
    assert np.all(np.abs(got - x.astype(np.float64) @ w) <= tolerance * scale)


def test_bfloat16_kernel_multiplies_several_rows_in_bfloat16_and_one_in_float32():
    rs = np.random.RandomState(0)
    w = kernels.pack(random_matrix(rs, 48, 40), 'bfloat16')
    several = kernels.multiply(random_matrix(rs, 4, 48), w)
    np.testing.assert_array_equal(several.astype(BFLOAT16).astype(np.float32), several)
    x = random_matrix(rs, 1, 48)
    np.testing.assert_array_equal(kernels.multiply(x, w), x @ np.asarray(w))


def test_packed_matrix_reads_as_its_array_and_its_results_are_plain_arrays():
    rs = np.random.RandomState(1)
    w = random_matrix(rs, 8, 6)
    packed = kernels.pack(w, 'bfloat16')
    np.testing.assert_array_equal(packed, w)
    assert packed.shape == (8, 6) and packed.bfloat16.shape == (8, 6)
    for derived in (np.ones([2, 8], np.float32) @ packed, packed + 1, packed[:, :3]):
        assert getattr(derived, 'bfloat16', None) is None
    assert type(np.ones([2, 8], np.float32) @ packed) is np.ndarray
    assert kernels.pack(w, 'float32') is w


def test_kernel_follows_the_cpu_unless_forced(monkeypatch):
    monkeypatch.delenv(kernels.KERNEL_ENV, raising=False)
    for has_bfloat16, kernel in ((True, 'bfloat16'), (False, 'float32')):
        monkeypatch.setattr(resources, 'cpu_has_bfloat16', lambda b=has_bfloat16: b)
        assert kernels.choose_kernel()[0] == kernel
    monkeypatch.setenv(kernels.KERNEL_ENV, 'bfloat16')
    assert kernels.choose_kernel() == ('bfloat16', f'{kernels.KERNEL_ENV} is set')


def test_unknown_forced_kernel_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(kernels.KERNEL_ENV, 'int8')
    with pytest.raises(UserError, match='GPT2_DECODER_KERNEL=int8: expected one of'):
        kernels.choose_kernel()
