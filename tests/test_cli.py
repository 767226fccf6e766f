"""What every command-line script shares (cli.py): TensorFlow started without its
start-up noise, real errors shown, one warning for a driver whose GPU TensorFlow does not
see."""

import os
import subprocess

import pytest

import run_with_fakes
from fixtures import nvidia_machine, script_env
from gpt2tune import cli

# Lines TensorFlow 2.21 printed at start on a machine without a GPU, as they came.
START_LINES = [
    'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n',
    'I0000 00:00:1795461114.851329    3333 cudart_stub.cc:31] Could not find cuda drivers on '
    'your machine, GPU will not be used.\n',
    'I0000 00:00:1795461114.955643    3333 cpu_feature_guard.cc:227] This TensorFlow binary '
    'is optimized to use available CPU instructions in performance-critical operations.\n',
    'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow '
    'with the appropriate compiler flags.\n',
    'W0000 00:00:1795461120.248743    3333 some_pass.cc:12] a warning\n',
]
CUINIT = ('E0000 00:00:1795461118.268743    3333 cuda_platform.cc:52] failed call to cuInit: '
          'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n')
REAL_ERRORS = [
    'E0000 00:00:1795461118.268743    3333 op_kernel.cc:1830] OP_REQUIRES failed: OOM\n',
    'F0000 00:00:1795461118.268743    3333 check.cc:10] Check failed: x == y\n',
    'error: --dataset x: no such file or directory\n',
]


def test_start_noise_is_held_back_and_real_errors_show():
    for line in START_LINES:
        assert cli.is_start_noise(line, has_driver=False)
        assert cli.is_start_noise(line, has_driver=True)
    assert cli.is_start_noise(CUINIT, has_driver=False)
    assert not cli.is_start_noise(CUINIT, has_driver=True)  # a driver that fails: a fault
    for line in REAL_ERRORS:
        assert not cli.is_start_noise(line, has_driver=False)


def run_start(*args, nvidia=None, first_on_path=None, report_devices=True, **env):
    """Start TensorFlow as the scripts do, on a machine with no NVIDIA driver unless
    `nvidia` (fixtures.nvidia_machine) simulates one; `first_on_path` goes first on
    PYTHONPATH."""
    code = ('import sys; from gpt2tune import cli; '
            'cli.start_tensorflow(sys.argv[1:] == ["verbose"], '
            f'report_devices={report_devices}); print("after start", file=sys.stderr)')
    machine_env, fakes = nvidia or ({}, ['nvidia_version_file=/nonexistent', 'gpus=[]'])
    full_env = script_env(**machine_env, **env)
    if first_on_path:
        full_env['PYTHONPATH'] = f'{first_on_path}{os.pathsep}{full_env["PYTHONPATH"]}'
    return subprocess.run(run_with_fakes.command(fakes, '-c', code, *args),
                          capture_output=True, text=True, env=full_env, timeout=120)


def test_tensorflow_starts_quietly_unless_asked():
    quiet = run_start()
    device, after = quiet.stderr.splitlines(keepends=True)
    assert (quiet.returncode, after) == (0, 'after start\n')
    assert device.startswith('device: CPU ') and 'precision auto: ' in device
    # On a machine where TensorFlow prints at start, --verbose and the user's own
    # TF_CPP_MIN_LOG_LEVEL show it as printed.
    for loud in (run_start('verbose'), run_start(TF_CPP_MIN_LOG_LEVEL='0')):
        assert loud.returncode == 0 and loud.stderr.endswith('after start\n')
        if any(cli.is_start_noise(line, has_driver=False)
               for line in loud.stderr.splitlines(keepends=True)):
            assert len(loud.stderr) > len(quiet.stderr)


FAKE_TENSORFLOW = """# A stand-in for TensorFlow, writing to file descriptor 2 as its C++ does.
import logging
import os
import types

os.write(2, {at_import!r}.encode())
config = types.SimpleNamespace(
    list_physical_devices=lambda device_type=None: os.write(2, {at_devices!r}.encode()) and [])
get_logger = lambda: logging.getLogger('tensorflow')
"""


def test_only_real_errors_get_through_the_start_up_filter(tmp_path):
    """A fake `tensorflow` first on the path prints start-up noise and a real error line
    to fd 2 while it is imported and while it lists devices: the error alone shows,
    unless --verbose."""
    error = REAL_ERRORS[0]
    at_import, at_devices = ''.join(START_LINES[:3]) + error, ''.join(START_LINES[3:])
    (tmp_path / 'tensorflow').mkdir()
    (tmp_path / 'tensorflow' / '__init__.py').write_text(
        FAKE_TENSORFLOW.format(at_import=at_import, at_devices=at_devices))
    # The device line, which the fake cannot give, is tested apart.
    quiet = run_start(first_on_path=tmp_path, report_devices=False)
    assert (quiet.returncode, quiet.stderr) == (0, error + 'after start\n')
    loud = run_start('verbose', first_on_path=tmp_path, report_devices=False)
    # Verbose imports it and no more: the devices are listed later, by whoever needs them.
    assert (loud.returncode, loud.stderr) == (0, at_import + 'after start\n')


DLOPEN = ('W0000 00:00:1795461120.248743    3333 gpu_device.cc:2342] Cannot dlopen some GPU '
          'libraries. Please make sure the missing libraries mentioned above are installed '
          'properly if you would like to use GPU.\n')


def test_gpu_lines_are_told_apart_from_other_errors():
    for line in (CUINIT, DLOPEN, 'Skipping registering GPU devices...\n'):
        assert cli.is_gpu_noise(line)
    for line in REAL_ERRORS + START_LINES[2:]:
        assert not cli.is_gpu_noise(line)


@pytest.mark.slow
def test_a_driver_without_a_gpu_seen_gets_one_warning_in_place_of_tensorflows_lines(
        tmp_path):
    # On this machine TensorFlow's cuInit fails at error level once a driver is simulated:
    # the line the warning replaces.
    result = run_start(nvidia=nvidia_machine(tmp_path, driver='550.54.14'))
    warning, device, after = result.stderr.splitlines()
    assert warning.startswith('warning: NVIDIA driver 550.54.14 found but TensorFlow sees no '
                              'GPU') and '--verbose' in warning
    assert device.startswith('device: CPU ') and after == 'after start'
    loud = run_start('verbose', nvidia=nvidia_machine(tmp_path, driver='550.54.14'))
    assert loud.stderr.count('warning: NVIDIA driver') == 1


@pytest.mark.slow
def test_no_warning_without_a_driver_or_with_a_gpu_seen(tmp_path):
    a100 = {'name': 'NVIDIA A100-SXM4-40GB', 'compute_capability': [8, 0]}
    seen = run_start(nvidia=nvidia_machine(tmp_path, driver='550.54.14', gpus=[a100],
                                       smi_rows=['NVIDIA A100-SXM4-40GB, 40960, 39936']))
    device = [line for line in seen.stderr.splitlines() if line.startswith('device:')]
    assert device == ['device: GPU:0 NVIDIA A100-SXM4-40GB (40.0 GB, compute capability '
                      '8.0); precision auto: bfloat16 matrix products']
    assert 'warning:' not in seen.stderr
    assert 'warning:' not in run_start(nvidia=nvidia_machine(tmp_path, driver=None)).stderr
