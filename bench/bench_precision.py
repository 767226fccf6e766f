#!/usr/bin/env python3
"""What decoding in bfloat16 and in int8 costs in quality: a small model fine-tuned on the
jokes (not random weights), its held-out loss per token through the decoder in each
precision against float32, and how often greedy decoding agrees with float32's.

- a model of --layers x --width (n_ctx 128, GPT-2's vocabulary) trained --steps steps
  on stupidstuff.json (the project's jokes; JOKES_JSON or ../shared/data), 5% held out;
- --windows windows of 128 held-out tokens scored one step at a time, as decoding runs;
- greedy continuations (--greedy_tokens) of --prompts held-out prompts (each window's first
  16 tokens): the share identical to float32's, and the mean number of tokens before the
  first difference.

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
from gpt2tune.generate import generation, numpy_model
from gpt2tune.model import model_dir

PRECISIONS = ('float32', 'bfloat16', 'int8')  # the first, the reference
TARGETS = {'bfloat16': 0.01, 'int8': 0.02}  # nats of held-out loss over float32's


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
    parser.add_argument('--prompts', type=int, default=32)
    parser.add_argument('--greedy_tokens', type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        val = fine_tuned(work, args)
        loaded = model_dir.load('jokes', os.path.join(work, 'checkpoint'))
        arrays = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
        held_out = np.concatenate(load_dataset(loaded.encoder, val, 0))
        n = loaded.hparams.n_ctx
        tokens = held_out[:args.windows * n].reshape(args.windows, n)
        prompts = [w[:16].tolist() for w in held_out[:args.prompts * n].reshape(-1, n)]
        losses, greedy = {}, {}
        for precision in PRECISIONS:
            forward = numpy_model.Forward(arrays, loaded.hparams, precision)
            losses[precision] = numpy_model.next_token_losses(forward, tokens)
            forward.close()
            gpt2 = generation.GPT2.load(loaded.path, precision=precision, batch_size=8)
            greedy[precision] = gpt2.generate(prompts, length=args.greedy_tokens, top_k=1,
                                              return_tokens=True, stop_at_endoftext=False)
            gpt2.close()
    exact = losses['float32']
    for precision in PRECISIONS[1:]:
        low = losses[precision]
        same = [next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b),
                     len(ours)) for ours, theirs in zip(greedy[precision], greedy['float32'],
                                                        strict=True)]
        report(f'decode_held_out_loss_{precision}_minus_float32', low.mean() - exact.mean(),
               'nats', difference=float(f'{low.mean() - exact.mean():.2e}'),
               float32_loss=round(exact.mean(), 4), loss=round(low.mean(), 4),
               tokens=exact.size, steps_trained=args.steps, model=f'{args.layers}x{args.width}',
               target_below=TARGETS[precision],
               greedy_identical_share=round(sum(s == args.greedy_tokens for s in same)
                                            / len(same), 3),
               greedy_tokens_before_first_difference=round(float(np.mean(same)), 1),
               greedy_prompts=len(same), greedy_tokens=args.greedy_tokens)


if __name__ == '__main__':
    main()
