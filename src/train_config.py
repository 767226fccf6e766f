"""One training run's settings, checked, and the choices made from them: learning-rate
schedule, memory saving, precision. train.py's flags fill a TrainConfig; each checkpoint
stores it, and a resumed run warns of every setting that changed.

    c = TrainConfig(dataset='input-text.txt.npz', steps=1000, lr_schedule='cosine')
    check_config(c)
    learning_rate_at(c, step=10)
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

import model_dir
from cli import UserError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    dataset: str
    model_name: str = '117M'
    models_dir: str = 'models'
    combine: int = 50000
    encoding: str = 'utf-8'
    endoftext_as_text: bool = False
    batch_size: int = 1
    learning_rate: float = 0.00002
    accumulate_gradients: int = 1
    memory_saving_gradients: bool | None = None  # None: chosen from model and machine
    only_train_transformer_layers: bool = False
    optimizer: str = 'adam'
    noise: float = 0.0
    top_k: int = 40
    top_p: float = 0.0
    restore_from: str = 'latest'
    run_name: str = 'run1'
    sample_every: int = 100
    sample_length: int | None = None  # None: n_ctx - 1 (1023 for released models)
    sample_num: int = 1
    save_every: int = 1000
    val_dataset: str | None = None
    val_batch_size: int = 2
    val_batch_count: int = 40
    val_every: int = 0
    steps: int = 0  # 0: until interrupted
    lr_schedule: str = 'constant'
    warmup_steps: int = 0
    min_lr: float = 0.0
    grad_clip: float = 0.0
    weight_decay: float = 0.0
    seed: int | None = None
    pack: bool = False
    precision: str = 'auto'  # auto: bfloat16 products where the hardware has bf16 units
    collective_timeout: float = 300.0  # seconds a worker waits for the others each step
    checkpoint_dir: str = 'checkpoint'
    sample_dir: str = 'samples'


def check_config(c):
    """Bad flag values and combinations, before anything is loaded."""
    positive = ['batch_size', 'accumulate_gradients', 'sample_every', 'sample_num',
                'save_every', 'val_batch_size', 'val_batch_count']
    for name in positive:
        if getattr(c, name) < 1:
            raise UserError(f'--{name} {getattr(c, name)}: must be at least 1')
    for name in ('steps', 'val_every', 'warmup_steps', 'combine'):
        if getattr(c, name) < 0:
            raise UserError(f'--{name} {getattr(c, name)}: must be 0 or more')
    if c.optimizer not in ('adam', 'adafactor', 'sgd'):
        raise UserError(f'--optimizer {c.optimizer}: choose adam, adafactor or sgd')
    if c.lr_schedule not in ('constant', 'cosine', 'linear'):
        raise UserError(f'--lr_schedule {c.lr_schedule}: choose constant, cosine or linear')
    if c.lr_schedule != 'constant' and c.steps <= c.warmup_steps:
        raise UserError(f'--lr_schedule {c.lr_schedule} decays towards --steps, which must '
                        f'be above --warmup_steps ({c.warmup_steps})')
    if not 0 <= c.noise < 1:
        raise UserError(f'--noise {c.noise}: must be at least 0 and below 1')
    if c.learning_rate <= 0 or c.grad_clip < 0 or c.weight_decay < 0 or c.min_lr < 0:
        raise UserError('--learning_rate must be above 0; --grad_clip, --weight_decay and '
                        '--min_lr 0 or more')
    if c.precision not in ('auto', 'float32', 'bfloat16'):
        raise UserError(f'--precision {c.precision}: choose auto, float32 or bfloat16')
    if c.weight_decay and c.optimizer == 'sgd':
        raise UserError('--weight_decay is decoupled (AdamW) and needs --optimizer adam or '
                        'adafactor')


def learning_rate_at(c, step):
    """The learning rate of step `step` (0 for the first): linear warm-up, then constant,
    cosine or linear decay to min_lr at c.steps."""
    if step < c.warmup_steps:
        return c.learning_rate * (step + 1) / c.warmup_steps
    if c.lr_schedule == 'constant':
        return c.learning_rate
    progress = min(1.0, (step - c.warmup_steps) / (c.steps - c.warmup_steps))
    if c.lr_schedule == 'cosine':
        factor = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1 - progress
    return c.min_lr + (c.learning_rate - c.min_lr) * factor


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
    if tf.config.list_physical_devices('GPU'):
        memory = 8 << 30  # a conservative guess: TensorFlow cannot tell before allocating
    choice = activations > memory / 4
    return choice, f'activations about {activations / 2**30:.1f} GB, memory {memory / 2**30:.0f} GB'


def physical_memory():
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


# Peak memory of a CPU training step in float32 weight copies, batch 1 x 1024, as
# measured here (bench/bench_large.py): 774M with Adafactor peaked at 4.5 copies (13.9 GB);
# with Adam it passed 7.9 (24.4 GB, killed), and 1558M with Adafactor passed 3.9.
PEAK_WEIGHT_COPIES = {'adam': 8.5, 'adafactor': 4.5, 'sgd': 4.5}


def check_optimizer_memory(c, hparams):
    """Refuse, before loading anything, a CPU run that would run out of memory in its
    first steps (774M with Adam, 1558M with anything, on 24 GB)."""
    if tf.config.list_physical_devices('GPU'):
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


def cpu_has_bfloat16():
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            flags = next((line for line in f if line.startswith('flags')), '').split()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def choose_precision(c):
    """(dtype of the matrix products, reason): bfloat16 on CPUs with bf16 instructions and
    on GPUs of compute capability 8.0 (Ampere) and later, float32 elsewhere."""
    if c.precision != 'auto':
        return tf.as_dtype(c.precision), 'as asked'
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            'compute_capability', (0, 0))
        dtype = tf.bfloat16 if tuple(capability) >= (8, 0) else tf.float32
        return dtype, f'GPU compute capability {capability[0]}.{capability[1]}'
    if cpu_has_bfloat16():
        return tf.bfloat16, 'this CPU has bfloat16 instructions'
    return tf.float32, 'this CPU has no bfloat16 instructions'
