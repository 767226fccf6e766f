"""Optimizers and learning-rate schedules by name: the keys are train.py's choices of
--optimizer and --lr_schedule (train_config.py builds the flags from them), so a new one
is one entry here. TensorFlow is imported only when an update is built, so that
`train.py --help` answers without it.

    OPTIMIZERS['adam'].apply(pairs, lr, global_step)    # the update op
    learning_rate_at(c, step)                            # c: a TrainConfig
"""

import dataclasses
import math
from collections.abc import Callable


def apply_adam(pairs, lr, global_step):
    import tensorflow as tf
    return tf.compat.v1.train.AdamOptimizer(learning_rate=lr).apply_gradients(
        pairs, global_step=global_step)


def apply_adafactor(pairs, lr, global_step):
    from gpt2tune.train import adafactor  # imports TensorFlow
    return adafactor.apply_gradients(pairs, lr, global_step)


def apply_sgd(pairs, lr, global_step):
    import tensorflow as tf
    return tf.compat.v1.train.GradientDescentOptimizer(learning_rate=lr).apply_gradients(
        pairs, global_step=global_step)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    # (gradient-variable pairs, learning rate, global step) -> the op taking the step
    apply: Callable
    # float32 copies of each trained weight that its state and update temporaries hold at
    # the peak of a step (train_memory.py's estimate, fitted with it)
    weight_copies: float


OPTIMIZERS = {
    'adam': Optimizer(apply_adam, 2.19),
    'adafactor': Optimizer(apply_adafactor, 0.0),  # factored second moments: almost no state
    'sgd': Optimizer(apply_sgd, 0.0),
}


def constant(c, step):
    return c.learning_rate


def cosine(c, step):
    return decayed(c, step, lambda progress: 0.5 * (1 + math.cos(math.pi * progress)))


def linear(c, step):
    return decayed(c, step, lambda progress: 1 - progress)


def decayed(c, step, factor):
    """From c.learning_rate at the end of warm-up to c.min_lr at c.steps, following
    factor(progress), 1 at progress 0 and 0 at 1."""
    progress = min(1.0, (step - c.warmup_steps) / (c.steps - c.warmup_steps))
    return c.min_lr + (c.learning_rate - c.min_lr) * factor(progress)


# Each is the learning rate of a step after warm-up: (config, step) -> rate.
LR_SCHEDULES = {'constant': constant, 'cosine': cosine, 'linear': linear}


def learning_rate_at(c, step):
    """The learning rate of step `step` (0 for the first): linear warm-up, then the
    schedule c.lr_schedule."""
    if step < c.warmup_steps:
        return c.learning_rate * (step + 1) / c.warmup_steps
    return LR_SCHEDULES[c.lr_schedule](c, step)
