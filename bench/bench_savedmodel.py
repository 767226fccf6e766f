#!/usr/bin/env python3
"""Generation speed of the exported SavedModel (export_savedmodel.py, loaded with
tf.saved_model.load, its serving_default signature) against our API (generation.GPT2,
what the scripts use) in the same run: the 124M shape with random weights, batch 1 and
8, 512 new tokens after <|endoftext|>, top-k 40; batches and the two timed in turn,
`--rounds` times, medians.

    PYTHONPATH=src python bench/bench_savedmodel.py [--length 512] [--rounds 1]
"""

import argparse
import os
import statistics
import tempfile
import time

from common import random_model, report

from gpt2tune import cli

tf = cli.start_tensorflow()
from gpt2tune.commands import export_savedmodel  # noqa: E402
from gpt2tune.generate import generation  # noqa: E402

BATCHES = (1, 8)
TOP_K = 40


def savedmodel_seconds(generate, eot, batch, length):
    """(seconds, new tokens) of one call of the signature; rows may end at <|endoftext|>
    (the signature always ends a row there), so the tokens are counted."""
    inputs = {'prompt_ids': tf.fill([batch, 1], eot), 'prompt_lengths': tf.ones([batch],
                                                                               tf.int32),
              'max_new_tokens': tf.constant(length), 'temperature': tf.constant(1.0),
              'top_k': tf.constant(TOP_K), 'top_p': tf.constant(1.0),
              'seed': tf.constant(batch, tf.int64)}
    start = time.perf_counter()
    lengths = generate(**inputs)['new_lengths'].numpy()
    seconds = time.perf_counter() - start
    # A row that ended generated its tokens and <|endoftext|>; the loop ran on for the rest.
    return seconds, int(sum(min(n + 1, length) for n in lengths))


def api_seconds(api, eot, batch, length):
    start = time.perf_counter()
    samples = api.generate([[eot]] * batch, length=length, top_k=TOP_K,
                           stop_at_endoftext=False, return_tokens=True)
    return time.perf_counter() - start, sum(len(s) for s in samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--length', type=int, default=512)
    parser.add_argument('--rounds', type=int, default=1)
    args = parser.parse_args()
    models_dir, name = random_model()
    path = os.path.join(models_dir, name)
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, 'savedmodel')
        export_savedmodel.main([path, out])
        generate = tf.saved_model.load(out).signatures['serving_default']
        api = generation.GPT2.load(path, batch_size=max(BATCHES), seed=0)
        eot = api.encoder.eot_token
        for batch in BATCHES:  # warm-up: tracing, the first calls of each batch shape
            savedmodel_seconds(generate, eot, batch, 4)
            api_seconds(api, eot, batch, 4)
        rates = {}
        for _ in range(args.rounds):
            for batch in BATCHES:
                for who, run in (('savedmodel', lambda b: savedmodel_seconds(
                        generate, eot, b, args.length)),
                                 ('api', lambda b: api_seconds(api, eot, b, args.length))):
                    seconds, tokens = run(batch)
                    rates.setdefault((who, batch), []).append(tokens / seconds)
        api.close()
    for batch in BATCHES:
        ours = statistics.median(rates['savedmodel', batch])
        theirs = statistics.median(rates['api', batch])
        report(f'savedmodel_batch{batch}_tokens_per_s', ours, 'tokens/s', length=args.length,
               top_k=TOP_K, rounds=args.rounds, api_tokens_per_s=round(theirs, 2),
               ratio_vs_api=round(ours / theirs, 2))


if __name__ == '__main__':
    main()
