#!/usr/bin/env python3
"""LoRA adapters in Hugging Face PEFT's format, both ways, without PyTorch.

    gpt2tune-peft export checkpoint/run1 peft-jokes
    gpt2tune-peft import peft-jokes models/jokes-lora --base models/117M

Export writes adapter_config.json and adapter_model.safetensors, which
`PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained('hf-117M'), 'peft-jokes')` loads
over the base that gpt2tune-huggingface exported. Import writes a LoRA model directory (the
adapters, lora.json naming --base, its hparams and vocabulary), which every script here
loads with the adapters merged in, and which `gpt2tune-lora merge` turns into an
ordinary model directory.

transformers' GPT-2 keeps its matrices as Conv1D, [in, out] as OpenAI's, so PEFT adapts them
with fan_in_fan_out=True; its factors are torch.nn.Linear weights, stored [out, in]:
lora_A.weight [r, nx] is our A [nx, r] transposed, lora_B.weight [nf, r] our B transposed.
"""

import json
import os
import re

import numpy as np
from safetensors import SafetensorError, safe_open

from gpt2tune.errors import UserError
from gpt2tune.model import lora

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
