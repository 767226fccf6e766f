"""What every benchmark shares: the machine, JSON output, medians, a 124M-shaped model."""

import json
import os
import platform
import resource
import statistics
import sys
import time

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
        if path and os.path.isfile(os.path.join(path, 'encoder.json')):
            return path
    sys.exit('bench: set GPT2_VOCAB_DIR to a directory with GPT-2\'s encoder.json/vocab.bpe')


def random_model(size='124M'):
    """(models_dir, name) of a model of a released shape with random weights, made once."""
    name = f'random-{size}'
    if not os.path.isfile(os.path.join(CACHE, name, 'checkpoint')):
        from init_model import SIZES
        from model import HParams
        from model_dir import init_random
        n_embd, n_head, n_layer = SIZES[size]
        print(f'bench: writing {name} into {CACHE}', file=sys.stderr)
        init_random(os.path.join(CACHE, name),
                   HParams(n_embd=n_embd, n_head=n_head, n_layer=n_layer), vocab_dir())
    return CACHE, name
