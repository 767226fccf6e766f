"""What every benchmark shares: the machine, JSON output, medians, a 124M-shaped model."""

import json
import os
import platform
import resource
import statistics
import sys
import time

from gpt2tune.model.release import CHECKPOINT_STATE, ENCODER, ENDOFTEXT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get('BENCH_CACHE', os.path.join(ROOT, '.bench-cache'))


def machine():
    cpu = platform.processor() or 'unknown'
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return {'cpu': cpu, 'cores': os.cpu_count()}


def report(figure, value, unit, **extra):
    """One JSON line per figure, with the machine it was measured on."""
    print(json.dumps({'figure': figure, 'value': round(value, 3), 'unit': unit, **extra,
                      **machine()}), flush=True)


def median_time(fn, runs=3, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_gb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 2**20  # Linux reports KiB


def vocab_dir():
    for path in (os.environ.get('GPT2_VOCAB_DIR'), os.path.join(ROOT, '..', 'shared',
                                                                 'gpt2-vocab')):
        if path and os.path.isfile(os.path.join(path, ENCODER)):
            return path
    sys.exit('bench: set GPT2_VOCAB_DIR to a directory with GPT-2\'s encoder.json/vocab.bpe')


def random_model(size='124M'):
    """(models_dir, name) of a model with random weights, made once: a released shape, or
    'tiny' (2 layers, 32 wide, n_ctx 64) for timing what is not the model."""
    name = f'random-{size}'
    if not os.path.isfile(os.path.join(CACHE, name, CHECKPOINT_STATE)):
        from gpt2tune import cli
        cli.start_tensorflow()
        from gpt2tune.model.hparams import SIZES, HParams
        from gpt2tune.model.model_dir import init_random
        n_embd, n_head, n_layer = SIZES[size] if size != 'tiny' else (32, 2, 2)
        n_ctx = 64 if size == 'tiny' else 1024
        print(f'bench: writing {name} into {CACHE}', file=sys.stderr)
        init_random(os.path.join(CACHE, name),
                    HParams(n_embd=n_embd, n_head=n_head, n_layer=n_layer, n_ctx=n_ctx),
                    vocab_dir())
    return CACHE, name


def jokes_text():
    """The real jokes (JOKES_JSON, or ../shared beside the project), each ended by
    <|endoftext|>."""
    path = os.environ.get('JOKES_JSON', os.path.join(ROOT, '..', 'shared', 'data',
                                                     'stupidstuff.json'))
    with open(path, encoding='utf-8') as f:
        return ENDOFTEXT.join(j['body'] for j in json.load(f)) + ENDOFTEXT
