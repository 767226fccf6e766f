"""OpenAI's release layout for GPT-2, TensorFlow-free: the file names of a model directory
and the special token. Every module that names one of these files or the token takes it
from here.

    models/124M/
      checkpoint                      (state file; paths relative to this folder)
      model.ckpt.index, model.ckpt.data-00000-of-00001
      hparams.json, encoder.json, vocab.bpe

    os.path.join(directory, release.HPARAMS)
"""

HPARAMS = 'hparams.json'
ENCODER = 'encoder.json'  # token -> id
MERGES = 'vocab.bpe'  # the BPE merges, in order
VOCAB_FILES = (ENCODER, MERGES)
CHECKPOINT_STATE = 'checkpoint'  # TensorFlow's file naming the newest checkpoint
CHECKPOINT = 'model.ckpt'  # the weights' prefix: model.ckpt.index, model.ckpt.data-*

ENDOFTEXT = '<|endoftext|>'  # separates documents; token 50256 in GPT-2's vocabulary
