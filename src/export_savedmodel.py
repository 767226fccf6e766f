#!/usr/bin/env python3
"""Export a model as a TensorFlow SavedModel that generates: its serving_default signature
runs the whole sample in the graph (savedmodel.py), so TensorFlow Serving, or any
TensorFlow program, loads and runs it with no code of ours.

    python src/export_savedmodel.py models/117M exported/117M
    python src/export_savedmodel.py models/117M exported/jokes --checkpoint checkpoint/run1
    python src/export_savedmodel.py models/117M exported/117M --jit_compile off

OUT must not exist yet: the SavedModel is written beside it and renamed into place
whole. hparams.json, encoder.json and vocab.bpe go into its assets/. --jit_compile auto
(the default) compiles the generation loop with XLA only if XLA can compile it and runs
it faster on this machine (both timed here, briefly); the README's "Export for
TensorFlow Serving" shows how to load and serve the result.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

import cli
import flags
from release import ENCODER, HPARAMS, MERGES

JIT_CHOICES = ('auto', 'on', 'off')
# The generation timed for --jit_compile auto: rows, prompt tokens, new tokens, runs.
PROBE = {'batch': 2, 'prompt': 8, 'new_tokens': 32, 'runs': 3}


def parse_args(argv):
    parser = cli.FlagParser(prog='export_savedmodel.py', description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('model', help='a model directory (models/117M) or a training run folder')
    add('out', help='the SavedModel directory to write; must not exist yet')
    flags.add(parser, 'checkpoint')
    add('--jit_compile', choices=JIT_CHOICES, default='auto',
        help='compile the generation loop with XLA (auto: if it measures faster here)')
    flags.add(parser, 'verbose')
    return parser.parse_args(argv)


def check_out(out):
    """OUT is new and its parent a writable directory: refused before any slow work."""
    parent = os.path.dirname(out) or '.'
    if os.path.lexists(out):
        raise cli.UserError(f'{out}: already exists; choose a new directory')
    if not os.path.isdir(parent):
        raise cli.UserError(f'{parent}: no such directory (the parent of {out})')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise cli.UserError(f'{parent}: not writable (the parent of {out})')


def probe_seconds(generator, hparams):
    """Median seconds of PROBE's greedy generation, after one call that traces (and
    compiles) it."""
    import numpy as np
    prompt = min(PROBE['prompt'], hparams.n_ctx // 2)
    new_tokens = min(PROBE['new_tokens'], hparams.n_ctx - prompt)
    ids = np.arange(PROBE['batch'] * prompt, dtype=np.int32).reshape(PROBE['batch'], prompt)
    args = (ids % hparams.n_vocab, np.full([PROBE['batch']], prompt, np.int32),
            np.int32(new_tokens), np.float32(1), np.int32(1), np.float32(1), np.int64(0))
    generator.generate(*args)
    times = []
    for _ in range(PROBE['runs']):
        start = time.perf_counter()
        generator.generate(*args)['new_ids'].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def xla_failure(error):
    """The line of an XLA compilation error that says why."""
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    why = [line for line in lines if 'compile-time constant' in line
           or 'unsupported operations' in line]
    return (why or lines or ['unknown error'])[0]


def choose_jit(choice, new_generator, hparams):
    """(jit_compile, why) for --jit_compile `choice`; new_generator(jit) -> Generator."""
    import tensorflow as tf
    if choice == 'off':
        return False, '--jit_compile off'
    try:
        with_xla = probe_seconds(new_generator(True), hparams)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        why = f'XLA cannot compile the generation loop: {xla_failure(e)}'
        if choice == 'on':
            raise cli.UserError(f'--jit_compile on: {why}') from None
        return False, why
    if choice == 'on':
        return True, '--jit_compile on'
    without = probe_seconds(new_generator(False), hparams)
    measured = (f'{PROBE["batch"]} rows x {PROBE["new_tokens"]} new tokens took '
                f'{with_xla:.3f} s with XLA, {without:.3f} s without')
    return with_xla < without, measured


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
    out = os.path.normpath(cli.user_path(args.out))
    check_out(out)
    path = os.path.normpath(cli.user_path(args.model))
    cli.start_tensorflow(args.verbose)
    import model_dir
    import savedmodel
    loaded = model_dir.load(os.path.basename(path), os.path.dirname(path) or '.',
                            args.checkpoint)
    hparams = loaded.hparams
    # A LoRA run's checkpoint reads as its base's weights with the adapters merged in.
    weights = savedmodel.variables(model_dir.load_arrays(loaded.checkpoint, hparams))
    assets = {name: os.path.join(loaded.path, name) for name in (HPARAMS, ENCODER, MERGES)}

    def new_generator(jit_compile):
        return savedmodel.Generator(weights, hparams, loaded.encoder.eot_token,
                                    assets=assets, jit_compile=jit_compile)

    jit_compile, why = choose_jit(args.jit_compile, new_generator, hparams)
    print(f'jit_compile: {"on" if jit_compile else "off"} ({why})', file=sys.stderr)
    save_whole(new_generator(jit_compile), out)
    print(f'{out}: SavedModel of {hparams} from {loaded.checkpoint}; its serving_default '
          'signature generates')


def main(argv=None):
    export(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    cli.run(main)
