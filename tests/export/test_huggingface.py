"""Hugging Face transformers' format (export/huggingface.py): the weights both ways, the
logits and greedy ids against transformers, models saved by transformers itself,
config.json's and the tensors' checks (the command's own files and refusals:
tests/commands/test_huggingface.py)."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fixtures import variables_of
from gpt2tune.commands import huggingface as huggingface_command
from gpt2tune.data import encoder
from gpt2tune.errors import UserError
from gpt2tune.generate import generation
from gpt2tune.model import model, model_dir

tf1 = tf.compat.v1


def test_round_trip_keeps_every_variable(models_dir, exported, tmp_path):
    huggingface_command.import_(str(exported), str(tmp_path / 'back'))
    original = variables_of(os.path.join(models_dir, 'tiny', 'model.ckpt'))
    back = variables_of(str(tmp_path / 'back' / 'model.ckpt'))
    assert sorted(back) == sorted(original)
    for name in original:
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)
    assert encoder.load_encoder(str(tmp_path / 'back')).encode('Hello world') == \
        encoder.load_encoder(os.path.join(models_dir, 'tiny')).encode('Hello world')


def our_logits(loaded, tokens):
    """model.model's logits [batch, sequence, n_vocab] for a model_dir.ModelDir."""
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [None, None])
        logits = model.model(loaded.hparams, X)['logits']
        model_dir.restore(sess, loaded.checkpoint)
        return sess.run(logits, {X: tokens})


def their_logits(hf, tokens):
    import torch
    with torch.no_grad():
        return hf(torch.tensor(tokens)).logits.numpy()


def test_transformers_logits_equal_ours(models_dir, exported):
    transformers = pytest.importorskip('transformers')
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(exported)).eval()
    loaded = model_dir.load('tiny', models_dir)
    tokens = np.random.RandomState(0).randint(0, loaded.hparams.n_vocab, size=[2, 30])
    np.testing.assert_allclose(their_logits(hf, tokens), our_logits(loaded, tokens),
                               atol=1e-4, rtol=0)


def test_our_float32_greedy_ids_equal_transformers_argmax(models_dir, exported):
    """Three prompts decoded together, 20 tokens each, by the API in float32 and by
    transformers' greedy generate on the export, one prompt at a time."""
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(exported)).eval()
    gpt2 = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=3,
                                precision='float32')
    eot = gpt2.encoder.eot_token
    prompts = [gpt2.encode('Why did the chicken'), [eot], gpt2.encode('Knock knock|Who is there')]
    try:
        ours = gpt2.generate(prompts, length=20, top_k=1, stop_at_endoftext=False,
                             return_tokens=True)
    finally:
        gpt2.close()
    with torch.no_grad():
        theirs = [hf.generate(torch.tensor([p]), do_sample=False, max_new_tokens=20,
                              min_new_tokens=20, pad_token_id=eot)[0, len(p):].tolist()
                  for p in prompts]
    assert ours == theirs


@pytest.fixture(scope='module')
def saved_by_transformers(models_dir, tmp_path_factory):
    """A GPT2LMHeadModel of the tiny model's shape built and saved by transformers itself,
    with random biases and layer-norm gains and biases (its own initialisation leaves them
    at 0 and 1), beside the tiny model's vocabulary as vocab.json and merges.txt (how the
    Hub's GPT-2 folders hold it; transformers 5 itself writes only tokenizer.json)."""
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    loaded = model_dir.load('tiny', models_dir)
    hparams, eot = loaded.hparams, loaded.encoder.eot_token
    config = transformers.GPT2Config(vocab_size=hparams.n_vocab, n_positions=hparams.n_ctx,
                                     n_embd=hparams.n_embd, n_head=hparams.n_head,
                                     n_layer=hparams.n_layer, bos_token_id=eot,
                                     eos_token_id=eot)
    torch.manual_seed(1)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in hf.named_parameters():
            if '.ln_' in name and name.endswith('.weight'):
                parameter.normal_(1, 0.2)
            elif name.endswith('.bias'):
                parameter.normal_(0, 0.1)
            elif name.startswith('transformer.h.'):
                parameter.normal_(0, 0.2)
    out = tmp_path_factory.mktemp('hf') / 'saved-by-transformers'
    hf.save_pretrained(str(out))
    shutil.copyfile(f'{loaded.path}/encoder.json', out / 'vocab.json')
    shutil.copyfile(f'{loaded.path}/vocab.bpe', out / 'merges.txt')
    return hf, out


def test_import_of_a_model_saved_by_transformers_gives_its_logits(saved_by_transformers,
                                                                   tmp_path):
    """Not our own export: a name mapping wrong both ways would survive the round trip."""
    hf, saved = saved_by_transformers
    huggingface_command.import_(str(saved), str(tmp_path / 'imported'))
    loaded = model_dir.load('imported', str(tmp_path))
    tokens = np.random.RandomState(0).randint(0, loaded.hparams.n_vocab, size=[2, 30])
    np.testing.assert_allclose(our_logits(loaded, tokens), their_logits(hf, tokens),
                               atol=1e-4, rtol=0)


def test_unsupported_architecture_is_refused(exported, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(exported, bad)
    config = json.loads((bad / 'config.json').read_text())
    (bad / 'config.json').write_text(json.dumps({**config, 'activation_function': 'relu'}))
    with pytest.raises(UserError, match="activation_function 'relu' is not GPT-2's"):
        huggingface_command.import_(str(bad), str(tmp_path / 'out'))
    (bad / 'config.json').write_text(json.dumps({**config, 'model_type': 'llama'}))
    with pytest.raises(UserError, match="model_type 'llama'; only gpt2"):
        huggingface_command.import_(str(bad), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_shape_that_does_not_match_config_is_named(exported, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(exported, bad)
    config = json.loads((bad / 'config.json').read_text())
    (bad / 'config.json').write_text(json.dumps({**config, 'n_positions': 32}))
    with pytest.raises(UserError, match=r'transformer.wpe.weight has shape \[64, 32\], '
                                        r'config.json implies \[32, 32\]'):
        huggingface_command.import_(str(bad), str(tmp_path / 'out'))
    assert not os.path.exists(tmp_path / 'out.partial')


def test_missing_files_and_mismatched_vocabulary(exported, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(exported, bad)
    os.remove(bad / 'merges.txt')
    with pytest.raises(UserError, match='bad: missing merges.txt'):
        huggingface_command.import_(str(bad), str(tmp_path / 'out'))
    shutil.copyfile(exported / 'merges.txt', bad / 'merges.txt')
    config = json.loads((bad / 'config.json').read_text())
    vocab = json.loads((bad / 'vocab.json').read_text())
    vocab['<|extra|>'] = config['vocab_size']
    (bad / 'vocab.json').write_text(json.dumps(vocab))
    with pytest.raises(UserError, match='more than the .* rows of the token embedding'):
        huggingface_command.import_(str(bad), str(tmp_path / 'out'))
