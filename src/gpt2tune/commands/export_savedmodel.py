"""Export a model as a TensorFlow SavedModel that generates: its serving_default signature
runs the whole sample in the graph (savedmodel.py), so TensorFlow Serving, or any
TensorFlow program, loads and runs it with no code of ours.

    gpt2tune-savedmodel models/117M exported/117M
    gpt2tune-savedmodel models/117M exported/jokes --checkpoint checkpoint/run1

OUT must not exist yet: the SavedModel is written beside it and renamed into place
whole. hparams.json, encoder.json and vocab.bpe go into its assets/. docs/export.md
shows how to load and serve the result.
"""

import os
import shutil
import sys
import tempfile

from gpt2tune import cli, errors, flags
from gpt2tune.model.release import ENCODER, HPARAMS, MERGES


def parse_args(argv):
    parser = cli.FlagParser(prog='gpt2tune-savedmodel', description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('model', help='a model directory (models/117M) or a training run folder')
    add('out', help='the SavedModel directory to write; must not exist yet')
    flags.add(parser, 'checkpoint')
    flags.add(parser, 'verbose')
    return parser.parse_args(argv)


def check_out(out):
    """OUT is new and its parent a writable directory: refused before any slow work."""
    parent = os.path.dirname(out) or '.'
    if os.path.lexists(out):
        raise errors.UserError(f'{out}: already exists; choose a new directory')
    if not os.path.isdir(parent):
        raise errors.UserError(f'{parent}: no such directory (the parent of {out})')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise errors.UserError(f'{parent}: not writable (the parent of {out})')


def save_whole(generator, out):
    """tf.saved_model.save into a new directory beside `out`, renamed to `out` once
    complete; nothing is left behind when it fails."""
    import tensorflow as tf
    partial = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.partial-',
                               dir=os.path.dirname(out) or '.')
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o777 & ~umask)  # mkdtemp's 0700 would keep a server out
        tf.saved_model.save(generator, partial,
                            signatures={'serving_default': generator.generate})
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def export(args):
    out = os.path.normpath(errors.user_path(args.out))
    check_out(out)
    cli.start_tensorflow(args.verbose)
    from gpt2tune.export import savedmodel
    from gpt2tune.model import model_dir
    loaded = model_dir.load_path(args.model, args.checkpoint)
    hparams = loaded.hparams
    # A LoRA run's checkpoint reads as its base's weights with the adapters merged in.
    weights = savedmodel.variables(model_dir.load_arrays(loaded.checkpoint, hparams))
    assets = {name: os.path.join(loaded.path, name) for name in (HPARAMS, ENCODER, MERGES)}

    save_whole(savedmodel.Generator(weights, hparams, loaded.encoder.eot_token,
                                    assets=assets), out)
    print(f'{out}: SavedModel of {hparams} from {loaded.checkpoint}; its serving_default '
          'signature generates')


def main(argv=None):
    export(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    cli.run(main)
