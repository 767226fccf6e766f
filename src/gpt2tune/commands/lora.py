"""gpt2tune-lora: a LoRA run's weights merged into a model directory of the release
layout (model/lora.py holds the adapters' arithmetic).

    gpt2tune-lora merge checkpoint/run1 models/run1-merged
"""

import os
import shutil

import fire

from gpt2tune import cli
from gpt2tune.errors import UserError
from gpt2tune.flags import SHARED, fire_command


@fire_command()
def merge_run(run, out, checkpoint=SHARED, verbose=SHARED):
    """Write the merged weights of a LoRA run folder (its newest checkpoint, or
    `checkpoint`) as a model directory in the release layout at `out`.

    :run : a LoRA training run's folder (checkpoint/run1)
    :out : the model directory to write (must not exist yet)
    """
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
    fire.Fire({'merge': merge_run}, command=argv, name='gpt2tune-lora')
