"""How much memory a CPU training step needs, and the check that refuses, before any
weight loads, a run that will not fit. The estimate is a sum of named parts, each a
count of bytes times copies fitted (5% to spare) to the peaks bench/bench_large.py
measured for 124M, 774M and 1558M, Adam and Adafactor, with and without LoRA, each
precision forced (docs/performance.md has the figures):

- fixed: TensorFlow, the data, the graph;
- weights not trained, as held: float32, or a LoRA run's frozen matrices in the products'
  dtype (model.conv1d), with the temporaries of their products;
- trained: each trained weight and its gradient (the embedding's, dense, costs more);
- optimizer: its state and update temporaries (each optimizer's weight_copies, in
  optimizers.py);
- activations: what a step keeps for its backward pass (all of it, or with recomputation
  each block's input and one block's inside), smaller with bfloat16 products.

A bfloat16 product casts its float32 weight as its block runs (model.matmul): one block's
casts at a time, within the activations' part.

    need = training_memory(c, hparams, 'adam')     # a Need: .total, .parts, .n_params
    check_optimizer_memory(c, hparams)             # raises UserError, with advice
"""

import dataclasses

import numpy as np

from gpt2tune import resources
from gpt2tune.errors import UserError
from gpt2tune.model import lora
from gpt2tune.model.hparams import SIZES, HParams, variable_shapes
from gpt2tune.train.optimizers import OPTIMIZERS
from gpt2tune.train.train_config import is_trained

FIXED_BYTES = 0.5 * 2**30
# Copies of each weight not trained, held in float32 or in the products' dtype; of each
# trained weight (itself and its gradient); of the embedding's gradient when it trains.
FROZEN_COPIES = 1.22
FROZEN_LOW_COPIES = 1.91
TRAINED_COPIES = 1.28
EMBEDDING_GRADIENT_COPIES = 4.26
# Of activation_bytes (float32 bytes), by recomputation and the products' dtype.
ACTIVATION_COPIES = {(False, 'float32'): 0.88, (False, 'bfloat16'): 0.75,
                     (True, 'float32'): 0.79, (True, 'bfloat16'): 0.29}
LORA_ADVICE_RANK = 8


@dataclasses.dataclass(frozen=True)
class Need:
    parts: dict  # part -> bytes
    n_params: int
    dtype: str  # the products'

    @property
    def total(self):
        return sum(self.parts.values())

    def describe(self):
        return ', '.join(f'{name} {b / 2**30:.1f}' for name, b in self.parts.items() if b)


def activation_bytes(c, hparams):
    """float32 bytes a step keeps for its backward pass: about 34 values per token and
    width per layer, plus 5 per token and head for each attended position (Korthikanti
    et al.), and the logits."""
    tokens = c.batch_size * hparams.n_ctx
    per_layer = 4 * tokens * (34 * hparams.n_embd + 5 * hparams.n_head * hparams.n_ctx) / 2
    return hparams.n_layer * per_layer + 12 * tokens * hparams.n_vocab


def kept_activations(c, hparams, recompute):
    """What a step keeps for its backward pass: every block's (activation_bytes), or with
    recomputation each block's float32 input and one block's activations."""
    if not recompute:
        return activation_bytes(c, hparams)
    tokens = c.batch_size * hparams.n_ctx
    one_block = dataclasses.replace(hparams, n_layer=1)
    return 4 * tokens * hparams.n_embd * hparams.n_layer + activation_bytes(c, one_block)


def choose_memory_saving(c, hparams):
    """Recompute each block in the backward pass when the activations of a step would
    take more than a quarter of this machine's memory. Returns (choice, reason)."""
    if c.memory_saving_gradients is not None:
        return c.memory_saving_gradients, 'as asked'
    activations = activation_bytes(c, hparams)
    memory = resources.physical_memory()
    if resources.gpus():
        memory = 8 << 30  # a conservative guess: TensorFlow cannot tell before allocating
    choice = activations > memory / 4
    return choice, f'activations about {activations / 2**30:.1f} GB, memory {memory / 2**30:.0f} GB'


