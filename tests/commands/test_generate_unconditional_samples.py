"""The unconditional sampling script (commands/generate_unconditional_samples.py, run as
src/generate_unconditional_samples.py) on the tiny model."""

import pytest

from fixtures import run_script


@pytest.mark.slow
def test_unconditional_samples_to_a_file(models_dir, tmp_path):
    out = tmp_path / 'samples.txt'
    run_script('src/generate_unconditional_samples.py', '--models_dir', models_dir,
               '--model_name', 'tiny', '--nsamples', '4', '--batch_size', '2',
               '--length', '5', '--output_file', str(out), '--seed', '1')
    text = out.read_text(encoding='utf-8')
    assert [f' SAMPLE {i} ' in text for i in range(1, 6)] == [True] * 4 + [False]
