#!/usr/bin/env python3
"""Hugging Face transformers format, both ways, without PyTorch.

    python src/huggingface.py export models/117M hf-jokes --checkpoint checkpoint/run1
    python src/huggingface.py import hf-gpt2 models/hf-gpt2

Export writes what `GPT2LMHeadModel.from_pretrained` and `GPT2TokenizerFast.from_pretrained`
load: config.json, model.safetensors, vocab.json, merges.txt, tokenizer and generation
configs (generation ends at <|endoftext|>). Import turns such a folder back into a model
directory in the release layout. Weights are the same numbers under other names: Hugging
Face's Conv1D stores [in, out] like OpenAI's conv1d, without the leading 1.
"""

import json
import os
import shutil

import fire
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

import cli
import encoder
from errors import UserError
from flags import SHARED, fire_command
from hparams import HParams, variable_shapes
from release import ENCODER, ENDOFTEXT, MERGES

# What our model computes, as Hugging Face's GPT2Config spells it.
GPT2_CONFIG = {'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel'],
               'activation_function': 'gelu_new', 'layer_norm_epsilon': 1e-5,
               'n_inner': None, 'scale_attn_weights': True,
               'scale_attn_by_inverse_layer_idx': False, 'reorder_and_upcast_attn': False,
               'tie_word_embeddings': True, 'initializer_range': 0.02, 'resid_pdrop': 0.1,
               'embd_pdrop': 0.1, 'attn_pdrop': 0.1}


def hf_name(name):
    """OpenAI's variable name -> Hugging Face's tensor name:
    'model/h3/attn/c_attn/w' -> 'transformer.h.3.attn.c_attn.weight'."""
    *path, leaf = name.split('/')[1:]
    if not path:  # wte, wpe
        return f'transformer.{leaf}.weight'
    if path[0][0] == 'h':
        path[0] = f'h.{path[0][1:]}'
    return 'transformer.' + '.'.join(path) + {'w': '.weight', 'g': '.weight', 'b': '.bias'}[leaf]


def tensorflow_model_dir(verbose=False):
    """model_dir, imported once TensorFlow has started: --help needs neither."""
    cli.start_tensorflow(verbose)
    import model_dir
    return model_dir


@fire_command()
def export(model_path, out_dir, checkpoint=SHARED, verbose=SHARED):
    """Write `out_dir` for transformers from a model directory (or a training run's weights
    with `checkpoint`).

    :model_path : a model directory (models/124M)
    :out_dir : the folder to write for transformers
    """
    model_dir = tensorflow_model_dir(verbose)
    loaded = model_dir.load_path(model_path, checkpoint)
    hparams, enc = loaded.hparams, loaded.encoder
    arrays = model_dir.load_arrays(loaded.checkpoint, hparams)
    tensors = {hf_name(n): (a[0] if n.endswith('/w') else a) for n, a in arrays.items()}
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              os.path.join(out_dir, 'model.safetensors'), metadata={'format': 'pt'})
    eot = enc.eot_token
    config = {**GPT2_CONFIG, 'vocab_size': hparams.n_vocab, 'n_positions': hparams.n_ctx,
              'n_ctx': hparams.n_ctx, 'n_embd': hparams.n_embd, 'n_head': hparams.n_head,
              'n_layer': hparams.n_layer, 'bos_token_id': eot, 'eos_token_id': eot}
    special = {'bos_token': ENDOFTEXT, 'eos_token': ENDOFTEXT, 'unk_token': ENDOFTEXT}
    files = {
        'config.json': config,
        'generation_config.json': {'bos_token_id': eot, 'eos_token_id': eot,
                                   'pad_token_id': eot},
        'tokenizer_config.json': {'tokenizer_class': 'GPT2Tokenizer', 'add_prefix_space': False,
                                  'model_max_length': hparams.n_ctx, **special},
        'special_tokens_map.json': special,
    }
    for filename, content in files.items():
        with open(os.path.join(out_dir, filename), 'w', encoding='utf-8') as f:
            json.dump(content, f, indent=2)
    source = loaded.path
    shutil.copyfile(os.path.join(source, ENCODER), os.path.join(out_dir, 'vocab.json'))
    shutil.copyfile(os.path.join(source, MERGES), os.path.join(out_dir, 'merges.txt'))
    print(f'{out_dir}: GPT2LMHeadModel with {hparams}, from {loaded.checkpoint}')


