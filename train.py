#!/usr/bin/env python3
"""Fine-tune GPT-2 on your own text.

    PYTHONPATH=src ./train.py --dataset input-text.txt.npz --sample_every=250 --save_every=250

Trains until Ctrl-C (or --steps), printing a line per step; saves checkpoint/<run_name>/
and writes samples/<run_name>/. `cp -r checkpoint/run1/* models/117M/` then lets the
sampling scripts use the fine-tuned model (or pass them --models_dir checkpoint
--model_name run1).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))

import cli  # noqa: E402
from train_config import TrainConfig  # noqa: E402
from training import train  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Fine-tune GPT-2 on your custom dataset.',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add('--dataset', metavar='PATH', type=str, required=True,
        help='Input file, directory, or glob pattern (utf-8 text, or preencoded .npz files).')
    add('--model_name', metavar='MODEL', type=str, default='117M', help='Pretrained model name')
    add('--models_dir', metavar='DIR', type=str, default='models',
        help='Directory holding the model directories')
    add('--combine', metavar='CHARS', type=int, default=50000,
        help='Concatenate input files with <|endoftext|> separator into chunks of this '
             'minimum size')
    add('--encoding', type=str, default='utf-8', help='Set the encoding for reading and '
                                                      'writing files.')
    add('--endoftext_as_text', action='store_true',
        help='Encode the text <|endoftext|> as five ordinary tokens, as the 2019 code did')
    add('--batch_size', metavar='SIZE', type=int, default=1,
        help='Batch size, per worker when training on several (TF_CONFIG)')
    add('--learning_rate', metavar='LR', type=float, default=0.00002,
        help='Learning rate for Adam')
    add('--accumulate_gradients', metavar='N', type=int, default=1,
        help='Accumulate gradients across N minibatches.')
    add('--memory_saving_gradients', action=argparse.BooleanOptionalAction, default=None,
        help='Recompute each block in the backward pass to save memory (default: chosen '
             'from the model size and the machine\'s memory)')
    add('--only_train_transformer_layers', action='store_true',
        help='Restrict training to the transformer blocks.')
    add('--optimizer', type=str, default='adam',
        help='Optimizer. <adam|adafactor|sgd>. adafactor keeps almost no state (for 1558M).')
    add('--noise', type=float, default=0.0,
        help='Add noise to input training data to regularize against typos.')
    add('--top_k', type=int, default=40, help='K for top-k sampling.')
    add('--top_p', type=float, default=0.0,
        help='P for top-p sampling of the training samples. Overrides top_k if set > 0.')
    add('--restore_from', type=str, default='latest',
        help='Either "latest", "fresh", or a path to a checkpoint file')
    add('--run_name', type=str, default='run1',
        help='Run id. Name of subdirectory in checkpoint/ and samples/')
    add('--sample_every', metavar='N', type=int, default=100,
        help='Generate samples every N steps')
    add('--sample_length', metavar='TOKENS', type=int, default=None,
        help='Sample this many tokens (default: n_ctx - 1, 1023 for released models)')
    add('--sample_num', metavar='N', type=int, default=1, help='Generate this many samples')
    add('--save_every', metavar='N', type=int, default=1000, help='Write a checkpoint every '
                                                                  'N steps')
    add('--val_dataset', metavar='PATH', type=str, default=None,
        help='Dataset for validation loss, defaults to --dataset.')
    add('--val_batch_size', metavar='SIZE', type=int, default=2,
        help='Batch size for validation.')
    add('--val_batch_count', metavar='N', type=int, default=40,
        help='Number of batches for validation.')
    add('--val_every', metavar='STEPS', type=int, default=0,
        help='Calculate validation loss every STEPS steps.')
    add('--steps', metavar='N', type=int, default=0,
        help='Stop and save once the run has trained N steps in all (0: until Ctrl-C)')
    add('--lr_schedule', choices=['constant', 'cosine', 'linear'], default='constant',
        help='Learning-rate schedule after warm-up; cosine and linear decay to --min_lr '
             'at --steps')
    add('--warmup_steps', metavar='N', type=int, default=0,
        help='Raise the learning rate linearly over the first N steps')
    add('--min_lr', metavar='LR', type=float, default=0.0,
        help='Learning rate at the end of a cosine or linear schedule')
    add('--grad_clip', metavar='NORM', type=float, default=0.0,
        help='Clip gradients to this global norm (0: off; 1.0 is a common choice)')
    add('--weight_decay', type=float, default=0.0,
        help='Decoupled (AdamW) weight decay on weight matrices and embeddings, not on '
             'biases and norms')
    add('--seed', type=int, default=None, help='Seed for reproducible runs')
    add('--pack', action='store_true',
        help='Fill each training window with whole documents (split on <|endoftext|>) '
             'instead of random windows that may start mid-document')
    add('--precision', choices=['auto', 'float32', 'bfloat16'], default='auto',
        help='Precision of the matrix products; weights, optimizer and the rest stay '
             'float32. auto: bfloat16 where the CPU or GPU has bfloat16 units')
    add('--collective_timeout', metavar='SECONDS', type=float, default=300.0,
        help='With several workers (TF_CONFIG): how long a step waits for the others '
             'before stopping with an error')
    add('--checkpoint_dir', type=str, default='checkpoint',
        help='Where run folders of checkpoints go')
    add('--sample_dir', type=str, default='samples', help='Where run folders of samples go')
    return p.parse_args(argv)


def main(argv=None):
    train(TrainConfig(**vars(parse_args(argv))))


if __name__ == '__main__':
    cli.run(main)
