"""A run's validation (train/evaluation.py): its loss against an independent forward
pass (fixtures.numpy_gpt2); early stopping's count and samples are tested through the
loop, tests/train/test_training.py."""

import numpy as np
import pytest
import tensorflow as tf

from fixtures import numpy_gpt2
from fixtures import train_config as config
from gpt2tune.train import training


def test_validation_loss_matches_independent_forward_pass(tmp_path, models_dir, corpus):
    c = config(tmp_path, models_dir, corpus, val_every=1, val_batch_count=2,
               val_batch_size=2)
    t = training.Trainer(c)
    loss = t.evaluation.validation_loss()
    t.close()
    ckpt = t.model_dir.checkpoint
    weights = {name: tf.train.load_checkpoint(ckpt).get_tensor(name).astype(float)
               for name, _ in tf.train.list_variables(ckpt)}
    expected = []
    for batch in t.val_batches:
        row_losses = []
        for row in batch:
            logits = numpy_gpt2(weights, t.model_dir.hparams, row)[:-1]
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            row_losses.append(-logp[np.arange(len(row) - 1), row[1:]].mean())
        expected.append(np.mean(row_losses))
    assert loss == pytest.approx(np.mean(expected), abs=1e-4)
