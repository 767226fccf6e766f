"""How the CPU decoder multiplies by its weight matrices, chosen once from the machine.

Sampling reads every weight once per step. For one row a product is a matrix-vector
product bound by the speed at which memory streams the weights, and NumPy's (OpenBLAS)
streams them fastest; for 8-16 rows it is bound by the CPU's arithmetic, where bfloat16
units (AMX, AVX512_BF16) do several times the float32 work. The kernels:

- 'float32': every product in NumPy, float32;
- 'bfloat16': products of two rows or more in TensorFlow with bfloat16 operands (oneDNN,
  which runs them on those units; results rounded to bfloat16, then float32), one row
  in NumPy float32 as above. It keeps a bfloat16 copy of each matrix beside the float32
  one (half as much memory again).

choose_kernel() takes GPT2_DECODER_KERNEL when set (tests and benchmarks force either
kernel on any machine with it), else 'bfloat16' where the CPU has bfloat16 instructions,
else 'float32'.

    matrix = pack(w, choose_kernel())        # w [nx, nf] float32
    y = multiply(x, matrix)                  # x [rows, nx] -> [rows, nf] float32
"""

import os

import numpy as np

import resources
from cli import UserError

KERNELS = ('float32', 'bfloat16')
KERNEL_ENV = 'GPT2_DECODER_KERNEL'


def choose_kernel():
    """(kernel, reason): the kernel named by GPT2_DECODER_KERNEL, else the machine's."""
    forced = os.environ.get(KERNEL_ENV)
    if forced:
        if forced not in KERNELS:
            raise UserError(f'{KERNEL_ENV}={forced}: expected one of {", ".join(KERNELS)}')
        return forced, f'{KERNEL_ENV} is set'
    if resources.cpu_has_bfloat16():
        return 'bfloat16', 'this CPU has bfloat16 instructions'
    return 'float32', 'this CPU has no bfloat16 instructions'


class Matrix(np.ndarray):
    """A float32 weight matrix [nx, nf] that also carries its bfloat16 copy (a TensorFlow
    tensor, `bfloat16`): it reads as the plain array everywhere, and what is computed
    from it is a plain array."""

    def __array_finalize__(self, obj):
        self.bfloat16 = None  # views and slices of a Matrix carry no copy

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return array[()] if return_scalar else array.view(np.ndarray)


def pack(w, kernel):
    """The matrix w [nx, nf] as multiply() reads it with `kernel`."""
    if kernel == 'float32':
        return w
    import tensorflow as tf
    matrix = np.asarray(w, np.float32).view(Matrix)
    matrix.bfloat16 = tf.constant(w, tf.bfloat16)
    return matrix


def multiply(x, w):
    """x [rows, nx] @ w [nx, nf] (float32, or a Matrix from pack) -> [rows, nf] float32."""
    copy = getattr(w, 'bfloat16', None)
    if copy is None or x.shape[0] < 2:
        return x @ w
    import tensorflow as tf
    return tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), copy), tf.float32).numpy()
