"""gpt2tune-lora: a LoRA run's weights merged into a model directory of the release
layout (model/lora.py holds the adapters' arithmetic).

    gpt2tune-lora merge checkpoint/run1 models/run1-merged
"""

import os
import shutil

from gpt2tune import cli, flags
from gpt2tune.errors import UserError


def merge_run(run, out, checkpoint=None, verbose=False):
    """Write the merged weights of a LoRA run folder (its newest checkpoint, or
    `checkpoint`) as a model directory in the release layout at `out`."""
    if os.path.exists(out):
        raise UserError(f'{out}: already exists; choose a new directory')
    cli.start_tensorflow(verbose)
    from gpt2tune.model import model_dir
    loaded = model_dir.load_path(run, checkpoint)
    arrays = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
    try:
        model_dir.save_arrays(f'{out}.partial', arrays, loaded.hparams, loaded.path)
        os.replace(f'{out}.partial', out)
    finally:
        shutil.rmtree(f'{out}.partial', ignore_errors=True)
    print(f'{out}: {loaded.hparams}, merged from {loaded.checkpoint}')


def main(argv=None):
    parser = cli.FlagParser(prog='gpt2tune-lora', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    merge = commands.add_parser('merge', help=merge_run.__doc__.split('\n')[0])
    merge.add_argument('run', help='a LoRA training run\'s folder (checkpoint/run1)')
    merge.add_argument('out', help='the model directory to write (must not exist yet)')
    flags.add(merge, 'checkpoint', 'verbose')
    args = parser.parse_args(argv)
    merge_run(args.run, args.out, args.checkpoint, args.verbose)
