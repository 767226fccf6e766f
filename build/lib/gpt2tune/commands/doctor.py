"""Self-check: what this machine offers for GPT-2, the choices train.py would make on it
for each model size, and one real training step and a few sampled tokens on a random
model. Paste its output into a bug report.

    make doctor                              # a random 124M model in a temporary folder
    gpt2tune-doctor --size tiny --vocab_dir models/117M   # seconds

The vocabulary comes from --vocab_dir, GPT2_VOCAB_DIR or models/117M (or 124M); only its
encoder.json and vocab.bpe are read.
"""

import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

from gpt2tune import cli, errors, flags
from gpt2tune.data import encoder
from gpt2tune.model.hparams import SHAPES, SIZES, HParams, variable_shapes
from gpt2tune.model.release import CHECKPOINT, VOCAB_FILES
from gpt2tune.train.optimizers import OPTIMIZERS
from gpt2tune.train.train_config import TrainConfig

CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile')
SAMPLED_TOKENS = 16


def parse_args(argv=None):
    p = cli.FlagParser(description=__doc__.split('\n')[0])
    flags.add(p, 'size', default='124M')
    flags.add(p, 'vocab_dir', 'verbose')
    return p.parse_args(argv)


def find_vocabulary(vocab_dir):
    candidates = [vocab_dir] if vocab_dir else [os.environ.get('GPT2_VOCAB_DIR'),
                                                'models/117M', 'models/124M']
    for path in filter(None, candidates):
        if all(os.path.isfile(os.path.join(path, f)) for f in VOCAB_FILES):
            return path
    raise errors.UserError(f'{vocab_dir or "models/117M"}: no {" and ".join(VOCAB_FILES)} '
                        'there; pass --vocab_dir (sh download_model.sh 117M fetches them)')


def print_system(tf, resources):
    features = [f for f in CPU_FEATURES if f in resources.cpu_flags()]
    print('== machine')
    print(f'python {platform.python_version()}, tensorflow {tf.__version__}, numpy '
          f'{np.__version__}, {platform.platform()}')
    print(f'cpu: {resources.cpu_model()}, {os.cpu_count()} cores, '
          f'{" ".join(features) or "none of " + " ".join(CPU_FEATURES)}')
    print(f'memory: {resources.physical_memory() / 2**30:.1f} GB (this machine\'s, or its '
          'container\'s limit)')
    print_devices(resources)


def print_devices(resources):
    """The start's device line and warning, the driver, and each GPU's free memory."""
    from gpt2tune import nvidia

    resources.report_devices(sys.stdout)
    version = nvidia.driver_version()
    print(f'nvidia driver: {version}' if version else 'nvidia driver: '
          + ('found, version unknown' if nvidia.driver_present() else
             f'none ({nvidia.VERSION_FILE} absent, no nvidia-smi on PATH)'))
    for gpu in resources.gpus():
        free = resources.gpu_free_memory(gpu)
        print(f'GPU:{resources.gpu_index(gpu)} free memory: '
              + (f'{free / 2**30:.1f} GB' if free is not None else 'unknown (no nvidia-smi)'))


def print_choices(resources, train_memory, n_vocab):
    """What train.py would choose for each released size at batch 1, and what fits."""
    dtype, reason = resources.choose_precision('auto')
    print('== choices (train.py at batch 1 x 1024)')
    print(f'precision: {dtype.name} matrix products ({reason})')
    on_gpu = bool(resources.gpus())
    memory = resources.gpu_free_memory(resources.gpus()[0]) if on_gpu else \
        resources.physical_memory()
    # Each optimizer training every weight, and training LoRA adapters of the rank the
    # memory check advises.
    runs = {f'{name}{label}': TrainConfig(dataset='-', optimizer=name, lora_rank=rank)
            for label, rank in (('', 0), ('+lora', train_memory.LORA_ADVICE_RANK))
            for name in OPTIMIZERS}
    fits = {run: None for run in runs}
    for size, (n_embd, n_head, n_layer) in SIZES.items():
        hparams = HParams(n_vocab=n_vocab, n_embd=n_embd, n_head=n_head, n_layer=n_layer)
        c = TrainConfig(dataset='-')
        recompute, why = train_memory.choose_memory_saving(c, hparams)
        line = f'{size}: memory_saving_gradients {"on" if recompute else "off"} ({why})'
        if memory is not None:
            needs = {run: train_memory.training_memory(config, hparams, config.optimizer).total
                     for run, config in runs.items()}
            for name, need in needs.items():
                if need <= memory:
                    fits[name] = size
            line += '; expected peak: ' + ', '.join(f'{name} {need / 2**30:.1f} GB'
                                                    for name, need in needs.items())
        print(line)
    if memory is None:
        print('largest that fits: not estimated (no nvidia-smi to read the GPU\'s free memory)')
    else:
        print('largest that fits: ' + ', '.join(f'{name} {size or "none"}'
                                                for name, size in fits.items())
              + (' (in GPU:0\'s free memory, from the CPU peaks)' if on_gpu else ''))


