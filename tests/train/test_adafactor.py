import numpy as np
import tensorflow as tf

from gpt2tune.train import adafactor

tf1 = tf.compat.v1


def numpy_adafactor(values, grads_per_step, lr):
    """An independent Adafactor: Shazeer & Stern's Algorithms 4 and 5 with beta2 at step
    t of 1 - t^-0.8, update clipping at d = 1 and no relative step size."""
    values = [v.astype(np.float64) for v in values]
    state = [None] * len(values)
    for t, grads in enumerate(grads_per_step, start=1):
        beta2 = 1 - t ** -0.8
        for i, g in enumerate(grads):
            g2 = g.astype(np.float64) ** 2 + 1e-30
            if g.ndim >= 2:
                r, c = state[i] or (0, 0)
                r = beta2 * r + (1 - beta2) * g2.mean(-1)
                c = beta2 * c + (1 - beta2) * g2.mean(-2)
                state[i] = (r, c)
                v_hat = r[..., :, None] * c[..., None, :] / r.mean(-1)[..., None, None]
            else:
                v_hat = beta2 * (state[i] if state[i] is not None else 0) + (1 - beta2) * g2
                state[i] = v_hat
            u = g / np.sqrt(v_hat)
            u /= max(1.0, np.sqrt((u ** 2).mean()))
            values[i] = values[i] - lr * u
    return values


def test_steps_equal_an_independent_implementation():
    rs = np.random.RandomState(0)
    shapes = [(1, 6, 4), (5, 3), (7,)]
    values = [rs.normal(size=s).astype(np.float32) for s in shapes]
    # Gradients of varying scale, so that clipping acts on some steps and not others.
    grads = [[rs.normal(scale=10.0 ** rs.uniform(-3, 1), size=s).astype(np.float32)
              for s in shapes] for _ in range(4)]
    with tf.Graph().as_default(), tf1.Session() as sess:
        variables = [tf1.Variable(v) for v in values]
        feeds = [tf1.placeholder(tf.float32, s) for s in shapes]
        step = tf1.train.get_or_create_global_step()
        train_op = adafactor.apply_gradients(zip(feeds, variables, strict=True), 0.01, step)
        sess.run(tf1.global_variables_initializer())
        for g in grads:
            sess.run(train_op, dict(zip(feeds, g, strict=True)))
        ours = sess.run(variables)
        assert sess.run(step) == 4
    for got, want in zip(ours, numpy_adafactor(values, grads, 0.01), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_state_of_a_matrix_is_one_row_and_one_column():
    with tf.Graph().as_default():
        w = tf1.get_variable('model/h0/mlp/c_fc/w', [1, 768, 3072])
        adafactor.apply_gradients([(tf.ones_like(w), w)], 0.01,
                                  tf1.train.get_or_create_global_step())
        state = {v.op.name: v.shape.as_list() for v in tf1.global_variables()
                 if 'Adafactor' in v.op.name}
    assert state == {'model/h0/mlp/c_fc/w/Adafactor/v_row': [1, 768],
                     'model/h0/mlp/c_fc/w/Adafactor/v_col': [1, 3072]}
