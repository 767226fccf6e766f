"""Create a model directory with random weights (GPT-2's initialisation), release layout.

    gpt2tune-init models/tiny --vocab_dir models/124M --n_layer 2 --n_embd 64 \\
        --n_head 2 --n_ctx 128
    gpt2tune-init models/random-124M --vocab_dir models/124M --size 124M

For training from scratch, tests and benchmarks; n_vocab comes from the vocabulary.
"""

import os

import numpy as np

from gpt2tune import cli, errors, flags
from gpt2tune.data import encoder
from gpt2tune.model.hparams import SHAPES, HParams, variable_shapes


def parse_args(argv=None):
    parser = cli.FlagParser(description=__doc__.split('\n')[0])
    parser.add_argument('directory', help='Model directory to create (must not exist yet)')
    flags.add(parser, 'vocab_dir', required=True)
    flags.add(parser, 'size')
    parser.add_argument('--n_ctx', type=int, default=1024)
    parser.add_argument('--n_embd', type=int, default=768)
    parser.add_argument('--n_head', type=int, default=12)
    parser.add_argument('--n_layer', type=int, default=12)
    flags.add(parser, 'seed', default=0)  # the same weights each time, unless asked
    flags.add(parser, 'verbose')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.directory):
        raise errors.UserError(f'{args.directory}: already exists; choose a new directory')
    enc = encoder.load_encoder(args.vocab_dir)
    n_embd, n_head, n_layer = SHAPES[args.size] if args.size else (
        args.n_embd, args.n_head, args.n_layer)
    hparams = HParams(n_vocab=enc.n_vocab, n_ctx=args.n_ctx, n_embd=n_embd, n_head=n_head,
                      n_layer=n_layer)
    cli.start_tensorflow(args.verbose)  # --help and bad input need none of it
    from gpt2tune.model import model_dir

    model_dir.init_random(args.directory, hparams, args.vocab_dir, args.seed)
    n_params = sum(int(np.prod(s)) for s in variable_shapes(hparams).values())
    print(f'{args.directory}: {n_params:,} parameters, {hparams}')


if __name__ == '__main__':
    cli.run(main)
