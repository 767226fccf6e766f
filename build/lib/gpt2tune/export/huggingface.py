#!/usr/bin/env python3
"""Hugging Face transformers format, both ways, without PyTorch.

    gpt2tune-huggingface export models/117M hf-jokes --checkpoint checkpoint/run1
    gpt2tune-huggingface import hf-gpt2 models/hf-gpt2

Export writes what `GPT2LMHeadModel.from_pretrained` and `GPT2TokenizerFast.from_pretrained`
load: config.json, model.safetensors, vocab.json, merges.txt, tokenizer and generation
configs (generation ends at <|endoftext|>). Import turns such a folder back into a model
directory in the release layout. Weights are the same numbers under other names: Hugging
Face's Conv1D stores [in, out] like OpenAI's conv1d, without the leading 1.
"""

import json
import os

import numpy as np
from safetensors import SafetensorError, safe_open

from gpt2tune import cli
from gpt2tune.errors import UserError
from gpt2tune.model.hparams import HParams, variable_shapes

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
    from gpt2tune.model import model_dir
    return model_dir


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
