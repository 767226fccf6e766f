"""Adapters to and from Hugging Face PEFT, checked in the real peft and transformers (what
the command refuses: tests/commands/test_peft.py)."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from fixtures import graph_logits, tokens_for
from gpt2tune.commands import huggingface as huggingface_command
from gpt2tune.commands import peft as peft_command
from gpt2tune.model import model_dir

pytestmark = pytest.mark.slow  # PyTorch and transformers load in seconds
TARGETS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc']


@pytest.fixture(scope='module')
def peft_adapters(models_dir, tmp_path_factory):
    """The tiny model exported for transformers, and adapters made by peft itself over
    it, B random (not peft's zeros), so that they change the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel
    tmp = tmp_path_factory.mktemp('peft')
    huggingface_command.export(os.path.join(models_dir, 'tiny'), str(tmp / 'hf'))
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=12, target_modules=TARGETS, fan_in_fan_out=True,
                        init_lora_weights=False, task_type='CAUSAL_LM')
    adapted = get_peft_model(GPT2LMHeadModel.from_pretrained(str(tmp / 'hf')), config)
    adapted.save_pretrained(str(tmp / 'theirs'))
    return tmp


def peft_logits(hf_dir, adapter_dir, tokens):
    import torch
    from peft import PeftModel
    from transformers import GPT2LMHeadModel
    adapted = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(hf_dir), adapter_dir)
    with torch.no_grad():
        return adapted.eval()(torch.tensor(tokens)).logits.numpy()


def test_peft_adapters_import_export_and_equal_transformers_logits(models_dir, peft_adapters):
    tmp = peft_adapters
    peft_command.import_(str(tmp / 'theirs'), str(tmp / 'ours'), os.path.join(models_dir, 'tiny'))
    loaded = model_dir.load('ours', str(tmp))
    tokens = tokens_for(loaded.hparams)
    theirs = peft_logits(str(tmp / 'hf'), str(tmp / 'theirs'), tokens)
    ours = graph_logits(loaded.hparams, loaded.checkpoint, tokens)
    base = graph_logits(loaded.hparams, os.path.join(models_dir, 'tiny', 'model.ckpt'), tokens)
    assert np.abs(theirs - base).max() > 0.01  # the adapters matter
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # Back to PEFT's files: the same tensors, loading in peft to the same logits.
    peft_command.export(str(tmp / 'ours'), str(tmp / 'back'))
    original, back = (load_file(str(tmp / d / 'adapter_model.safetensors'))
                      for d in ('theirs', 'back'))
    assert sorted(original) == sorted(back)
    for key in original:
        np.testing.assert_array_equal(back[key], original[key], err_msg=key)
    config = json.loads((tmp / 'back' / 'adapter_config.json').read_text())
    assert (config['r'], config['lora_alpha'], config['target_modules']) == (4, 12, TARGETS)
    np.testing.assert_allclose(peft_logits(str(tmp / 'hf'), str(tmp / 'back'), tokens),
                               theirs, atol=1e-5)


def test_a_run_trained_here_loads_in_peft(models_dir, corpus, peft_adapters, tmp_path):
    from fixtures import train_config
    from gpt2tune.train import training
    training.train(train_config(tmp_path, models_dir, corpus, steps=2, save_every=2,
                                learning_rate=0.01, lora_rank=2, lora_targets='mlp'))
    run = tmp_path / 'checkpoint' / 'run1'
    peft_command.export(str(run), str(tmp_path / 'peft'))
    loaded = model_dir.load('run1', str(run.parent))
    tokens = tokens_for(loaded.hparams)
    np.testing.assert_allclose(
        peft_logits(str(peft_adapters / 'hf'), str(tmp_path / 'peft'), tokens),
        graph_logits(loaded.hparams, loaded.checkpoint, tokens), atol=1e-4)
