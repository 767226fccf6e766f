"""GPT-2's shape (model/hparams.py): the release checkpoint's variables it implies, and
hparams.json's checks."""

import numpy as np
import pytest

from gpt2tune.errors import UserError
from gpt2tune.model.hparams import HParams, variable_shapes


def test_124m_shape_matches_released_data_file_size():
    shapes = variable_shapes(HParams())
    assert 4 * sum(int(np.prod(s)) for s in shapes.values()) == 497_759_232


def test_bad_hparams_are_refused(tmp_path):
    path = tmp_path / 'hparams.json'
    path.write_text('{"n_vocab": 10, "n_ctx": 8, "n_embd": 6, "n_head": 4, "n_layer": 1}')
    with pytest.raises(UserError, match='n_embd 6 is not a multiple of n_head 4'):
        HParams.from_json(str(path))