def training_memory(c, hparams, optimizer):
    """The expected peak (a Need) of a CPU training step of `c` with `optimizer`, in the
    products' dtype c.precision resolves to on this machine."""
    dtype = resources.choose_precision(c.precision)[0].name
    adapters = lora.from_config(c)
    sizes = {name: int(np.prod(s)) for name, s in variable_shapes(hparams).items()}
    trained = {n for n in sizes if is_trained(c, n, hparams.n_layer)}
    # Held in the products' dtype: what model.conv1d holds so (a LoRA run's frozen matrices).
    low = {n for n in sizes if adapters and dtype != 'float32' and n.endswith('/w')
           and n not in trained and adapters.frozen(n)}
    n_trained = sum(sizes[n] for n in trained)
    n_trained += sum(int(np.prod(s)) for s in (adapters.shapes(hparams).values()
                                               if adapters else ()))
    n_frozen = sum(sizes[n] for n in sizes if n not in trained and n not in low)
    n_low = sum(sizes[n] for n in low)
    n_embedding = sizes['model/wte'] if 'model/wte' in trained else 0
    recompute = choose_memory_saving(c, hparams)[0]
    activations = ACTIVATION_COPIES[recompute, 'float32' if dtype == 'float32' else 'bfloat16']
    parts = {
        'fixed': FIXED_BYTES,
        'weights': 4 * FROZEN_COPIES * n_frozen + 2 * FROZEN_LOW_COPIES * n_low,
        'trained': 4 * (TRAINED_COPIES * n_trained + EMBEDDING_GRADIENT_COPIES * n_embedding),
        'optimizer': 4 * OPTIMIZERS[optimizer].weight_copies * n_trained,
        'activations': activations * kept_activations(c, hparams, recompute),
    }
    return Need(parts, sum(sizes.values()), dtype)


def check_optimizer_memory(c, hparams):
    """Refuse (or with --memory_check warn, warn of), before loading anything, a CPU run
    that would run out of memory in its first steps, saying what would fit."""
    if resources.gpus():
        return
    need = training_memory(c, hparams, c.optimizer)
    memory = resources.physical_memory()
    if need.total <= memory:
        return
    fits = what_fits(c, hparams, memory)
    advice = ('use ' + ' or '.join(fits) if fits else
              'lower --batch_size, or use a machine with more memory')
    message = (f'--optimizer {c.optimizer}: training {need.n_params / 1e6:.0f}M parameters at '
               f'batch {c.batch_size} x {hparams.n_ctx} in {need.dtype} needs about '
               f'{need.total / 2**30:.1f} GB ({need.describe()}), more than this machine\'s '
               f'{memory / 2**30:.1f} GB; {advice}')
    if c.memory_check == 'warn':
        print(f'warning: {message} (going on: --memory_check warn)')
        return
    raise UserError(f'{message} (--memory_check warn tries anyway)')


def what_fits(c, hparams, memory):
    """The runs like c that fit `memory`, each as its flags and estimate: another
    optimizer, LoRA, the other precision, the largest smaller released size."""
    runs = []
    if c.optimizer == 'adam':
        runs.append(('--optimizer adafactor', training_memory(c, hparams, 'adafactor')))
    if not c.lora_rank:
        adapted = dataclasses.replace(c, lora_rank=LORA_ADVICE_RANK, layers_to_train=0,
                                      only_train_transformer_layers=False, also_train='')
        runs.append((f'--lora_rank {LORA_ADVICE_RANK}',
                     training_memory(adapted, hparams, c.optimizer)))
    other = 'bfloat16' if resources.choose_precision(c.precision)[0].name == 'float32' \
        else 'float32'
    runs.append((f'--precision {other}',
                 training_memory(dataclasses.replace(c, precision=other), hparams, c.optimizer)))
    smaller = [(size, HParams(n_vocab=hparams.n_vocab, n_ctx=hparams.n_ctx, n_embd=n_embd,
                              n_head=n_head, n_layer=n_layer))
               for size, (n_embd, n_head, n_layer) in SIZES.items()
               if n_embd * n_layer < hparams.n_embd * hparams.n_layer]
    for size, shape in reversed(smaller):  # the largest that fits
        need = training_memory(c, shape, c.optimizer)
        if need.total <= memory:
            runs.append((f'a smaller model ({size})', need))
            break
    return [f'{flags} (about {need.total / 2**30:.1f} GB)' for flags, need in runs
            if need.total <= memory]
