"""What this machine has, and the choices made from it: memory, bfloat16 units, GPUs;
the precision of the matrix products; the one line every script prints at start saying
where the work runs (train_memory.py has what a training step needs).

    dtype, reason = choose_precision('auto')
    report_devices()   # the device line, after a warning if a GPU goes unused

Every automatic choice is printed with its reason by the trainer.
"""

import os
import platform
import sys

import tensorflow as tf

from gpt2tune import nvidia


def gpus():
    """The GPUs TensorFlow sees."""
    return tf.config.list_physical_devices('GPU')


def gpu_details(gpu):
    """{'device_name': ..., 'compute_capability': (major, minor)} of one of gpus()."""
    return tf.config.experimental.get_device_details(gpu)


def gpu_index(gpu):
    return int(gpu.name.rsplit(':', 1)[1])


def needs_op_determinism(seed):
    """Whether a seeded run must turn on TensorFlow's op determinism to repeat itself: on
    a GPU, where some kernels sum in any order (it costs speed there). CPU kernels repeat
    already, and the setting is process-wide (every later random op would need a seed),
    so it stays off without a GPU."""
    return seed is not None and bool(gpus())


def physical_memory(cgroup_limit='/sys/fs/cgroup/memory.max'):
    """Bytes of memory this process may use: the machine's, or its container's limit
    (cgroup v2; the file says `max` when there is none)."""
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    try:
        with open(cgroup_limit, encoding='utf-8') as f:
            limit = f.read().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def usable_cores(cgroup_limit='/sys/fs/cgroup/cpu.max'):
    """Cores this process may keep busy: those it may run on, fewer where its container's
    CPU quota allows less (cgroup v2: `quota period`, or `max period` for none; a part
    of a core left over does not count), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        with open(cgroup_limit, encoding='utf-8') as f:
            quota, period = (f.read().split() + ['', ''])[:2]
    except OSError:
        return cores
    if not (quota.isdigit() and period.isdigit() and int(period)):
        return cores
    return max(1, min(cores, int(quota) // int(period)))


def cpu_flags():
    """The instruction-set features the CPU reports (Linux), as a set of names."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            return set(next((line for line in f if line.startswith('flags')),
                            ':').split(':', 1)[1].split())
    except OSError:
        return set()


def cpu_has_bfloat16():
    return bool({'avx512_bf16', 'amx_bf16'} & cpu_flags())


def choose_precision(precision):
    """(dtype of the matrix products, reason) for --precision: bfloat16 on CPUs with bf16
    instructions and on GPUs of compute capability 8.0 (Ampere) and later, float16 (with
    loss scaling) on 7.x (Volta, Turing: fast float16, no bfloat16), else float32."""
    if precision != 'auto':
        return tf.as_dtype(precision), 'as asked'
    devices = gpus()
    if devices:
        capability = tuple(gpu_details(devices[0]).get('compute_capability', (0, 0)))
        return (gpu_precision(capability),
                f'GPU compute capability {capability[0]}.{capability[1]}')
    if cpu_has_bfloat16():
        return tf.bfloat16, 'this CPU has bfloat16 instructions'
    return tf.float32, 'this CPU has no bfloat16 instructions'


def gpu_precision(capability):
    """The product dtype a GPU of this compute capability runs fastest with accuracy."""
    if capability >= (8, 0):
        return tf.bfloat16
    if capability >= (7, 0):
        return tf.float16
    return tf.float32


def cpu_model():
    """The CPU's model name ('AMD EPYC 7B13'), from /proc/cpuinfo on Linux."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            return next((line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name')), 'unknown')
    except OSError:
        return platform.processor() or 'unknown'


def describe_gpu(gpu):
    """'GPU:0 NVIDIA A100-SXM4-40GB (40.0 GB, compute capability 8.0)'"""
    details = gpu_details(gpu)
    name = details.get('device_name', 'unknown')
    major, minor = details.get('compute_capability', ('?', '?'))
    row = nvidia.smi_gpu(gpu_index(gpu), name)
    memory = f'{row.total_bytes / 2**30:.1f} GB' if row else 'memory unknown'
    return f'GPU:{gpu_index(gpu)} {name} ({memory}, compute capability {major}.{minor})'


def device_line():
    """Where the work runs, and the precision --precision auto chooses from it."""
    devices = gpus()
    if devices:
        where = ', '.join(describe_gpu(gpu) for gpu in devices)
    else:
        flags = cpu_flags()
        where = (f'CPU {cpu_model()} (AVX-512 BF16: {"yes" if "avx512_bf16" in flags else "no"}'
                 f', AMX: {"yes" if "amx_bf16" in flags else "no"})')
    dtype, _ = choose_precision('auto')
    return f'device: {where}; precision auto: {dtype.name} matrix products'


def no_gpu_warning():
    """Why a GPU goes unused when an NVIDIA driver is installed but TensorFlow sees no
    GPU (the likely cause: the driver too old for TensorFlow's CUDA, else CUDA's libraries
    missing); None otherwise."""
    if gpus() or not nvidia.driver_present():
        return None
    version = nvidia.driver_version()
    cuda = tf.sysconfig.get_build_info().get('cuda_version')
    if nvidia.driver_older_than(version, cuda):
        cause = (f'the driver is older than TensorFlow {tf.__version__} needs (CUDA {cuda}: '
                 f'{nvidia.CUDA_MIN_DRIVER[cuda.split(".")[0]]} or later)')
    else:
        cause = (f"CUDA's libraries are missing (pip install 'tensorflow[and-cuda]=="
                 f"{tf.__version__}'; make venv installs it where it finds a driver, GPU=1 "
                 'forces)')
    return (f'NVIDIA driver {version or "(version unknown)"} found but TensorFlow sees no '
            f'GPU: running on the CPU. Likely cause: {cause}. --verbose shows TensorFlow\'s '
            'own lines')


def report_devices(file=None):
    """The warning above when it applies, then the device line, to `file` (stderr)."""
    file = file or sys.stderr
    warning = no_gpu_warning()
    if warning:
        print(f'warning: {warning}', file=file)
    print(device_line(), file=file)


def gpu_free_memory(gpu):
    """Free bytes on one of gpus() now, from nvidia-smi, or None when unknown."""
    row = nvidia.smi_gpu(gpu_index(gpu), gpu_details(gpu).get('device_name'))
    return row.free_bytes if row else None