def time_training_step(hparams, checkpoint):
    """Seconds of the second step (the first includes graph optimisation), and the
    precision it ran in, for batch 1 x n_ctx with Adam."""
    from gpt2tune.train.train_graph import open_train_step, step_choices

    c = TrainConfig(dataset='-')
    choices = step_choices(c, hparams)
    t = open_train_step(hparams, c, choices, checkpoint=checkpoint)  # as train.py opens it
    try:
        tokens = np.random.default_rng(0).integers(0, hparams.n_vocab, [1, hparams.n_ctx])
        feed = {t.g.context: tokens, t.g.lr: 1e-5}
        t.sess.run(t.g.train_op, feed)
        start = time.perf_counter()
        loss = t.sess.run((t.g.train_op, t.g.step_loss), feed)[1]
        return time.perf_counter() - start, choices.dtype, float(loss)
    finally:
        t.close()


def print_run(size, vocab_dir, n_vocab):
    """One training step and a few sampled tokens on a random model of `size`."""
    from gpt2tune.generate import generation
    from gpt2tune.model import model_dir

    n_embd, n_head, n_layer = SHAPES[size]
    n_ctx = 128 if size == 'tiny' else 1024
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f'random-{size}')
        hparams = HParams(n_vocab=n_vocab, n_ctx=n_ctx, n_embd=n_embd, n_head=n_head,
                          n_layer=n_layer)
        n_params = sum(int(np.prod(s)) for s in variable_shapes(hparams).values())
        print(f'== a random {size} model ({n_params / 1e6:.1f}M parameters, n_ctx {n_ctx})')
        model_dir.init_random(path, hparams, vocab_dir)
        seconds, dtype, loss = time_training_step(hparams, os.path.join(path, CHECKPOINT))
        print(f'training step: {seconds:.2f} s, {n_ctx / seconds:.0f} tokens/s, batch 1 x '
              f'{n_ctx}, Adam, {dtype.name} products, loss {loss:.2f} (random weights: about '
              f'{np.log(hparams.n_vocab):.2f})')
        gpt2 = generation.GPT2.load(path, batch_size=1, seed=0)
        try:
            gpt2.generate('', length=SAMPLED_TOKENS, stop_at_endoftext=False)  # warm-up
            start = time.perf_counter()
            gpt2.generate('', length=SAMPLED_TOKENS, stop_at_endoftext=False)
            seconds = time.perf_counter() - start
            print(f'sampling: {SAMPLED_TOKENS} tokens in {seconds:.2f} s, '
                  f'{SAMPLED_TOKENS / seconds:.1f} tokens/s at batch 1 ({gpt2.describe()})')
        finally:
            gpt2.close()


def main(argv=None):
    args = parse_args(argv)
    vocab_dir = find_vocabulary(args.vocab_dir)
    tf = cli.start_tensorflow(args.verbose, report_devices=False)  # print_system reports
    from gpt2tune import resources
    from gpt2tune.train import train_memory

    n_vocab = encoder.load_encoder(vocab_dir).n_vocab
    print_system(tf, resources)
    print_choices(resources, train_memory, n_vocab)
    print_run(args.size, vocab_dir, n_vocab)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    print(f'peak memory of this check: {peak:.2f} GB')


if __name__ == '__main__':
    cli.run(main)
