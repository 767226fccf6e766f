"""The Makefile's venv: TensorFlow with its CUDA extra where an NVIDIA driver is, checked
with `make -n` (nothing installed) and the driver simulated: NVIDIA_DRIVER_FILE names the
driver's version file, a fake nvidia-smi goes on PATH."""

import os
import platform
import re
import shutil
import subprocess

import pytest

from fixtures import ROOT

linux_only = pytest.mark.skipif(platform.system() != 'Linux',
                                reason='the CUDA extra is chosen on Linux only')


def pinned_tensorflow():
    with open(os.path.join(ROOT, 'requirements.txt'), encoding='utf-8') as f:
        return re.search(r'^tensorflow==(\S+)$', f.read(), re.M).group(1)


def venv_install(tmp_path, *variables, driver_file=False, smi=False):
    """What `make venv` would run to install requirements.txt, as one line."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    if smi:
        (bin_dir / 'nvidia-smi').write_text('#!/bin/sh\n', encoding='utf-8')
        (bin_dir / 'nvidia-smi').chmod(0o755)
    if driver_file:
        (tmp_path / 'version').write_text('NVRM version: NVIDIA UNIX x86_64 Kernel Module  '
                                          '550.54.14\n', encoding='utf-8')
    path = [str(bin_dir)] + [d for d in os.environ['PATH'].split(os.pathsep)
                             if d and not os.path.exists(os.path.join(d, 'nvidia-smi'))]
    result = subprocess.run(
        [shutil.which('make'), '-n', 'venv', f'VENV={tmp_path}/venv',
         f'NVIDIA_DRIVER_FILE={tmp_path}/version', *variables],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env=dict(os.environ, PATH=os.pathsep.join(path)))
    [line] = [line for line in result.stdout.splitlines() if ' -r requirements.txt' in line]
    return line


@linux_only
@pytest.mark.parametrize('driver_file, smi', [(True, False), (False, True)])
def test_venv_installs_tensorflow_with_cuda_where_a_driver_is(tmp_path, driver_file, smi):
    line = venv_install(tmp_path, driver_file=driver_file, smi=smi)
    assert line.endswith(f"-r requirements.txt 'tensorflow[and-cuda]=={pinned_tensorflow()}'")


def test_venv_installs_plain_tensorflow_without_a_driver(tmp_path):
    assert venv_install(tmp_path).endswith('-r requirements.txt ')


def test_gpu_variable_forces_the_choice(tmp_path):
    assert venv_install(tmp_path, 'GPU=0', driver_file=True, smi=True).endswith(
        '-r requirements.txt ')
    (tmp_path / 'no-driver').mkdir()
    assert venv_install(tmp_path / 'no-driver', 'GPU=1').endswith(
        f"'tensorflow[and-cuda]=={pinned_tensorflow()}'")
