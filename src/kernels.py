"""How the decoder multiplies by its weight matrices: the precision, chosen once per loaded
model, and the products of that precision.

Decoding is batch-invariant: a row's numbers never depend on the rows beside it. A
product of several rows must then give each row what it would alone, which a library's
matrix product does not promise (it picks another algorithm, blocking or vector width by
the number of rows). So each kernel has two products:

- `rows(x, name)`, x [rows, nx] of independent sequences (a decoding step): each row
  gets the same numbers however many rows share the call and wherever it stands;
- `sequence(x, name)`, x [positions, nx] of one sequence (its prefill): any product,
  since a sequence is always prefilled alone.

The kernels:

- 'float32': NumPy (OpenBLAS). Its product of one row (a matrix-vector product) is the
  fastest reader of the weights, and its products of 1 and of 2+ rows differ in the last
  bits; so `rows` gives every row its own matrix-vector product. Invariant by
  construction; n rows read the weights n times.
- 'bfloat16': TensorFlow with bfloat16 operands (oneDNN: AMX or AVX512_BF16 where the
  CPU has them, emulated elsewhere), float32 accumulation, results rounded to bfloat16.
  Weights are held once, in bfloat16, transposed to [nf, nx] (the layout oneDNN reads
  fastest for few rows). `rows` multiplies up to TILE rows in one product where this
  machine's kernel is row-invariant, checked when the weights load (every count of rows
  from 1 to TILE, the row first and last among random others); elsewhere one row per
  product.

    kernel = new_kernel('bfloat16', {'model/h0/mlp/c_fc/w': w, ...})   # w [nx, nf]
    y = kernel.rows(x, 'model/h0/mlp/c_fc/w')                          # [rows, nf]
"""

import numpy as np

import resources
from cli import UserError

PRECISIONS = ('auto', 'float32', 'bfloat16')
# The most rows one bfloat16 product takes: more go in further products.
TILE = 16


def choose_precision(requested):
    """(precision, reason) for --precision `requested`: 'auto' is bfloat16 where the CPU
    has bfloat16 instructions, else float32."""
    if requested not in PRECISIONS:
        raise UserError(f'--precision {requested}: expected one of {", ".join(PRECISIONS)}')
    if requested != 'auto':
        return requested, '--precision'
    if resources.cpu_has_bfloat16():
        return 'bfloat16', 'auto: this CPU has bfloat16 instructions'
    return 'float32', 'auto: this CPU has no bfloat16 instructions'


def new_kernel(precision, matrices, *, rows_per_product=None):
    """The kernel of `precision` ('float32' or 'bfloat16') over `matrices` (name ->
    float32 [nx, nf]). `rows_per_product` (bfloat16 only): 1 or TILE, else checked on
    this machine."""
    if precision == 'float32':
        return Float32Kernel(matrices)
    return BFloat16Kernel(matrices, rows_per_product)


class Float32Kernel:
    precision = 'float32'

    def __init__(self, matrices):
        self.matrices = matrices

    def describe(self):
        return 'float32 (NumPy, one matrix-vector product per row)'

    def rows(self, x, name):
        # [rows, 1, nx] @ [nx, nf]: NumPy makes one matrix-vector product per row.
        return np.matmul(x[:, None], self.matrices[name])[:, 0]

    def sequence(self, x, name):
        return x @ self.matrices[name]


class BFloat16Kernel:
    precision = 'bfloat16'

    def __init__(self, matrices, rows_per_product=None):
        import tensorflow as tf
        tf1 = tf.compat.v1
        self.graph = tf.Graph()
        self.products, loads = {}, []
        with self.graph.as_default():
            for name, w in matrices.items():
                nx, nf = w.shape
                value = tf1.placeholder(tf.bfloat16, [nf, nx])
                weight = tf1.Variable(value, trainable=False, use_resource=True)
                x = tf1.placeholder(tf.float32, [None, nx])
                y = tf.matmul(tf.cast(x, tf.bfloat16), weight.value(), transpose_b=True)
                self.products[name] = (x, tf.cast(y, tf.float32))
                loads.append((weight.initializer, value, name))
        self.sess = tf1.Session(graph=self.graph)
        self.calls = {}
        for initializer, value, name in loads:
            w = matrices[name]
            self.sess.run(initializer, {value: w.T.astype(tf.bfloat16.as_numpy_dtype)})
            x, y = self.products[name]
            self.calls[name] = self.sess.make_callable(y, [x])
        shapes = {w.shape: name for name, w in matrices.items()}
        self.rows_per_product = rows_per_product or (
            TILE if all(row_invariant(self.calls[name], w_shape[0])
                        for w_shape, name in shapes.items()) else 1)

    def describe(self):
        how = (f'up to {self.rows_per_product} rows a product' if self.rows_per_product > 1
               else 'one row a product: this machine\'s kernel is not row-invariant')
        return f'bfloat16 (TensorFlow/oneDNN, {how})'

    def rows(self, x, name):
        call, step = self.calls[name], self.rows_per_product
        if len(x) <= step:
            return call(x)
        return np.concatenate([call(x[i:i + step]) for i in range(0, len(x), step)])

    def sequence(self, x, name):
        return self.calls[name](x)

    def close(self):
        self.sess.close()


def row_invariant(product, nx, tile=TILE, seed=0):
    """Whether product(x [rows, nx]) gives a probe row the same numbers with 1 to `tile`
    rows in the call, standing first or last among random others."""
    rs = np.random.RandomState(seed)
    others = rs.standard_normal([tile, nx]).astype(np.float32)
    probe = rs.standard_normal([1, nx]).astype(np.float32)
    alone = product(probe)[0]
    for rows in range(2, tile + 1):
        for at in (0, rows - 1):
            x = others[:rows].copy()
            x[at] = probe[0]
            if not np.array_equal(product(x)[at], alone):
                return False
    return True
