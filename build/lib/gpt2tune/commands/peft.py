"""gpt2tune-peft: a LoRA run's adapters to Hugging Face PEFT's format and back
(export/lora_peft.py does the conversion).

    gpt2tune-peft export checkpoint/run1 peft/run1
    gpt2tune-peft import peft/run1 checkpoint/run1-back --base models/124M
"""

import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

from gpt2tune import cli, flags
from gpt2tune.errors import UserError
from gpt2tune.export.lora_peft import CONFIG, WEIGHTS, peft_key, read_config, read_factors
from gpt2tune.model import lora
from gpt2tune.model.hparams import variable_shapes


def export(run, out_dir, checkpoint=None, verbose=False):
    """Write the adapters of a LoRA run folder (its newest checkpoint, or `checkpoint`) in
    PEFT's format into `out_dir`."""
    cli.start_tensorflow(verbose)
    from gpt2tune.model import model_dir
    loaded = model_dir.load_path(run, checkpoint)
    adapted = model_dir.lora_checkpoint(loaded.checkpoint)
    if adapted is None:
        raise UserError(f'{loaded.checkpoint}: holds no LoRA adapters (a run trained with '
                        '--lora_rank has them)')
    stored = model_dir.stored_variables(loaded.checkpoint)
    trained = [n for n in stored if n in variable_shapes(loaded.hparams)]
    if trained:
        raise UserError(f'{loaded.checkpoint}: also trains {", ".join(trained[:3])} '
                        '(--also_train); PEFT\'s adapter files hold the adapters only')
    import tensorflow as tf
    reader = tf.train.load_checkpoint(loaded.checkpoint)
    tensors = {peft_key(name.rsplit('/', 1)[0], name.rsplit('/', 1)[1]):
               np.ascontiguousarray(reader.get_tensor(name).T)
               for name in stored if lora.is_adapter(name)}
    adapters = adapted.adapters
    alpha = int(adapters.alpha) if adapters.alpha == int(adapters.alpha) else adapters.alpha
    config = {'peft_type': 'LORA', 'task_type': 'CAUSAL_LM', 'r': adapters.rank,
              'lora_alpha': alpha, 'target_modules': [t.replace('/', '.')
                                                      for t in adapters.targets],
              'fan_in_fan_out': True, 'lora_dropout': 0.0, 'bias': 'none',
              'use_rslora': False, 'use_dora': False, 'modules_to_save': None,
              'init_lora_weights': True, 'inference_mode': True,
              'base_model_name_or_path': None}
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, WEIGHTS), metadata={'format': 'pt'})
    with open(os.path.join(out_dir, CONFIG), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2)
    print(f'{out_dir}: PEFT LoRA adapters (rank {adapters.rank}, alpha {adapters.alpha:g}, '
          f'{", ".join(adapters.targets)}) from {loaded.checkpoint}')


def import_(peft_dir, out, base, verbose=False):
    """Write a LoRA model directory `out` from PEFT adapters over the model directory
    `base` (the model they were trained on, in the release layout)."""
    if os.path.exists(out):
        raise UserError(f'{out}: already exists; choose a new directory')
    rank, alpha = read_config(peft_dir)
    tf = cli.start_tensorflow(verbose)
    from gpt2tune.model import model_dir
    from gpt2tune.model.release import CHECKPOINT, HPARAMS
    loaded = model_dir.load_path(base)
    arrays, targets = read_factors(peft_dir, rank, loaded.hparams)
    tf1 = tf.compat.v1
    try:
        with tf.Graph().as_default(), tf1.Session() as sess:
            variables = [tf1.Variable(a, name=n) for n, a in arrays.items()]
            sess.run(tf1.global_variables_initializer())
            shutil.rmtree(f'{out}.partial', ignore_errors=True)  # a killed import's
            os.makedirs(f'{out}.partial')
            tf1.train.Saver(variables, save_relative_paths=True).save(
                sess, os.path.join(f'{out}.partial', CHECKPOINT), write_meta_graph=False)
        lora.write_config(f'{out}.partial', lora.Adapters(rank, alpha, targets),
                          loaded.checkpoint)
        shutil.copyfile(os.path.join(loaded.path, HPARAMS),
                        os.path.join(f'{out}.partial', HPARAMS))
        model_dir.copy_vocabulary(loaded.path, f'{out}.partial')
        os.replace(f'{out}.partial', out)
    finally:
        shutil.rmtree(f'{out}.partial', ignore_errors=True)
    print(f'{out}: LoRA adapters (rank {rank}, alpha {alpha:g}, {", ".join(targets)}) over '
          f'{loaded.checkpoint}, from {peft_dir}')


def main(argv=None):
    parser = cli.FlagParser(prog='gpt2tune-peft', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    out = commands.add_parser('export', help=export.__doc__.split('\n')[0])
    out.add_argument('run', help='a LoRA training run\'s folder (checkpoint/run1)')
    out.add_argument('out_dir', help='the folder to write adapter_config.json and '
                     'adapter_model.safetensors into')
    flags.add(out, 'checkpoint', 'verbose')
    into = commands.add_parser('import', help=import_.__doc__.split('\n')[0])
    into.add_argument('peft_dir', help='a folder with PEFT\'s adapter_config.json and '
                      'adapter_model.safetensors')
    into.add_argument('out', help='the LoRA model directory to write (must not exist yet)')
    into.add_argument('--base', required=True,
                      help='the model directory the adapters were trained on')
    flags.add(into, 'verbose')
    args = parser.parse_args(argv)
    if args.command == 'export':
        export(args.run, args.out_dir, args.checkpoint, args.verbose)
    else:
        import_(args.peft_dir, args.out, args.base, args.verbose)
