"""The choice of precision (the kernels' numbers are tested through the forward pass,
tests/generate/test_numpy_model.py)."""

import pytest

from gpt2tune.errors import UserError
from gpt2tune.generate import kernels


def test_auto_is_float32_never_int8_and_a_named_precision_is_taken_as_it_is():
    assert kernels.choose_precision('auto')[0] == 'float32'
    for precision in ('float32', 'bfloat16', 'int8'):
        assert kernels.choose_precision(precision) == (precision, '--precision')


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(UserError, match='--precision int4: expected one of auto, float32, '
                                        'bfloat16, int8'):
        kernels.choose_precision('int4')
