"""gpt2tune-huggingface: a model directory to Hugging Face transformers' format and back
(export/huggingface.py does the conversion).

    gpt2tune-huggingface export models/124M hf/124M
    gpt2tune-huggingface import hf/124M models/124M-back
"""

import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

from gpt2tune import cli, flags
from gpt2tune.data import encoder
from gpt2tune.errors import UserError
from gpt2tune.export.huggingface import (
    GPT2_CONFIG,
    hf_name,
    read_config,
    read_tensors,
    tensorflow_model_dir,
)
from gpt2tune.model.release import ENCODER, ENDOFTEXT, MERGES


def export(model_path, out_dir, checkpoint=None, verbose=False):
    """Write `out_dir` for transformers from a model directory (or a training run's weights
    with `checkpoint`)."""
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


def import_(hf_dir, model_path, verbose=False):
    """Write a model directory in the release layout from a transformers GPT-2 folder."""
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


def main(argv=None):
    parser = cli.FlagParser(prog='gpt2tune-huggingface', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    out = commands.add_parser('export', help=export.__doc__.split('\n')[0])
    out.add_argument('model_path', help='a model directory (models/124M)')
    out.add_argument('out_dir', help='the folder to write for transformers')
    flags.add(out, 'checkpoint', 'verbose')
    into = commands.add_parser('import', help=import_.__doc__.split('\n')[0])
    into.add_argument('hf_dir', help='a transformers GPT-2 folder (config.json, '
                      'model.safetensors, vocab.json, merges.txt)')
    into.add_argument('model_path', help='the model directory to create (must not exist yet)')
    flags.add(into, 'verbose')
    args = parser.parse_args(argv)
    if args.command == 'export':
        export(args.model_path, args.out_dir, args.checkpoint, args.verbose)
    else:
        import_(args.hf_dir, args.model_path, args.verbose)
