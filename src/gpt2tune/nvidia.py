"""The NVIDIA driver as the machine reports it, apart from TensorFlow (this module does not
import it, so the quiet start can ask before TensorFlow loads): whether a driver is
installed, its version, and each GPU's memory from nvidia-smi.

    driver_present()    # /proc/driver/nvidia/version exists, or nvidia-smi is on PATH
    driver_version()    # '550.54.14', or None
    smi_gpus()          # [SmiGpu(name, total_bytes, free_bytes)], [] without nvidia-smi

The tests simulate a driver (tests/support/run_with_fakes.py's nvidia_version_file,
which replaces VERSION_FILE) and a fake `nvidia-smi` early on PATH stands for the real one.
"""

import collections
import os
import re
import shutil
import subprocess

VERSION_FILE = '/proc/driver/nvidia/version'
# The oldest Linux driver each CUDA major version runs on (NVIDIA's CUDA compatibility
# table, minor version compatibility): TensorFlow's CUDA libraries refuse older ones.
CUDA_MIN_DRIVER = {'12': '525.60.13', '11': '450.80.02'}
SMI_QUERY = ['nvidia-smi', '--query-gpu=name,memory.total,memory.free',
             '--format=csv,noheader,nounits']

SmiGpu = collections.namedtuple('SmiGpu', 'name total_bytes free_bytes')


def driver_present():
    return os.path.exists(VERSION_FILE) or shutil.which('nvidia-smi') is not None


def driver_version():
    """The kernel module's version, from the driver file (`NVRM version: NVIDIA UNIX
    x86_64 Kernel Module  550.54.14  ...`), else from nvidia-smi; None if neither says."""
    try:
        with open(VERSION_FILE, encoding='utf-8') as f:
            found = re.search(r'Kernel Module\s+(\d[\d.]*)', f.read())
        if found:
            return found.group(1)
    except OSError:
        pass
    lines = run_smi(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])
    return lines[0].strip() if lines else None


def driver_older_than(version, cuda_version):
    """Whether driver `version` ('470.82.01') is older than CUDA `cuda_version` ('12.5.1')
    needs; False when either is unknown."""
    oldest = CUDA_MIN_DRIVER.get((cuda_version or '').split('.')[0])
    if not (version and oldest):
        return False
    return numbers(version) < numbers(oldest)


def numbers(version):
    return tuple(int(part) for part in re.findall(r'\d+', version))


def run_smi(command):
    """nvidia-smi's output lines, or [] when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return []
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


def smi_gpus():
    """Every GPU nvidia-smi lists, in its order, with memory in bytes (it reports MiB)."""
    gpus = []
    for line in run_smi(SMI_QUERY):
        fields = [field.strip() for field in line.rsplit(',', 2)]
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            gpus.append(SmiGpu(fields[0], int(fields[1]) << 20, int(fields[2]) << 20))
    return gpus


def smi_gpu(index, name):
    """nvidia-smi's row for TensorFlow's GPU `index` named `name`, or None when the two
    lists cannot be matched. nvidia-smi counts in PCI bus order, CUDA (and TensorFlow)
    fastest first, which is the same order for GPUs of one model: a row is only taken
    when its name agrees."""
    rows = smi_gpus()
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None and re.fullmatch(r'\d+(,\d+)*', visible):
        rows = [rows[int(i)] for i in visible.split(',') if int(i) < len(rows)]
    if index < len(rows) and rows[index].name == name:
        return rows[index]
    return None
