#!/usr/bin/env python3
"""Sampling from the large GPT-2 shapes on this machine: for each size and precision, a
process that loads the model (random weights in the release layout) and samples
`--length` tokens at batch 1 and at batch 8 through the API; its peak RSS (loading
included) and tokens/s, with int8's ratio to float32's of the same size.

    PYTHONPATH=src python bench/bench_sample_large.py [--sizes 1558M] [--precisions
        float32,int8] [--length 32]

Slow (a random 6 GB model is written once into .bench-cache; loading it takes a minute),
so not part of `make bench`: run `make bench-large`.
"""

import argparse
import json
import os
import subprocess
import sys

from common import ROOT, random_model, report

CHILD = '''
import json, sys, time
from gpt2tune.generate import generation
path, precision, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
gpt2 = generation.GPT2.load(path, batch_size=8, seed=0, precision=precision)
rates = {}
for batch in (1, 8):
    gpt2.generate('', nsamples=batch, length=2, stop_at_endoftext=False)  # warm-up
    start = time.perf_counter()
    gpt2.generate('', nsamples=batch, length=length, top_k=40, stop_at_endoftext=False)
    rates[batch] = batch * length / (time.perf_counter() - start)
print(json.dumps({'rates': rates, 'decoder': gpt2.forward.kernel.describe()}))
'''


def sample(path, precision, length):
    """({batch: tokens/s}, decoder, peak RSS in GB) of a process sampling `path`."""
    child = subprocess.Popen([sys.executable, '-c', CHILD, path, precision, str(length)],
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src')))
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f'bench: sampling {path} in {precision} failed')
    result = json.loads(output.strip().splitlines()[-1])
    return ({int(b): r for b, r in result['rates'].items()}, result['decoder'],
            usage.ru_maxrss / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='1558M')
    parser.add_argument('--precisions', default='float32,int8')
    parser.add_argument('--length', type=int, default=32)
    args = parser.parse_args()
    for size in args.sizes.split(','):
        models_dir, name = random_model(size)
        results = {p: sample(os.path.join(models_dir, name), p, args.length)
                   for p in args.precisions.split(',')}
        for precision, (rates, decoder, peak) in results.items():
            for batch, rate in rates.items():
                vs = ({'ratio_vs_float32': round(rate / results['float32'][0][batch], 2)}
                      if 'float32' in results else {})
                report(f'sample_{size}_batch{batch}_tokens_per_s', rate, 'tokens/s',
                       precision=precision, decoder=decoder, length=args.length, **vs)
            report(f'sample_{size}_peak_rss_gb', peak, 'GB', precision=precision,
                   target_below_gb=16 if precision == 'int8' else None)


if __name__ == '__main__':
    main()
