"""The graph of one training step: loss, gradients (accumulated, averaged across
workers), clipping, weight decay and the optimizer's update; with float16 products, the
dynamic loss scale that keeps small gradients from vanishing in float16. And the one way
to open a step, which train.py, the doctor and bench_train share.

    t = open_train_step(hparams, config, step_choices(config, hparams), checkpoint=ckpt)
    t.sess.run((t.g.train_op, t.g.step_loss), {t.g.context: tokens, t.g.lr: 1e-4})
    t.close()
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf

from gpt2tune import resources
from gpt2tune.model import lora, model, model_dir
from gpt2tune.train import distributed, train_memory
from gpt2tune.train.optimizers import OPTIMIZERS
from gpt2tune.train.train_config import is_trained

tf1 = tf.compat.v1


@dataclasses.dataclass
class TrainGraph:
    context: tf.Tensor
    context_in: tf.Tensor
    loss_mask: tf.Tensor
    lr: tf.Tensor
    loss: tf.Tensor  # of the batch fed
    step_loss: tf.Tensor  # of the whole step: all micro-batches, all workers
    train_op: tf.Operation
    grad_norm: tf.Tensor
    accumulate: tf.Operation | None
    reset: tf.Operation | None
    global_step: tf.Variable
    stop_in: tf.Tensor  # 1 when this worker was asked to stop
    stop_any: tf.Tensor  # above 0 when any worker was: all stop after this step
    wait_for_chief: tf.Operation
    loss_scale: tf.Tensor  # the scale this step's gradients were computed at (1: none)
    overflow: tf.Tensor  # true when they overflowed: the step was skipped


# Dynamic loss scaling for float16 (Micikevicius et al. 2018), as PyTorch's GradScaler
# does it: start high, halve and skip the step on an overflow, double after a run of
# steps without one.
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_GROWTH_STEPS = 2000


class LossScale:
    """The scale and the steps since its last change, as variables: checkpoints keep them,
    so a resumed run goes on with the scale it had."""

    def __init__(self):
        self.variable = tf1.Variable(INITIAL_LOSS_SCALE, trainable=False, name='loss_scale')
        self.good_steps = tf1.Variable(0, trainable=False, name='loss_scale_good_steps')
        self.value = self.variable.read_value()  # one read: the step's scale, before update

    def update(self, finite):
        grow = self.good_steps + 1 >= LOSS_SCALE_GROWTH_STEPS
        scale = tf.where(finite, tf.where(grow, self.value * 2, self.value), self.value / 2)
        good = tf.where(finite & ~grow, self.good_steps + 1, 0)
        return tf.group(self.variable.assign(scale), self.good_steps.assign(good))


def masked_loss(hparams, context, context_in, loss_mask, recompute, dtype, adapters=None):
    """Mean next-token loss over the targets the mask keeps."""
    logits = model.model(hparams, context_in, recompute=recompute, dtype=dtype,
                         lora=adapters)['logits']
    weights = loss_mask[:, 1:]
    losses = model.token_losses(logits, context)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def build_train_graph(hparams, c, recompute, dtype=tf.float32, cluster=None, *, adapters):
    """The step's graph, with `adapters` (c's lora.Adapters, or None); with several
    workers, gradients and the reported loss are averaged across them (see
    distributed.py)."""
    cluster = cluster or distributed.Cluster()
    context = tf1.placeholder(tf.int32, [None, None], 'context')
    context_in = tf1.placeholder_with_default(context, [None, None], 'context_in')
    loss_mask = tf1.placeholder_with_default(tf.ones_like(context, tf.float32),
                                             [None, None], 'loss_mask')
    lr = tf1.placeholder(tf.float32, [], 'learning_rate')
    stop_in = tf1.placeholder_with_default(0.0, [], 'stop_in')
    loss = masked_loss(hparams, context, context_in, loss_mask, recompute, dtype, adapters)
    # With --lora_rank the adapters (and --also_train), not the base weights.
    train_vars = [v for v in tf1.trainable_variables() if v.name.startswith('model/')
                  and is_trained(c, v.name, hparams.n_layer)]
    scale = LossScale() if dtype == tf.float16 else None
    scaled_loss = loss * scale.value if scale else loss
    grads = [tf.convert_to_tensor(g) for g in tf.gradients(scaled_loss, train_vars)]
    global_step = tf1.train.get_or_create_global_step()
    accumulate = reset = None
    step_loss = loss
    if c.accumulate_gradients > 1:
        sums = [tf1.Variable(tf.zeros(v.shape), trainable=False, name='accum',
                             collections=[tf1.GraphKeys.LOCAL_VARIABLES])
                for v in train_vars + [loss]]
        reset = tf.group([s.assign(tf.zeros_like(s)) for s in sums])
        accumulate = tf.group([s.assign_add(g)
                               for s, g in zip(sums, grads + [loss], strict=True)])
        *grads, step_loss = [s / c.accumulate_gradients for s in sums]
    # The stop flag rides with the gradients, so workers agree on the step to stop after.
    *grads, step_loss, stop_any = distributed.all_mean(grads + [step_loss, stop_in], cluster,
                                                       first_key=1)
    wait_for_chief = distributed.barrier(cluster, instance_key=len(grads) + 3)
    if scale is None:
        grad_norm = tf.linalg.global_norm(grads)
        train_op = apply_gradients(c, grads, train_vars, lr, global_step, grad_norm)
        loss_scale, overflow = tf.constant(1.0), tf.constant(False)
    else:
        train_op, grad_norm, overflow = apply_scaled_gradients(
            c, grads, train_vars, lr, global_step, scale)
        loss_scale = scale.value
    return TrainGraph(context, context_in, loss_mask, lr, loss, step_loss, train_op,
                      grad_norm, accumulate, reset, global_step, stop_in, stop_any,
                      wait_for_chief, loss_scale, overflow)


def apply_scaled_gradients(c, grads, train_vars, lr, global_step, scale):
    """Unscale; take the step only if every gradient is finite (else count it, skipped);
    then adjust the scale. Returns (train op, gradient norm, overflow)."""
    grads = [g / scale.value for g in grads]
    grad_norm = tf.linalg.global_norm(grads)
    finite = tf.math.is_finite(grad_norm)

    def step():
        with tf.control_dependencies([apply_gradients(c, grads, train_vars, lr, global_step,
                                                      grad_norm)]):
            return tf.constant(True)

    def skip():
        with tf.control_dependencies([global_step.assign_add(1)]):
            return tf.constant(True)

    stepped = tf.cond(finite, step, skip)
    with tf.control_dependencies([stepped]):
        train_op = scale.update(finite)
    return train_op, grad_norm, ~finite


def apply_gradients(c, grads, train_vars, lr, global_step, grad_norm):
    """Clip by global norm, decay weights (not biases and norms), take the step."""
    if c.grad_clip:
        grads, _ = tf.clip_by_global_norm(grads, c.grad_clip, use_norm=grad_norm)
    # The decay writes the weights: only after the gradients exist, that is after the
    # forward pass has read them, or the step would depend on the order TF picks.
    with tf.control_dependencies(grads):
        decays = [v.assign_sub(lr * c.weight_decay * v) for v in train_vars
                  if c.weight_decay and v.shape.rank >= 2]
    with tf.control_dependencies(decays):
        pairs = list(zip(grads, train_vars, strict=True))
        return OPTIMIZERS[c.optimizer].apply(pairs, lr, global_step)


# What a step is built with, chosen from the settings and the machine, with the reasons
# the trainer prints: recompute each block in the backward pass, the products' dtype; and
# the LoRA adapters of the settings (lora.Adapters, or None), built here once.
StepChoices = collections.namedtuple(
    'StepChoices', 'recompute recompute_reason dtype precision_reason adapters')


def step_choices(c, hparams):
    recompute, recompute_reason = train_memory.choose_memory_saving(c, hparams)
    dtype, precision_reason = resources.choose_precision(c.precision)
    return StepChoices(recompute, recompute_reason, dtype, precision_reason,
                       lora.from_config(c))


@dataclasses.dataclass
class TrainSession:
    """An opened training step: its own graph (build more into it under
    `graph.as_default()`), the session over it and the step's tensors."""
    graph: tf.Graph
    sess: tf1.Session
    g: TrainGraph

    def close(self):
        self.sess.close()


