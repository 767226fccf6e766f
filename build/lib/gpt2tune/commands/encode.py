"""Pre-encode text files into a tokenized training set.

    PYTHONPATH=src ./encode.py input-text.txt input-text.txt.npz

Text files are joined by <|endoftext|> (GPT-2's own token 50256) into arrays of at least
--combine characters; train.py loads the resulting .npz directly.
"""

import argparse
import os

import tqdm

from gpt2tune import cli, errors
from gpt2tune.data import encoder
from gpt2tune.data.load_dataset import (
    NpzTokenWriter,
    check_paths,
    expand_paths,
    iter_token_groups,
    token_dtype,
)
from gpt2tune.train.train_config import add_settings


def parse_args(argv=None):
    parser = cli.FlagParser(
        description='Pre-encode text files into tokenized training set.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # As train.py takes them: the same defaults and help (a .npz encoded here trains there).
    add_settings(parser, ('model_name', 'models_dir', 'combine', 'encoding',
                          'endoftext_as_text'))
    parser.add_argument('--encoding_errors', choices=['strict', 'replace', 'ignore'],
                        default='strict', help='What to do with bytes that are not valid '
                                               'in --encoding')
    parser.add_argument('in_text', metavar='PATH', type=str,
                        help='Input file, directory, or glob pattern (utf-8 text).')
    parser.add_argument('out_npz', metavar='OUT.npz', type=str, help='Output file path')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_path = args.out_npz if args.out_npz.endswith('.npz') else args.out_npz + '.npz'
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir):
        raise errors.UserError(f'{out_path}: output directory {out_dir} does not exist')
    if args.combine < 0:
        raise errors.UserError(f'--combine {args.combine}: must be 0 or more characters')
    enc = encoder.get_encoder(args.model_name, args.models_dir,
                              allow_special=not args.endoftext_as_text)
    paths = expand_paths(args.in_text)
    check_paths(paths, args.encoding, args.encoding_errors)
    print('Reading files')
    writer = NpzTokenWriter(out_path, token_dtype(enc.n_vocab))
    done = False
    try:
        total = sum(os.path.getsize(p) for p in paths)
        with tqdm.tqdm(total=total, unit='B', unit_scale=True) as progress:
            current = 0
            for group, tokens, n_chars in iter_token_groups(
                    enc, paths, args.combine, args.encoding, args.encoding_errors):
                if group != current:
                    writer.end_array()
                    current = group
                writer.write(tokens)
                progress.update(min(n_chars, total - progress.n))
            writer.end_array()
            progress.update(total - progress.n)
        if writer.total == 0:
            raise errors.UserError(f'{args.in_text}: holds no text to encode')
        done = True
    finally:
        writer.close(keep=done)
    print('Writing', out_path)
    print(f'{writer.total} tokens in {writer.count} arrays')


if __name__ == '__main__':
    cli.run(main)
