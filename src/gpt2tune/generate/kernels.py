"""What the decoder computes between two attentions, in the precision chosen once per
loaded model: layer norms, the weight products, GELU, the residual sums (numpy_model.py
does the embeddings and each row's attention). Two forms: NumPy (float32 on a CPU, and
int8's products through ONNX Runtime) and TensorFlow (bfloat16, and float32 where a GPU
is).

Decoding is batch-invariant: a row's numbers never depend on the rows beside it. A
library's matrix product does not promise that (it picks another algorithm, blocking or
vector width by the number of rows), so each kernel says how it keeps it:

- NumPy, float32. A decoding step's products are row_product.py's, whose code for a row
  is chosen by the weights' column alone: invariant by construction, at the speed of
  OpenBLAS's batched product. A prompt (one sequence, prefilled alone) is one OpenBLAS
  matrix product, the fastest for many positions.
- NumPy, int8 (asked for, never auto's: it changes the model's numbers): every product,
  the output projection's too, in 8-bit integers (int8_product.py), exact int32 sums of
  rows quantized each alone: invariant by construction, for a step's rows and a prompt's
  positions alike.
- TensorFlow: bfloat16 operands (oneDNN: AMX or AVX512_BF16 where the CPU has them,
  emulated elsewhere) with float32 accumulation and products rounded to bfloat16, or
  float32; the rest float32. The matrices are held once, in the products' type,
  transposed to [nf, nx] (the layout oneDNN reads fastest for few rows); what lies
  between two attentions is one graph run, on the GPU where there is one. A row's numbers
  there depend on how many rows share the run (oneDNN's products of 1, 4 or 8 rows differ
  without bfloat16 instructions, and so do TensorFlow's sums for the layer norm), never
  on its place among a fixed number; so a decoding step runs tiles of exactly TILE rows,
  padded with zeros.

    kernel = new_kernel('float32', weights, hparams)   # weights: release names
    x, qkv = kernel.first(x, rows=True)                 # x [n, embd] -> qkv [n, 3 embd]
    x, qkv = kernel.after_attention(0, x, a, rows=True) # a: layer 0's attention [n, embd]
    _, logits = kernel.after_attention(n_layer - 1, x, a, rows=True)   # [n, n_vocab]
"""

import math

import numpy as np

from gpt2tune.errors import UserError

# int8 changes the model's numbers (weights and activations rounded to 8 bits), so auto
# never picks it: a user asks for it.
PRECISIONS = ('auto', 'float32', 'bfloat16', 'int8')
# The rows of every TensorFlow run of a decoding step: more go in further runs.
TILE = 16
# Python floats, not NumPy's: a float64 NumPy scalar would turn float32 arrays into
# float64 and every product into a copy of the weights.
GELU_SCALE = math.sqrt(2 / math.pi)


def choose_precision(requested):
    """(precision, reason) for --precision `requested`. auto is float32: it decodes one
    row faster than bfloat16 where measured (an Intel Xeon with AMX, bench/bench_sample.py),
    bfloat16 being the faster at 8 and 16 rows there."""
    if requested not in PRECISIONS:
        raise UserError(f'--precision {requested}: expected one of {", ".join(PRECISIONS)}')
    if requested != 'auto':
        return requested, '--precision'
    return 'float32', 'auto: the fastest at one row; --precision bfloat16 for many rows'


def decoding_line(kernel, reason):
    """What the sampling scripts and the server print once the weights are loaded."""
    return f'decoding: {kernel.describe()} ({reason})'


def choose_form(precision):
    """'numpy' for float32 on a CPU and for int8 (ONNX Runtime on the CPU, even where a
    GPU is); 'tensorflow' for bfloat16, and for float32 where a GPU is."""
    if precision == 'bfloat16':
        return 'tensorflow'
    if precision == 'int8':
        return 'numpy'
    from gpt2tune import resources  # the machine's facts import what imports this module
    return 'tensorflow' if resources.gpus() else 'numpy'


def new_kernel(precision, weights, hparams, form=None, int8_form=None):
    """The kernel of `precision` ('float32', 'bfloat16' or 'int8') over `weights`
    (release names -> float32 arrays, the blocks' matrices [nx, nf]), in `form`
    (choose_form's when None) and, for int8, `int8_form` (int8_product's choice for this
    CPU when None); the tests force each."""
    if (form or choose_form(precision)) == 'numpy':
        if precision == 'int8':
            return Int8Kernel(weights, hparams, int8_form)
        if precision != 'float32':
            raise ValueError(f'no {precision} kernel in NumPy')
        return NumpyKernel(weights, hparams)
    if precision == 'int8':
        raise ValueError('no int8 kernel in TensorFlow')
    return TensorFlowKernel(weights, hparams, precision)