def read_config(hf_dir):
    path = os.path.join(hf_dir, 'config.json')
    for needed in ('config.json', 'model.safetensors', 'vocab.json', 'merges.txt'):
        if not os.path.isfile(os.path.join(hf_dir, needed)):
            raise UserError(f'{hf_dir}: missing {needed}')
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f'{path}: not valid JSON ({e})') from None
    if config.get('model_type') != 'gpt2':
        raise UserError(f'{path}: model_type {config.get("model_type")!r}; only gpt2 is '
                        'supported')
    for key in ('activation_function', 'layer_norm_epsilon', 'scale_attn_weights',
                'scale_attn_by_inverse_layer_idx', 'tie_word_embeddings'):
        if key in config and config[key] != GPT2_CONFIG[key]:
            raise UserError(f'{path}: {key} {config[key]!r} is not GPT-2\'s '
                            f'{GPT2_CONFIG[key]!r}; this architecture is not supported')
    if config.get('n_inner') not in (None, 4 * config.get('n_embd', 0)):
        raise UserError(f'{path}: n_inner {config["n_inner"]} is not 4 * n_embd')
    try:
        return HParams(n_vocab=config['vocab_size'], n_ctx=config['n_positions'],
                       n_embd=config['n_embd'], n_head=config['n_head'],
                       n_layer=config['n_layer'])
    except KeyError as e:
        raise UserError(f'{path}: missing {e}') from None


def read_tensors(hf_dir, hparams):
    """OpenAI-named float32 arrays from model.safetensors, shapes checked."""
    path = os.path.join(hf_dir, 'model.safetensors')
    arrays = {}
    try:
        with safe_open(path, framework='numpy') as f:
            keys = set(f.keys())
            for name, shape in variable_shapes(hparams).items():
                key = hf_name(name)
                key = key if key in keys else key[len('transformer.'):]
                if key not in keys:
                    raise UserError(f'{path}: tensor {hf_name(name)} is missing')
                array = f.get_tensor(key).astype(np.float32)
                array = array[None] if name.endswith('/w') else array
                if list(array.shape) != shape:
                    raise UserError(f'{path}: {key} has shape {list(array.shape)[-2:]}, '
                                    f'config.json implies {shape[-2:]}')
                arrays[name] = array
            if 'lm_head.weight' in keys and not np.array_equal(
                    f.get_tensor('lm_head.weight'), arrays['model/wte']):
                raise UserError(f'{path}: lm_head.weight is not tied to the token embedding')
    except (SafetensorError, TypeError) as e:
        raise UserError(f'{path}: cannot read ({e}); float32 and float16 are supported') \
            from None
    return arrays


@fire_command()
def import_(hf_dir, model_path, verbose=SHARED):
    """Write a model directory in the release layout from a transformers GPT-2 folder.

    :hf_dir : a transformers GPT-2 folder (config.json, model.safetensors, vocab.json,
     merges.txt)
    :model_path : the model directory to create (must not exist yet)
    """
    if os.path.exists(model_path):
        raise UserError(f'{model_path}: already exists; choose a new directory')
    hparams = read_config(hf_dir)
    arrays = read_tensors(hf_dir, hparams)
    vocab_dir = os.path.join(model_path + '.partial', 'vocab')
    os.makedirs(vocab_dir)
    try:
        shutil.copyfile(os.path.join(hf_dir, 'vocab.json'), os.path.join(vocab_dir, ENCODER))
        shutil.copyfile(os.path.join(hf_dir, 'merges.txt'), os.path.join(vocab_dir, MERGES))
        enc = encoder.load_encoder(vocab_dir)
        if enc.n_vocab > hparams.n_vocab:
            raise UserError(f'{hf_dir}/vocab.json has {enc.n_vocab} tokens, more than the '
                            f'{hparams.n_vocab} rows of the token embedding')
        tensorflow_model_dir(verbose).save_arrays(model_path + '.partial', arrays, hparams,
                                                  vocab_dir)
        shutil.rmtree(vocab_dir)
        os.replace(model_path + '.partial', model_path)
    finally:
        shutil.rmtree(model_path + '.partial', ignore_errors=True)
    print(f'{model_path}: {hparams}, from {hf_dir}')


if __name__ == '__main__':
    cli.run(fire.Fire, {'export': export, 'import': import_})
