#!/usr/bin/env python3
"""Training speed and memory of the 124M shape: tokens/s, MFU against a matmul peak of
the same precision measured in the same process, and peak RSS (batch 1 x 1024, Adam).

    PYTHONPATH=src python bench/bench_train.py [--precision auto|float32|bfloat16]
"""

import argparse

import numpy as np
import tensorflow as tf
from common import median_time, peak_rss_gb, random_model, report

from gpt2tune.model import model_dir
from gpt2tune.model.hparams import variable_shapes
from gpt2tune.train.train_config import PRECISIONS, TrainConfig
from gpt2tune.train.train_graph import open_train_step, step_choices

tf1 = tf.compat.v1


def matmul_peak_flops(dtype, n=4096):
    """FLOP/s of a large matrix product in `dtype`, measured here and now."""
    with tf.Graph().as_default(), tf1.Session() as sess:
        a = tf1.Variable(tf.cast(tf.random.normal([n, n]), dtype))
        b = tf1.Variable(tf.cast(tf.random.normal([n, n]), dtype))
        y = tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))
        sess.run(tf1.global_variables_initializer())
        seconds = median_time(lambda: sess.run(y), runs=5)
    return 2 * n ** 3 / seconds


def flops_per_token(hparams):
    """6 N plus attention's 12 L E T (PaLM's accounting), N without position embeddings."""
    shapes = variable_shapes(hparams)
    n = sum(int(np.prod(s)) for s in shapes.values()) - hparams.n_ctx * hparams.n_embd
    return 6 * n + 12 * hparams.n_layer * hparams.n_embd * hparams.n_ctx


def measure(hparams, ckpt, batch_size, steps, precision):
    """Seconds per step and peak RSS of training in a fresh process state."""
    c = TrainConfig(dataset='-', batch_size=batch_size, precision=precision)
    choices = step_choices(c, hparams)
    t = open_train_step(hparams, c, choices, checkpoint=ckpt)  # as train.py opens it
    try:
        rs = np.random.RandomState(0)
        tokens = rs.randint(0, hparams.n_vocab, [batch_size, hparams.n_ctx])
        feed = {t.g.context: tokens, t.g.lr: 1e-5}
        seconds = median_time(lambda: t.sess.run(t.g.train_op, feed), runs=steps, warmup=2)
    finally:
        t.close()
    return seconds, choices.dtype, choices.recompute


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--batch_size', type=int, default=1)
    parser.add_argument('--precision', default='auto', choices=PRECISIONS)
    args = parser.parse_args()
    models_dir, name = random_model()
    loaded = model_dir.load(name, models_dir)
    hparams = loaded.hparams
    seconds, dtype, recompute = measure(hparams, loaded.checkpoint, args.batch_size, args.steps,
                                        args.precision)
    peak = matmul_peak_flops(dtype)
    tokens_per_s = args.batch_size * hparams.n_ctx / seconds
    report(f'train_tokens_per_s_{args.precision}', tokens_per_s, 'tokens/s',
           seconds_per_step=round(seconds, 3), batch=f'{args.batch_size}x{hparams.n_ctx}',
           precision=dtype.name, memory_saving_gradients=recompute,
           mfu=round(tokens_per_s * flops_per_token(hparams) / peak, 3),
           matmul_peak_gflops=round(peak / 1e9), peak_rss_gb=round(peak_rss_gb(), 2))


if __name__ == '__main__':
    main()