def products(weights):
    """(name, matrix) of the weights a kernel multiplies by: the blocks' [nx, nf] and wte
    [n_vocab, n_embd] (wpe is only looked up, by numpy_model)."""
    return [(name, a) for name, a in weights.items() if a.ndim == 2 and name != 'model/wpe']


def norm(x, g, b, epsilon=1e-5):
    d = x - x.mean(-1, keepdims=True)
    d *= 1 / np.sqrt(np.square(d).mean(-1, keepdims=True) + epsilon)
    d *= g
    d += b
    return d


def gelu(x):
    """OpenAI's tanh approximation, computed in place in x's one temporary: a prompt's
    MLP activations are large and NumPy works on one core."""
    t = np.square(x)
    t *= 0.044715
    t += 1
    t *= x
    t *= GELU_SCALE
    np.tanh(t, out=t)
    t += 1
    t *= x
    t *= 0.5
    return t


class NumpyKernel:
    precision = 'float32'
    # The BLAS threads a prompt's attention may use (numpy_model.py), None for all: here
    # the prompt's products are NumPy's BLAS's too, on all its threads.
    prompt_blas_threads = None

    def __init__(self, weights, hparams):
        # Imported here: Numba compiles on first use, only where this kernel decodes.
        from gpt2tune.generate import row_product
        self.row_product = row_product.product
        self.n_layer = hparams.n_layer
        self.w = {name: a for name, a in weights.items() if a.ndim == 1}  # gains, biases
        self.matrices = {name: self._hold(name, a) for name, a in products(weights)}

    def _hold(self, name, a):
        """Every matrix held once, as [nf, nx] (wte is [n_vocab, n_embd] already): the rows
        of a step read each output's weights contiguously; a prompt multiplies by the
        transposed view."""
        return a if name == 'model/wte' else np.ascontiguousarray(a.T)

    def describe(self):
        return 'float32 (NumPy; Numba-compiled row-invariant products)'

    def first(self, x, rows):
        return x, self._qkv(0, x, rows)

    def after_attention(self, layer, x, a, rows):
        """(x, the next layer's qkv) after block `layer`'s attention a, or (None, logits)
        after the last block."""
        w, p = self.w, f'model/h{layer}'
        x = x + self._dense(a, f'{p}/attn/c_proj', rows)
        h = gelu(self._dense(norm(x, w[f'{p}/ln_2/g'], w[f'{p}/ln_2/b']), f'{p}/mlp/c_fc',
                             rows))
        x = x + self._dense(h, f'{p}/mlp/c_proj', rows)
        if layer + 1 < self.n_layer:
            return x, self._qkv(layer + 1, x, rows)
        return None, self._product(norm(x, w['model/ln_f/g'], w['model/ln_f/b']),
                                   'model/wte', rows)

    def _qkv(self, layer, x, rows):
        w, p = self.w, f'model/h{layer}'
        return self._dense(norm(x, w[f'{p}/ln_1/g'], w[f'{p}/ln_1/b']), f'{p}/attn/c_attn',
                           rows)

    def _dense(self, x, scope, rows):
        y = self._product(x, f'{scope}/w', rows)
        y += self.w[f'{scope}/b']
        return y

    def _product(self, x, name, rows):  # x [n, nx], matrix [nf, nx] -> [n, nf]
        w_t = self.matrices[name]
        return self.row_product(x, w_t) if rows else x @ w_t.T

    def close(self):
        pass


class Int8Kernel(NumpyKernel):
    """The float32 kernel's arithmetic with every matrix product in 8-bit integers
    (int8_product.py), the output projection's too: the same product for a step's rows and
    a prompt's positions, exact in integers, so batch-invariant by construction."""

    precision = 'int8'
    # The products run in ONNX Runtime's thread pool, whose threads wait spinning.
    prompt_blas_threads = 1

    def __init__(self, weights, hparams, form=None):
        from gpt2tune import resources
        from gpt2tune.generate import int8_product
        self.int8_product = int8_product
        self.form = form or int8_product.choose_form(resources.cpu_flags())
        super().__init__(weights, hparams)

    def _hold(self, name, a):
        """As [nx, nf]: wte's transpose quantized per token, the logits' output column."""
        return self.int8_product.Int8Matrix(a.T if name == 'model/wte' else a, self.form)

    def describe(self):
        return (f'int8 (ONNX Runtime MatMulInteger {self.form}; weights per output channel, '
                'activations per row)')

    def _product(self, x, name, rows):
        return self.matrices[name](x)


