"""score.py: the mean loss of a text under the tiny model, in each precision, against an
independent forward pass (fixtures.numpy_gpt2)."""

import re

import numpy as np
import pytest

from fixtures import SAMPLE_TEXT, numpy_gpt2, run_script
from gpt2tune.model import model_dir

SCORE = 'gpt2tune.commands.score'

TEXT = SAMPLE_TEXT[:120]  # fewer tokens than the tiny model's context: one window


@pytest.fixture(scope='module')
def expected_loss(models_dir):
    """The mean loss of TEXT's tokens, in float64."""
    loaded = model_dir.load('tiny', models_dir)
    weights = {name: a.astype(np.float64) for name, a in
               model_dir.load_arrays(loaded.checkpoint, loaded.hparams).items()}
    tokens = np.array(loaded.encoder.encode(TEXT))
    assert len(tokens) < loaded.hparams.n_ctx
    logits = numpy_gpt2(weights, loaded.hparams, tokens)[:-1]
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
    return float(np.mean(log_z - logits[np.arange(len(tokens) - 1), tokens[1:]]))


@pytest.mark.slow
@pytest.mark.parametrize('precision, tolerance', [('float32', 1e-4), ('bfloat16', 0.05),
                                                  ('int8', 5e-4)])
def test_the_loss_is_the_models_on_the_text(models_dir, tmp_path, expected_loss, precision,
                                            tolerance):
    text = tmp_path / 'text.txt'
    text.write_text(TEXT, encoding='utf-8')
    result = run_script(SCORE, str(text), '--models_dir', models_dir,
                        '--model_name', 'tiny', '--precision', precision)
    loss = float(re.search(r'loss=([0-9.]+)', result.stdout).group(1))
    assert abs(loss - expected_loss) < tolerance


def test_an_unknown_precision_is_one_error_line_before_tensorflow(models_dir, tmp_path):
    result = run_script(SCORE, str(tmp_path / 'any.txt'), '--models_dir', models_dir,
                        '--precision', 'int4', check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: argument --precision: invalid choice: 'int4' (choose from 'auto', 'float32', "
        "'bfloat16', 'int8')"]
