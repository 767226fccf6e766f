"""Optimizers and learning-rate schedules by name (train/optimizers.py)."""

import pytest

from gpt2tune.train.optimizers import learning_rate_at
from gpt2tune.train.train_config import TrainConfig


def test_learning_rate_schedules():
    c = TrainConfig(dataset='x', learning_rate=1.0, warmup_steps=2, steps=12,
                    lr_schedule='cosine', min_lr=0.1)
    lrs = [learning_rate_at(c, s) for s in range(12)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5)
    linear = TrainConfig(dataset='x', learning_rate=1.0, steps=10, lr_schedule='linear')
    assert learning_rate_at(linear, 5) == pytest.approx(0.5)
    assert learning_rate_at(TrainConfig(dataset='x'), 99) == 0.00002
