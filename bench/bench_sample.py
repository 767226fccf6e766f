#!/usr/bin/env python3
"""Sampling speed of the 124M shape through the API (the decoding engine), in each
precision, as ratios to baselines measured in the same process:

- batches 1, 8 and 16, `--length` new tokens after <|endoftext|>, top-k 40, never
  stopping early, precisions and batches timed in turn, `--rounds` times, medians:
  tokens/s over all rows, against batch 1 of the same precision and against float32 at
  the same batch (the baseline);
- CTranslate2 (the fastest CPU engine we know; a benchmark-only dependency) on the same
  weights, exported for transformers and converted once: float32 and int8 at the same
  batches, timed in the same rounds, with our rate at the same batch as a ratio to its;
- a 500-token prompt (time to first token) against the time of 20 generated tokens.

    PYTHONPATH=src python bench/bench_sample.py [--length 128] [--rounds 3]
"""

import argparse
import os
import statistics
import time

from common import CACHE, random_model, report

from gpt2tune.generate import generation

BATCHES = (1, 8, 16)
PRECISIONS = ('float32', 'bfloat16', 'int8')
CT2_TYPES = ('float32', 'int8')


def tokens_per_second(gpt2, batch, length):
    gpt2.generate('', nsamples=batch, length=4, stop_at_endoftext=False)  # warm-up
    start = time.perf_counter()
    gpt2.generate('', nsamples=batch, length=length, top_k=40, stop_at_endoftext=False)
    return batch * length / (time.perf_counter() - start)


def ctranslate2_generators(path, name):
    """{compute type: ctranslate2.Generator} of the model at `path`, converted once into
    the benchmark cache (through our Hugging Face export)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from gpt2tune.commands import huggingface
    converted = os.path.join(CACHE, f'ctranslate2-{name}')
    if not os.path.isdir(converted):
        hf_dir = os.path.join(CACHE, f'hf-{name}')
        huggingface.export(path, hf_dir)
        TransformersConverter(hf_dir).convert(converted)
    return {t: ctranslate2.Generator(converted, device='cpu', compute_type=t,
                                     intra_threads=os.cpu_count())
            for t in CT2_TYPES}


def ctranslate2_tokens_per_second(generator, batch, length):
    def generate(n):
        results = generator.generate_batch([['<|endoftext|>']] * batch, max_length=n,
                                           min_length=n, sampling_topk=40,
                                           include_prompt_in_result=False)
        return sum(len(r.sequences_ids[0]) for r in results)
    generate(4)  # warm-up
    start = time.perf_counter()
    tokens = generate(length)
    return tokens / (time.perf_counter() - start)


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
    theirs = ctranslate2_generators(path, name)
    rates, their_rates = {}, {}
    for _ in range(args.rounds):
        for key, gpt2 in models.items():
            rates.setdefault(key, []).append(tokens_per_second(gpt2, key[1], args.length))
        for t, generator in theirs.items():
            for batch in BATCHES:
                their_rates.setdefault((t, batch), []).append(
                    ctranslate2_tokens_per_second(generator, batch, args.length))
    rates = {key: statistics.median(r) for key, r in rates.items()}
    their_rates = {key: statistics.median(r) for key, r in their_rates.items()}
    for (precision, batch), rate in rates.items():
        vs_theirs = ({f'ratio_vs_ctranslate2_{precision}':
                      round(rate / their_rates[precision, batch], 2)}
                     if precision in CT2_TYPES else {})
        report(f'sample_batch{batch}_tokens_per_s', rate, 'tokens/s', precision=precision,
               decoder=models[precision, batch].forward.kernel.describe(),
               length=args.length, ratio_vs_batch1=round(rate / rates[precision, 1], 2),
               ratio_vs_float32=round(rate / rates['float32', batch], 2), **vs_theirs)
    for (compute_type, batch), rate in their_rates.items():
        report(f'ctranslate2_batch{batch}_tokens_per_s', rate, 'tokens/s',
               compute_type=compute_type, length=args.length,
               ratio_vs_our_float32=round(rate / rates['float32', batch], 2))
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
