#!/usr/bin/env python3
"""Sampling speed of the 124M shape through the API (the decoding engine), in each
precision, as ratios to baselines measured in the same process:

- batches 1, 8 and 16, `--length` new tokens after <|endoftext|>, top-k 40, never
  stopping early, precisions and batches timed in turn, `--rounds` times, medians:
  tokens/s over all rows, against batch 1 of the same precision and against float32 at
  the same batch (the baseline);
- a 500-token prompt (time to first token) against the time of 20 generated tokens.

    PYTHONPATH=src python bench/bench_sample.py [--length 128] [--rounds 3]
"""

import argparse
import os
import statistics
import time

from common import random_model, report

from gpt2tune.generate import generation

BATCHES = (1, 8, 16)
PRECISIONS = ('float32', 'bfloat16')


def tokens_per_second(gpt2, batch, length):
    gpt2.generate('', nsamples=batch, length=4, stop_at_endoftext=False)  # warm-up
    start = time.perf_counter()
    gpt2.generate('', nsamples=batch, length=length, top_k=40, stop_at_endoftext=False)
    return batch * length / (time.perf_counter() - start)


def first_token_seconds(gpt2, prompt):
    start = time.perf_counter()
    gpt2.generate([[gpt2.encoder.eot_token] * prompt], length=1)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--length', type=int, default=128)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    models_dir, name = random_model()
    path = os.path.join(models_dir, name)
    models = {(p, b): generation.GPT2.load(path, batch_size=b, seed=0, precision=p)
              for p in PRECISIONS for b in BATCHES}
    rates = {}
    for _ in range(args.rounds):
        for key, gpt2 in models.items():
            rates.setdefault(key, []).append(tokens_per_second(gpt2, key[1], args.length))
    rates = {key: statistics.median(r) for key, r in rates.items()}
    for (precision, batch), rate in rates.items():
        report(f'sample_batch{batch}_tokens_per_s', rate, 'tokens/s', precision=precision,
               decoder=models[precision, batch].forward.kernel.describe(),
               length=args.length, ratio_vs_batch1=round(rate / rates[precision, 1], 2),
               ratio_vs_float32=round(rate / rates['float32', batch], 2))
    for precision in PRECISIONS:
        gpt2 = models[precision, 1]
        first_token_seconds(gpt2, 8)  # warm-up
        first = first_token_seconds(gpt2, 500)
        twenty = 20 / rates[precision, 1]
        report('sample_first_token_after_500_s', first, 's', precision=precision,
               twenty_tokens_s=round(twenty, 3), ratio_vs_twenty_tokens=round(first / twenty, 2))
    for gpt2 in models.values():
        gpt2.close()


if __name__ == '__main__':
    main()