class TensorFlowKernel:
    def __init__(self, weights, hparams, precision):
        from gpt2tune import cli
        tf = cli.start_tensorflow(report_devices=False)
        self.precision, self.dtype = precision, tf.as_dtype(precision)
        self.device = 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'
        # On the CPU the products run in TensorFlow's thread pool, whose threads wait
        # spinning.
        self.prompt_blas_threads = 1 if self.device == 'CPU' else None
        self.n_layer = hparams.n_layer
        self.graph = tf.Graph()
        with self.graph.as_default():
            loads, runs = self._build(tf, weights, hparams)
            self.sess = tf.compat.v1.Session(graph=self.graph)
            for initializer, value, array in loads:
                self.sess.run(initializer, {value: array})
        # A callable from options runs without session.run's per-call Python work (its
        # make_callable falls back to run() when given feeds).
        from tensorflow.core.protobuf import config_pb2
        self.runs = [self.sess._make_callable_from_options(config_pb2.CallableOptions(
            feed=[t.name for t in feeds], fetch=[t.name for t in outputs]))
            for outputs, feeds in runs]

    def _build(self, tf, weights, hparams):
        """The graph: a run for what comes before the first attention and one after each
        (runs[i](x, a) for block i - 1's attention a). Returns (what loads the
        variables, each run's (outputs, feeds))."""
        from gpt2tune.model import model
        tf1 = tf.compat.v1
        loads = []

        def held(name):
            """A variable holding weights[name] (a matrix in the products' type,
            transposed)."""
            array = weights[name]
            if name == 'model/wte':  # the output projection, [n_vocab, n_embd] already
                array = array.astype(self.dtype.as_numpy_dtype)
            elif array.ndim == 2:
                array = array.T.astype(self.dtype.as_numpy_dtype)
            value = tf1.placeholder(tf.as_dtype(array.dtype), array.shape)
            variable = tf1.Variable(value, trainable=False, use_resource=True)
            loads.append((variable.initializer, value, array))
            return variable.value()

        values = {name: held(name) for name in weights if name != 'model/wpe'}

        def norm(x, scope):  # model.norm, its gain and bias read from `values`
            def read(getter, name, *args, **kwargs):
                return values[name]
            with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=read):
                return model.norm(x, scope)

        def dense(x, scope):
            return product(x, values[f'{scope}/w']) + values[f'{scope}/b']

        def product(x, w):  # x [n, nx] float32, w [nf, nx] -> [n, nf] float32
            return tf.cast(tf.matmul(tf.cast(x, w.dtype), w, transpose_b=True), tf.float32)

        runs = []
        for layer in range(hparams.n_layer + 1):
            x = tf1.placeholder(tf.float32, [None, hparams.n_embd])
            a = tf1.placeholder(tf.float32, [None, hparams.n_embd])
            feeds, y = [x], x
            if layer > 0:
                p = f'model/h{layer - 1}'
                feeds.append(a)
                y = y + dense(a, f'{p}/attn/c_proj')
                h = model.gelu(dense(norm(y, f'{p}/ln_2'), f'{p}/mlp/c_fc'))
                y = y + dense(h, f'{p}/mlp/c_proj')
            if layer < hparams.n_layer:
                p = f'model/h{layer}'
                qkv = dense(norm(y, f'{p}/ln_1'), f'{p}/attn/c_attn')
                outputs = [y, qkv] if layer > 0 else [qkv]  # y is x before the first
            else:
                outputs = [product(norm(y, 'model/ln_f'), values['model/wte'])]
            runs.append((outputs, feeds))
        return loads, runs

    def describe(self):
        return f'{self.precision} (TensorFlow on the {self.device}, tiles of {TILE} rows)'

    def first(self, x, rows):
        return x, self._run(0, rows, x)[0]

    def after_attention(self, layer, x, a, rows):
        out = self._run(layer + 1, rows, x, a)
        return (None, out[0]) if layer + 1 == self.n_layer else tuple(out)

    def _run(self, index, rows, *inputs):
        """runs[index] over the inputs [n, embd], padded with zeros to a whole number of
        tiles: the rows of a decoding step a tile at a time, a prompt's positions at once
        (a shape oneDNN has seen before: a new one costs it more than the product)."""
        run, n = self.runs[index], len(inputs[0])
        padded = [np.zeros([-(-n // TILE) * TILE, x.shape[1]], np.float32) for x in inputs]
        for x, into in zip(inputs, padded, strict=True):
            into[:n] = x
        if not rows:
            return [out[:n] for out in run(*padded)]
        pieces = [run(*(x[i:i + TILE] for x in padded)) for i in range(0, n, TILE)]
        return [np.concatenate(parts)[:n] for parts in zip(*pieces, strict=True)]

    def close(self):
        self.sess.close()
