"""The machine's facts (resources.py): a container's memory limit; the device line and the
unused-GPU warning, with the NVIDIA driver and TensorFlow's GPU list simulated
(fixtures.simulate_nvidia)."""

import os

import pytest
import tensorflow as tf

from fixtures import simulate_nvidia
from gpt2tune import nvidia, resources

A100 = {'name': 'NVIDIA A100-SXM4-40GB', 'compute_capability': [8, 0]}
T4 = {'name': 'Tesla T4', 'compute_capability': [7, 5]}
SMI_ROWS = ['NVIDIA A100-SXM4-40GB, 40960, 39936', 'Tesla T4, 15360, 15000']


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    def simulate(**kwargs):
        simulate_nvidia(monkeypatch, tmp_path, **kwargs)
    return simulate


@pytest.mark.parametrize('flags, support, dtype', [
    (set(), 'AVX-512 BF16: no, AMX: no', 'float32'),
    ({'avx512_bf16'}, 'AVX-512 BF16: yes, AMX: no', 'bfloat16'),
    ({'amx_tile', 'amx_bf16'}, 'AVX-512 BF16: no, AMX: yes', 'bfloat16'),
    ({'amx_tile', 'amx_int8'}, 'AVX-512 BF16: no, AMX: no', 'float32'),  # AMX without bf16
    ({'avx512_bf16', 'amx_bf16', 'amx_tile'}, 'AVX-512 BF16: yes, AMX: yes', 'bfloat16'),
])
def test_device_line_names_the_cpu_its_bfloat16_units_and_the_precision(
        simulate, monkeypatch, flags, support, dtype):
    simulate(driver=None)
    monkeypatch.setattr(resources, 'cpu_flags', lambda: flags)
    assert resources.device_line() == (f'device: CPU {resources.cpu_model()} ({support}); '
                                       f'precision auto: {dtype} matrix products')


def test_device_line_lists_each_gpu_with_memory_and_compute_capability(simulate):
    simulate(driver='550.54.14', gpus=[A100, T4], smi_rows=SMI_ROWS)
    assert resources.device_line() == (
        'device: GPU:0 NVIDIA A100-SXM4-40GB (40.0 GB, compute capability 8.0), '
        'GPU:1 Tesla T4 (15.0 GB, compute capability 7.5); precision auto: bfloat16 matrix '
        'products')
    assert resources.gpu_free_memory(resources.gpus()[0]) == 39936 << 20


def test_device_line_says_when_a_gpus_memory_is_unknown(simulate):
    simulate(driver='550.54.14', gpus=[T4], smi_rows=['Tesla V100-SXM2-16GB, 16384, 16000'])
    assert resources.device_line() == ('device: GPU:0 Tesla T4 (memory unknown, compute '
                                       'capability 7.5); precision auto: float16 matrix products')
    assert resources.gpu_free_memory(resources.gpus()[0]) is None


def test_warning_names_missing_cuda_libraries_when_a_driver_sees_no_gpu(simulate):
    simulate(driver='550.54.14', gpus=[])
    warning = resources.no_gpu_warning()
    assert warning.startswith('NVIDIA driver 550.54.14 found but TensorFlow sees no GPU: '
                              'running on the CPU.')
    assert f"pip install 'tensorflow[and-cuda]=={tf.__version__}'" in warning
    assert 'GPU=1' in warning and '--verbose' in warning and '\n' not in warning


def test_warning_names_a_driver_older_than_tensorflows_cuda(simulate):
    if not tf.sysconfig.get_build_info().get('cuda_version'):
        pytest.skip('this TensorFlow is not built with CUDA')
    simulate(driver='470.82.01', gpus=[])
    warning = resources.no_gpu_warning()
    assert 'NVIDIA driver 470.82.01 found' in warning
    assert f'the driver is older than TensorFlow {tf.__version__} needs' in warning
    assert '525.60.13 or later' in warning and '--verbose' in warning


def test_no_warning_without_a_driver_or_with_a_gpu_seen(simulate, tmp_path):
    simulate(driver=None, gpus=[])
    assert not nvidia.driver_present() and resources.no_gpu_warning() is None
    simulate(driver='550.54.14', gpus=[A100], smi_rows=SMI_ROWS)
    assert resources.no_gpu_warning() is None


def test_report_devices_prints_the_warning_then_the_device_line(simulate, capsys):
    simulate(driver='550.54.14', gpus=[])
    resources.report_devices()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(' ')[0] for line in lines] == ['warning:', 'device:']


def test_a_containers_memory_limit_counts(tmp_path):
    limit = tmp_path / 'memory.max'
    limit.write_text('1073741824\n')
    assert resources.physical_memory(str(limit)) == 1 << 30
    limit.write_text('max\n')
    assert resources.physical_memory(str(limit)) > 1 << 30


def test_a_containers_cpu_quota_counts(tmp_path):
    """cgroup v2's cpu.max: a quota of 2.5 cores lets 2 be busy, half a core 1; no quota
    (or no file) leaves the cores the process may run on."""
    cores = len(os.sched_getaffinity(0))
    limit = tmp_path / 'cpu.max'
    limit.write_text('250000 100000\n')
    assert resources.usable_cores(str(limit)) == min(cores, 2)
    limit.write_text('50000 100000\n')
    assert resources.usable_cores(str(limit)) == 1
    limit.write_text('max 100000\n')
    assert resources.usable_cores(str(limit)) == cores
    assert resources.usable_cores(str(tmp_path / 'none')) == cores


def test_without_an_affinity_call_the_machines_cores_count(tmp_path, monkeypatch):
    """Off Linux (no os.sched_getaffinity): the machine's cores, under a quota still."""
    monkeypatch.delattr(os, 'sched_getaffinity')
    monkeypatch.setattr(os, 'cpu_count', lambda: 6)
    assert resources.usable_cores(str(tmp_path / 'none')) == 6
    limit = tmp_path / 'cpu.max'
    limit.write_text('300000 100000\n')
    assert resources.usable_cores(str(limit)) == 3
