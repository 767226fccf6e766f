#!/usr/bin/env python3
"""LoRA adapters in Hugging Face PEFT's format, both ways, without PyTorch.

    python src/lora_peft.py export checkpoint/run1 peft-jokes
    python src/lora_peft.py import peft-jokes models/jokes-lora --base models/117M

Export writes adapter_config.json and adapter_model.safetensors, which
`PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained('hf-117M'), 'peft-jokes')` loads
over the base that src/huggingface.py exported. Import writes a LoRA model directory (the
adapters, lora.json naming --base, its hparams and vocabulary), which every script here
loads with the adapters merged in, and which `python src/lora.py merge` turns into an
ordinary model directory.

transformers' GPT-2 keeps its matrices as Conv1D, [in, out] as OpenAI's, so PEFT adapts them
with fan_in_fan_out=True; its factors are torch.nn.Linear weights, stored [out, in]:
lora_A.weight [r, nx] is our A [nx, r] transposed, lora_B.weight [nf, r] our B transposed.
"""

import json
import os
import re
import shutil

import fire
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

import cli
import lora
from errors import UserError
from flags import SHARED, fire_command
from hparams import variable_shapes

CONFIG = 'adapter_config.json'
WEIGHTS = 'adapter_model.safetensors'
PREFIX = 'base_model.model.'
KEY = re.compile(r'(?:base_model\.model\.)?transformer\.h\.(\d+)\.(\w+)\.(\w+)\.lora_([AB])'
                 r'\.weight')


def peft_key(scope, factor):
    """'model/h3/attn/c_attn', 'lora_a' -> PEFT's tensor name for that factor."""
    _, block, *matrix = scope.split('/')
    return (f'{PREFIX}transformer.h.{block[1:]}.{".".join(matrix)}.lora_'
            f'{factor[-1].upper()}.weight')


@fire_command()
def export(run, out_dir, checkpoint=SHARED, verbose=SHARED):
    """Write the adapters of a LoRA run folder (its newest checkpoint, or `checkpoint`) in
    PEFT's format into `out_dir`.

    :run : a LoRA training run's folder (checkpoint/run1)
    :out_dir : the folder to write adapter_config.json and adapter_model.safetensors into
    """
    cli.start_tensorflow(verbose)
    import model_dir
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


def read_config(peft_dir):
    """lora.Adapters from adapter_config.json; settings we cannot represent refused."""
    path = os.path.join(peft_dir, CONFIG)
    for needed in (CONFIG, WEIGHTS):
        if not os.path.isfile(os.path.join(peft_dir, needed)):
            raise UserError(f'{peft_dir}: missing {needed}')
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
        if config.get('peft_type') != 'LORA':
            raise UserError(f'{path}: peft_type {config.get("peft_type")!r}; only LORA is '
                            'supported')
        for key, plain in (('bias', 'none'), ('use_dora', False), ('modules_to_save', None),
                           ('layers_to_transform', None), ('rank_pattern', {}),
                           ('alpha_pattern', {})):
            if config.get(key, plain) not in (plain, None):
                raise UserError(f'{path}: {key} {config[key]!r} is not supported (adapters '
                                'of one rank on every block, nothing else trained)')
        rank, alpha = int(config['r']), float(config['lora_alpha'])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f'{path}: not a PEFT LoRA configuration ({type(e).__name__}: {e})') \
            from None
    # rsLoRA scales by alpha / sqrt(r); ours is alpha / r: the same scale, another alpha.
    return rank, alpha * np.sqrt(rank) if config.get('use_rslora') else alpha


def read_factors(peft_dir, rank, hparams):
    """Our adapter arrays (model/h0/attn/c_attn/lora_a [nx, r], ...) and the targets."""
    path = os.path.join(peft_dir, WEIGHTS)
    arrays = {}
    try:
        with safe_open(path, framework='numpy') as f:
            for key in f.keys():
                match = KEY.fullmatch(key)
                if not match:
                    raise UserError(f'{path}: tensor {key} is not a LoRA factor of a GPT-2 '
                                    'block')
                block, part, matrix, factor = match.groups()
                name = f'model/h{block}/{part}/{matrix}/lora_{factor.lower()}'
                arrays[name] = np.ascontiguousarray(f.get_tensor(key).astype(np.float32).T)
    except (SafetensorError, TypeError) as e:
        raise UserError(f'{path}: cannot read ({e})') from None
    targets = lora.parse_targets(','.join(sorted({n.split('/', 2)[2].rsplit('/', 1)[0]
                                                 for n in arrays})), path)
    adapters = lora.Adapters(rank, 1.0, targets)
    expected = adapters.shapes(hparams)
    for name, shape in expected.items():
        if name not in arrays:
            raise UserError(f'{path}: no {peft_key(name.rsplit("/", 1)[0], name[-6:])} '
                            '(adapters must cover every block)')
        if list(arrays[name].shape) != shape:
            raise UserError(f'{path}: {name} has shape {list(arrays[name].shape)[::-1]}, the '
                            f'base model and r implies {shape[::-1]}')
    return arrays, targets


@fire_command()
def import_(peft_dir, out, base, verbose=SHARED):
    """Write a LoRA model directory `out` from PEFT adapters over the model directory
    `base` (the model they were trained on, in the release layout).

    :peft_dir : a folder with PEFT's adapter_config.json and adapter_model.safetensors
    :out : the LoRA model directory to write (must not exist yet)
    :base : the model directory the adapters were trained on
    """
    if os.path.exists(out):
        raise UserError(f'{out}: already exists; choose a new directory')
    rank, alpha = read_config(peft_dir)
    tf = cli.start_tensorflow(verbose)
    import model_dir
    from release import CHECKPOINT, HPARAMS
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


if __name__ == '__main__':
    cli.run(fire.Fire, {'export': export, 'import': import_})
