#!/usr/bin/env python3
"""What decoding in bfloat16 costs in quality: a small model fine-tuned on the jokes
(not random weights), its held-out loss per token through the decoder in float32 and in
bfloat16.

- a model of --layers x --width (n_ctx 128, GPT-2's vocabulary) trained --steps steps
  on stupidstuff.json (the project's jokes; JOKES_JSON or ../shared/data), 5% held out;
- --windows windows of 128 held-out tokens scored one step at a time, as decoding runs.

    PYTHONPATH=src python bench/bench_precision.py [--steps 600]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from common import ROOT, report, vocab_dir

from gpt2tune.data.load_dataset import load_dataset
from gpt2tune.generate import numpy_model
from gpt2tune.model import model_dir


def jokes_json():
    for path in (os.environ.get('JOKES_JSON'),
                 os.path.join(ROOT, '..', 'shared', 'data', 'stupidstuff.json')):
        if path and os.path.isfile(path):
            return path
    sys.exit('bench: set JOKES_JSON to stupidstuff.json')


def command(*args, cwd):
    subprocess.run([sys.executable, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src')))


def fine_tuned(work, args):
    """A run folder trained on the jokes, and the held-out text's path."""
    command('-m', 'gpt2tune.commands.init_model', 'models/small', '--vocab_dir',
            vocab_dir(), '--n_layer', str(args.layers), '--n_embd', str(args.width),
            '--n_head', str(args.width // 32), '--n_ctx', '128', cwd=work)
    command(os.path.join(ROOT, 'prepare_jokes.py'), jokes_json(), '-o', 'train.txt',
            '--val_fraction', '0.05', '--val_output', 'val.txt', cwd=work)
    command(os.path.join(ROOT, 'encode.py'), '--model_name', 'small', 'train.txt',
            'train.npz', cwd=work)
    command(os.path.join(ROOT, 'train.py'), '--dataset', 'train.npz', '--model_name', 'small',
            '--steps', str(args.steps), '--batch_size', '8', '--learning_rate', '1e-3',
            '--sample_every', str(args.steps + 1), '--save_every', str(args.steps),
            '--run_name', 'jokes', cwd=work)
    return os.path.join(work, 'val.txt')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=600)
    parser.add_argument('--layers', type=int, default=4)
    parser.add_argument('--width', type=int, default=256)
    parser.add_argument('--windows', type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        val = fine_tuned(work, args)
        loaded = model_dir.load('jokes', os.path.join(work, 'checkpoint'))
        arrays = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
        held_out = np.concatenate(load_dataset(loaded.encoder, val, 0))
        n = loaded.hparams.n_ctx
        tokens = held_out[:args.windows * n].reshape(args.windows, n)
        losses = {}
        for precision in ('float32', 'bfloat16'):
            forward = numpy_model.Forward(arrays, loaded.hparams, precision)
            losses[precision] = numpy_model.next_token_losses(forward, tokens)
            forward.close()
    exact, low = losses['float32'], losses['bfloat16']
    report('decode_held_out_loss_bfloat16_minus_float32', low.mean() - exact.mean(), 'nats',
           difference=float(f'{low.mean() - exact.mean():.2e}'),
           float32_loss=round(exact.mean(), 4), bfloat16_loss=round(low.mean(), 4),
           tokens=exact.size, steps_trained=args.steps, model=f'{args.layers}x{args.width}',
           target_below=0.01)


if __name__ == '__main__':
    main()
