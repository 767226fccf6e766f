"""The float32 decoding step's product: x @ w_t.T, each row's numbers its own."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from fixtures import script_env
from gpt2tune.generate import row_product


@pytest.fixture
def w_t():  # 4 * 32 + 7 outputs: whole blocks, and a last block of 4 + 3 columns
    return np.random.default_rng(0).standard_normal([135, 70]).astype(np.float32)


def test_product_equals_a_float64_reference(w_t):
    x = np.random.default_rng(1).standard_normal([5, 70]).astype(np.float32)
    reference = x.astype(np.float64) @ w_t.T.astype(np.float64)
    np.testing.assert_allclose(row_product.product(x, w_t), reference, rtol=0, atol=2e-5)


@pytest.mark.parametrize('rows', [2, 3, 16, 33])
def test_a_rows_numbers_are_bit_identical_alone_and_among_any_number_of_rows(w_t, rows):
    x = np.random.default_rng(rows).standard_normal([rows, 70]).astype(np.float32)
    together = row_product.product(x, w_t)
    for r in (0, rows // 2, rows - 1):
        np.testing.assert_array_equal(row_product.product(x[r:r + 1], w_t)[0], together[r])


def test_a_strided_row_gives_the_same_numbers(w_t):
    x = np.random.default_rng(2).standard_normal([4, 140]).astype(np.float32)[:, ::2]
    np.testing.assert_array_equal(row_product.product(x, w_t),
                                  row_product.product(x.copy(), w_t))


def test_numbas_own_thread_pool_gives_the_same_numbers(w_t):
    """Numba runs the product on OpenMP's threads where it finds them (here), else on its
    own pool (a machine without libgomp): forced, the numbers are the same bit for bit."""
    code = ('import sys, numpy as np\n'
            'from gpt2tune.generate import row_product\n'
            'w_t = np.load(sys.argv[1])\n'
            'x = np.random.default_rng(5).standard_normal([7, 70]).astype(np.float32)\n'
            'np.save(sys.argv[2], row_product.product(x, w_t))\n'
            'import numba; print(numba.threading_layer())\n')
    with tempfile.TemporaryDirectory() as folder:
        np.save(os.path.join(folder, 'w.npy'), w_t)
        layers = {}
        for layer in ('workqueue', 'default'):
            out = os.path.join(folder, f'{layer}.npy')
            env = script_env(**({'NUMBA_THREADING_LAYER': layer} if layer != 'default'
                                else {}))
            result = subprocess.run([sys.executable, '-c', code, os.path.join(folder, 'w.npy'),
                                     out], capture_output=True, text=True, env=env, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            layers[result.stdout.strip()] = np.load(out)
    assert 'workqueue' in layers
    first, *others = layers.values()
    for other in others:
        np.testing.assert_array_equal(other, first)
