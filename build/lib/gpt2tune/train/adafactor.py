"""Adafactor (Shazeer & Stern, 2018, arXiv:1804.04235): Adam's per-weight step size
from second moments kept factored, one average per row and one per column of each
matrix, and no first moment. For GPT-2 1558M its state is about 2 MB where Adam's is
12.5 GB.

    train_op = adafactor.apply_gradients(zip(grads, variables), lr, global_step)

As Hugging Face's Adafactor(scale_parameter=False, relative_step=False): the learning
rate is the step size itself, on Adam's scale, so --learning_rate keeps its meaning.
"""

import tensorflow as tf

tf1 = tf.compat.v1

DECAY_RATE = 0.8  # beta2 at step t is 1 - t^-0.8: 0 at the first step (no bias to correct)
CLIP_THRESHOLD = 1.0  # each update's root mean square is at most this
EPSILON = 1e-30  # added to squared gradients, so that a zero gradient divides safely


def factored_shapes(shape):
    """Shapes of the row and column second moments of a variable of `shape`, or None
    for vectors (biases, norms), which keep a full second moment. w [1, nx, nf] has
    rows [1, nx] and columns [1, nf]."""
    if len(shape) < 2:
        return None
    return shape[:-1], shape[:-2] + shape[-1:]


def slot(var, name, shape):
    """A zero-initialised state variable named after `var`, saved with the checkpoints.
    Made in init_scope: its initializer must not wait for the step's control inputs."""
    with tf.init_scope(), tf1.variable_scope(var.op.name + '/Adafactor', reuse=False):
        return tf1.get_variable(name, shape, initializer=tf1.zeros_initializer(),
                                trainable=False)


def update(grad, var, lr, beta2):
    """The op that moves `var` one Adafactor step along `grad`."""
    grad_sq = tf.square(grad) + EPSILON
    shapes = factored_shapes(var.shape.as_list())
    if shapes is None:
        v = slot(var, 'v', var.shape)
        v_new = beta2 * v + (1 - beta2) * grad_sq
        writes = [v.assign(v_new)]
        step = grad * tf.math.rsqrt(v_new)
    else:
        row, col = slot(var, 'v_row', shapes[0]), slot(var, 'v_col', shapes[1])
        row_new = beta2 * row + (1 - beta2) * tf.reduce_mean(grad_sq, axis=-1)
        col_new = beta2 * col + (1 - beta2) * tf.reduce_mean(grad_sq, axis=-2)
        writes = [row.assign(row_new), col.assign(col_new)]
        # The rank-1 estimate of the second moments: row * col / mean(row).
        row_factor = tf.math.rsqrt(row_new / tf.reduce_mean(row_new, -1, keepdims=True))
        step = grad * row_factor[..., None] * tf.math.rsqrt(col_new)[..., None, :]
    rms = tf.sqrt(tf.reduce_mean(tf.square(step)))
    step = step / tf.maximum(1.0, rms / CLIP_THRESHOLD)
    with tf.control_dependencies(writes):
        return var.assign_sub(lr * step)


def apply_gradients(grads_and_vars, lr, global_step):
    """One step on every (gradient, variable) pair; increments global_step."""
    t = tf.cast(global_step + 1, tf.float32)
    beta2 = 1 - tf.pow(t, -DECAY_RATE)
    updates = [update(g, v, lr, beta2) for g, v in grads_and_vars]
    with tf.control_dependencies(updates):
        return global_step.assign_add(1)
