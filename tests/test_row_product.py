"""The float32 decoding step's product: x @ w_t.T, each row's numbers its own."""

import numpy as np
import pytest

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
