#!/usr/bin/env python3
"""Sampling speed of the 124M shape, as ratios to baselines measured in the same process:

- batch 1, 512 new tokens, against the weight-streaming bound: the time of one float32
  matrix-vector product over every weight matrix the decoder reads (NumPy/OpenBLAS, the
  fastest reader measured here), i.e. reading every weight once;
- batch 8 and batch 16 against batch 1, with the products in the kernel kernels.py
  chooses for this machine and, when that is not it, in the plain NumPy float32 path
  (the baseline), batches and kernels timed in turn, `--rounds` times, medians;
- a 500-token prompt (time to first token) against the time of 20 generated tokens;
- a step's breakdown: weight products, attention and the rest of the model, the choice
  of the next token; and TensorFlow's graph decoder (what a GPU uses) at batch 1.

    PYTHONPATH=src python bench/bench_sample.py [--length 512] [--rounds 3]
"""

import argparse
import statistics
import time

import decoding
import numpy as np
from common import median_time, random_model, report

import kernels
import model_dir
import numpy_model
import sample

BATCHES = (1, 8, 16)


def weight_products_seconds(weights, batch):
    """One step's products with every weight matrix, batch rows each."""
    matrices = [w for name, w in weights.items()
                if name.endswith('/w') or name == 'wte_t']
    rows = {m.shape[0]: np.ones([batch, m.shape[0]], np.float32) for m in matrices}
    return median_time(lambda: [kernels.multiply(rows[m.shape[0]], m) for m in matrices],
                       runs=10)


def batch_seconds(arrays, hparams, enc, chosen, args):
    """{(kernel, batch): median seconds per step} for the chosen kernel and the float32
    baseline, at batches 1, 8 and 16, timed in turn."""
    names = [chosen] + (['float32'] if chosen != 'float32' else [])
    weights = {kernel: numpy_model.prepare(arrays, kernel) for kernel in names}
    times = {}
    for _ in range(args.rounds):
        for kernel in names:
            def new_decoder(length, w=weights[kernel]):
                return decoding.CpuDecoder(w, hparams, length)
            for batch in BATCHES:
                times.setdefault((kernel, batch), []).append(
                    decode_seconds(new_decoder, enc, batch, args.length) / args.length)
    return weights, {key: statistics.median(t) for key, t in times.items()}


def report_batches(weights, steps, chosen, reason, bound, length):
    """Batch 1 against the stream bound, batches 8 and 16 against batch 1, per kernel."""
    for kernel in weights:
        one = steps[kernel, 1]
        role = 'chosen' if kernel == chosen else 'baseline (plain NumPy float32)'
        report('sample_batch1_tokens_per_s', 1 / one, 'tokens/s', kernel=kernel, role=role,
               reason=reason, length=length, stream_bound_tokens_per_s=round(1 / bound, 1),
               ratio_vs_stream_bound=round(bound / one, 2), target_ratio=0.8)
        for batch, target in ((8, 5), (16, 8)):
            step = steps[kernel, batch]
            report(f'sample_batch{batch}_tokens_per_s', batch / step, 'tokens/s',
                   kernel=kernel, role=role, length=length,
                   ratio_vs_batch1=round(one * batch / step, 2), target_ratio=target,
                   weight_products_ms=round(
                       weight_products_seconds(weights[kernel], batch) * 1e3, 1),
                   batch1_weight_products_ms=round(bound * 1e3, 1))


def decode_seconds(new_decoder, enc, batch, length):
    """Seconds for `length` tokens after <|endoftext|>, top-k 40, never stopping early."""
    options = sample.SamplingOptions(length=length, top_k=40, stop_at_endoftext=False)
    stopper = sample.Stopper(enc, options)
    rng = np.random.default_rng(0)
    sample.sample_batch(new_decoder(8), [[enc.eot_token]] * batch,
                        sample.SamplingOptions(length=8), rng, stopper)  # warm-up
    start = time.perf_counter()
    sample.sample_batch(new_decoder(length), [[enc.eot_token]] * batch, options, rng, stopper)
    return time.perf_counter() - start


def first_token_seconds(new_decoder, prompt):
    decoder = new_decoder(1)
    decoder.prefill([[50256] * 8])
    start = time.perf_counter()
    decoder.prefill([[50256] * prompt])
    return time.perf_counter() - start


def choice_seconds(batch, n_vocab):
    logits = np.random.default_rng(0).normal(size=[batch, n_vocab]).astype(np.float32)
    options = sample.SamplingOptions(top_k=40)
    rng = np.random.default_rng(0)
    return median_time(lambda: sample.choose(logits, options, rng), runs=20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--length', type=int, default=512)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--tensorflow_length', type=int, default=128)
    args = parser.parse_args()
    models_dir, name = random_model()
    loaded = model_dir.load(name, models_dir)
    hparams, enc = loaded.hparams, loaded.encoder
    arrays = model_dir.load_arrays(loaded.checkpoint, hparams)
    chosen, reason = kernels.choose_kernel()
    weights, steps = batch_seconds(arrays, hparams, enc, chosen, args)
    bound = weight_products_seconds(weights['float32'], 1)
    report_batches(weights, steps, chosen, reason, bound, args.length)
    one = steps[chosen, 1]
    new_decoder = decoding.cpu_decoders(arrays, hparams)
    first = first_token_seconds(new_decoder, 500)
    report('sample_first_token_after_500_s', first, 's',
           twenty_tokens_s=round(20 * one, 3), ratio_vs_twenty_tokens=round(
               first / (20 * one), 2), target_ratio=1)
    choose = choice_seconds(1, hparams.n_vocab)
    report('sample_batch1_step_breakdown_ms', one * 1e3, 'ms',
           weight_products_ms=round(bound * 1e3, 2),
           next_token_choice_ms=round(choose * 1e3, 2),
           attention_and_rest_ms=round((one - bound - choose) * 1e3, 2),
           outside_weight_products=round(1 - bound / one, 3), target=0.1)

    with decoding.tf1.Session(graph=decoding.tf.Graph()) as sess:
        graph = decoding.SamplingGraph(hparams)
        model_dir.restore(sess, loaded.checkpoint)
        tf_decoder = decoding.session_decoders(sess, hparams, graph)
        tf_one = decode_seconds(tf_decoder, enc, 1,
                                args.tensorflow_length) / args.tensorflow_length
    report('sample_batch1_tensorflow_graph_tokens_per_s', 1 / tf_one, 'tokens/s',
           length=args.tensorflow_length, cpu_decoder_speedup=round(tf_one / one, 2))


if __name__ == '__main__':
    main()
