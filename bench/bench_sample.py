#!/usr/bin/env python3
"""Sampling speed of the 124M shape: tokens/s at batch 1 and 8 for 512 new tokens, against
the float32 weight-streaming bound measured in the same process (batch-1 sampling reads
every weight once per token).

    PYTHONPATH=src python bench/bench_sample.py [--length 512] [--batch_sizes 1,8]
"""

import argparse
import os

import numpy as np
import tensorflow as tf
from common import median_time, random_model, report

import model_dir
import sample

tf1 = tf.compat.v1


def stream_gb_per_s():
    """A float32 matrix-vector product over 256 MB of weights, in TensorFlow."""
    with tf.Graph().as_default(), tf1.Session() as sess:
        w = tf1.Variable(tf.random.normal([4096, 16384]))
        x = tf1.placeholder(tf.float32, [1, 4096])
        y = tf.reduce_sum(tf.matmul(x, w))
        sess.run(w.initializer)
        feed = {x: np.ones([1, 4096], np.float32)}
        seconds = median_time(lambda: [sess.run(y, feed) for _ in range(20)], runs=5)
    return 20 * 4096 * 16384 * 4 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--length', type=int, default=512)
    parser.add_argument('--batch_sizes', default='1,8')
    args = parser.parse_args()
    models_dir, name = random_model()
    hparams, enc, ckpt = model_dir.load(name, models_dir)
    weight_gb = os.path.getsize(ckpt + '.data-00000-of-00001') / 1e9
    bound = stream_gb_per_s() / weight_gb
    for batch_size in map(int, args.batch_sizes.split(',')):
        with tf.Graph().as_default(), tf1.Session() as sess:
            gen = sample.Generator(hparams, batch_size, top_k=40)
            model_dir.restore(sess, ckpt)
            start = [[enc.eot_token]] * batch_size
            seconds = median_time(lambda gen=gen, sess=sess, start=start: gen.generate(
                sess, start, args.length), runs=3)
        tokens_per_s = batch_size * args.length / seconds
        report(f'sample_batch{batch_size}_tokens_per_s', tokens_per_s, 'tokens/s',
               length=args.length, float32_stream_bound_tokens_per_s=round(bound, 1),
               ratio_vs_stream_bound=round(tokens_per_s / batch_size / bound, 2))


if __name__ == '__main__':
    main()
