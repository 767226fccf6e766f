"""What this machine has, and the choices made from it: memory, bfloat16 units, GPUs;
the precision of the matrix products and whether to recompute activations.

    dtype, reason = choose_precision('auto')
    recompute, reason = choose_memory_saving(c, hparams)

Every automatic choice is printed with its reason by the trainer.
"""

import os

import numpy as np
import tensorflow as tf

import model_dir
from cli import UserError

# Peak memory of a CPU training step in float32 weight copies, batch 1 x 1024, from
# bench/bench_large.py (the README's Performance section has the figures).
PEAK_WEIGHT_COPIES = {'adam': 8.5, 'adafactor': 4.5, 'sgd': 4.5}


def gpus():
    return tf.config.list_physical_devices('GPU')


def physical_memory():
    """Bytes of memory this process may use: the machine's, or its container's limit."""
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    try:
        with open('/sys/fs/cgroup/memory.max', encoding='utf-8') as f:
            limit = f.read().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def cpu_has_bfloat16():
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            flags = next((line for line in f if line.startswith('flags')), '').split()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def choose_precision(precision):
    """(dtype of the matrix products, reason) for --precision: bfloat16 on CPUs with bf16
    instructions and on GPUs of compute capability 8.0 (Ampere) and later, else float32."""
    if precision != 'auto':
        return tf.as_dtype(precision), 'as asked'
    devices = gpus()
    if devices:
        capability = tf.config.experimental.get_device_details(devices[0]).get(
            'compute_capability', (0, 0))
        dtype = tf.bfloat16 if tuple(capability) >= (8, 0) else tf.float32
        return dtype, f'GPU compute capability {capability[0]}.{capability[1]}'
    if cpu_has_bfloat16():
        return tf.bfloat16, 'this CPU has bfloat16 instructions'
    return tf.float32, 'this CPU has no bfloat16 instructions'


def choose_memory_saving(c, hparams):
    """Recompute each block in the backward pass when the activations of a step would
    take more than a quarter of this machine's memory. Returns (choice, reason)."""
    if c.memory_saving_gradients is not None:
        return c.memory_saving_gradients, 'as asked'
    tokens = c.batch_size * hparams.n_ctx
    # float32 bytes kept per layer for the backward pass: about 34 values per token and
    # width, plus 5 per token and head for each attended position (Korthikanti et al.).
    per_layer = 4 * tokens * (34 * hparams.n_embd + 5 * hparams.n_head * hparams.n_ctx) / 2
    activations = hparams.n_layer * per_layer + 12 * tokens * hparams.n_vocab
    memory = physical_memory()
    if gpus():
        memory = 8 << 30  # a conservative guess: TensorFlow cannot tell before allocating
    choice = activations > memory / 4
    return choice, f'activations about {activations / 2**30:.1f} GB, memory {memory / 2**30:.0f} GB'


def check_optimizer_memory(c, hparams):
    """Refuse, before loading anything, a CPU run that would run out of memory in its
    first steps (774M with Adam, 1558M with anything, on 24 GB)."""
    if gpus():
        return
    n_params = sum(int(np.prod(s)) for s in model_dir.variable_shapes(hparams).values())
    need = {name: 4 * n_params * copies for name, copies in PEAK_WEIGHT_COPIES.items()}
    memory = physical_memory()
    if need[c.optimizer] > memory:
        advice = ('use --optimizer adafactor (about '
                  f'{need["adafactor"] / 2**30:.1f} GB)' if need['adafactor'] <= memory
                  else 'use a smaller model or a machine with more memory')
        raise UserError(
            f'--optimizer {c.optimizer}: training {n_params / 1e6:.0f}M parameters needs '
            f'about {need[c.optimizer] / 2**30:.1f} GB, more than this machine\'s '
            f'{memory / 2**30:.1f} GB; {advice}')