def open_train_step(hparams, c, choices, cluster=None, checkpoint=None):
    """The step's graph and a session with every variable initialised but the model's
    weights, loaded from `checkpoint` if given (else the caller restores them: a run
    folder resumes the optimizer's state too). A seeded run seeds the graph, and on a GPU
    turns on TensorFlow's op determinism."""
    cluster = cluster or distributed.Cluster()
    if resources.needs_op_determinism(c.seed):
        tf.config.experimental.enable_op_determinism()
    graph = tf.Graph()
    with graph.as_default(), tf.device(cluster.device):
        if c.seed is not None:
            tf1.set_random_seed(c.seed)
        g = build_train_graph(hparams, c, choices.recompute, choices.dtype, cluster,
                              adapters=choices.adapters)
        sess = tf1.Session(cluster.target, graph=graph, config=cluster.config)
        try:
            initialize(sess)
            if checkpoint is not None:
                model_dir.restore(sess, checkpoint)
        except BaseException:
            sess.close()
            raise
    return TrainSession(graph, sess, g)


def initialize(sess):
    """Initialise every variable of the graph but the model's weights, which come from a
    checkpoint (initialising them too would hold two copies of the weights while
    restoring). Those that start at zero (Adam's moments, gradient sums) get fed zeros:
    computed in the graph, such a start value is folded into a constant that the session
    keeps, and once the optimizer has written the variable the constant is a second copy
    for the whole run (docs/performance.md has what this saved)."""
    weights = {v.name for v in model_dir.model_variables()}
    variables = [v for v in tf1.global_variables() + tf1.local_variables()
                 if v.name not in weights]
    zeros = {}
    for v in variables:
        value = v.initial_value
        if value.op.type == 'Fill' and tf.get_static_value(value.op.inputs[1]) == 0:
            zeros[value] = np.zeros(value.shape, value.dtype.as_numpy_dtype)
    sess.run([v.initializer for v in variables], zeros)
