"""The NVIDIA driver as the machine reports it, simulated (fixtures.simulate_nvidia)."""

import pytest

from fixtures import simulate_nvidia
from gpt2tune import nvidia

ROWS = ['Tesla T4, 15360, 15000', 'NVIDIA A100-SXM4-40GB, 40960, 39936']


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)

    def simulate(**kwargs):
        simulate_nvidia(monkeypatch, tmp_path, **kwargs)
    return simulate


def test_driver_version_is_read_from_the_driver_file(simulate):
    simulate(driver='550.54.14')
    assert nvidia.driver_present() and nvidia.driver_version() == '550.54.14'
    simulate(driver=None)
    assert not nvidia.driver_present() and nvidia.driver_version() is None


def test_a_driver_is_older_than_cuda_needs_only_below_its_minimum():
    assert nvidia.driver_older_than('470.82.01', '12.5.1')
    assert nvidia.driver_older_than('525.60.12', '12.0')
    assert not nvidia.driver_older_than('525.60.13', '12.5.1')
    assert not nvidia.driver_older_than('550.54.14', '12.5.1')
    assert not nvidia.driver_older_than('1000.10', '12.5.1')  # compared as numbers
    assert not nvidia.driver_older_than(None, '12.5.1')
    assert not nvidia.driver_older_than('470.82.01', None)  # a CPU-only TensorFlow


def test_smi_rows_are_matched_to_tensorflows_gpus_by_position_and_name(simulate, monkeypatch):
    simulate(driver='550.54.14', smi_rows=ROWS)
    assert nvidia.smi_gpu(1, 'NVIDIA A100-SXM4-40GB') == nvidia.SmiGpu(
        'NVIDIA A100-SXM4-40GB', 40960 << 20, 39936 << 20)
    assert nvidia.smi_gpu(0, 'NVIDIA A100-SXM4-40GB') is None  # not the same GPU
    assert nvidia.smi_gpu(2, 'Tesla T4') is None
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '1')  # TensorFlow's GPU:0 is the A100
    assert nvidia.smi_gpu(0, 'NVIDIA A100-SXM4-40GB').total_bytes == 40960 << 20
