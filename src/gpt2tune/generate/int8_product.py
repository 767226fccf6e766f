"""Products in 8-bit integers: the int8 kernel's (kernels.py), through ONNX Runtime's
MatMulInteger (MLAS: AVX2, AVX512_VNNI, AMX-INT8 or NEON, chosen by the library).

A matrix w [k, n] is quantized once, per output column, symmetrically: w ~ q * scale,
q in [-127, 127]. Each row of x [m, k] is quantized on its own the same way, shifted by
128 into uint8 (zero point 128). The integer products are exact (a sum of k products of
at most 255 * 255 fits int32 with room for any GPT-2 width), so a row's numbers depend on
its own values and the weights alone: batch-invariant by construction, whatever kernel the
library picks for how many rows; then out = sums * row scale * column scale, float32.

Two integer forms, exact where they are used:
- 'u8s8': weights int8. x86 without VNNI multiplies uint8 by int8 in pairs summed into a
  saturating int16 (VPMADDUBSW), which is exact only for small enough values; with VNNI
  (AVX512_VNNI, AVX-VNNI, AMX) the sums are int32 and exact, and it is the fastest.
- 'u8u8': weights shifted by 128 into uint8 as well, multiplied in 16-bit pairs summed into
  int32: exact on every x86 CPU, about half the speed of 'u8s8' for many rows.
choose_form picks 'u8s8' where the CPU has VNNI, else 'u8u8'; the tests force each.

    matrix = Int8Matrix(w, form='u8s8')   # w [k, n] float32
    out = matrix(x)                       # x [m, k] float32 -> about x @ w [m, n]
"""

import os
import tempfile
import threading

import numba
import numpy as np

FORMS = ('u8s8', 'u8u8')
ZERO_POINT = 128
# One thread pool for every matrix's session (each session otherwise starts its own and
# leaves its threads spinning while the next product runs); set before the first session.
_pool = threading.Lock()
_pool_started = False


def choose_form(cpu_flags):
    """'u8s8' where the CPU's integer products are exact for it (VNNI), else 'u8u8'."""
    return 'u8s8' if {'avx512_vnni', 'avx_vnni', 'amx_int8'} & cpu_flags else 'u8u8'


def quantize_columns(w):
    """(q int8 [k, n], scale float32 [n]): w ~ q * scale, each column's largest |w| at
    127. A column of zeros gets scale 1."""
    scale = np.abs(w).max(0) / np.float32(127)
    scale[scale == 0] = 1
    return np.rint(w / scale).astype(np.int8), scale.astype(np.float32)


def quantize_rows(x):
    """(q uint8 [m, k], scale float32 [m, 1]): x ~ (q - 128) * scale, each row's largest
    |x| at 127 (a row of zeros gets scale 1), rounded to even at halves."""
    x = np.ascontiguousarray(x, np.float32)
    q, scale = np.empty(x.shape, np.uint8), np.empty([len(x), 1], np.float32)
    _quantize_rows(x, q, scale)
    return q, scale


# Compiled loops for what lies around the integer product (two passes over a row, where
# NumPy makes several): row by row, so each row's numbers are its own.
@numba.njit(cache=True, boundscheck=False, nogil=True)
def _quantize_rows(x, q, scale):
    for r in range(x.shape[0]):
        largest = np.float32(0)
        for i in range(x.shape[1]):
            a = abs(x[r, i])
            if a > largest or a != a:  # a NaN stays: its row's scale is NaN
                largest = a
        step = largest / np.float32(127)
        if step == 0:
            step = np.float32(1)
        scale[r, 0] = step
        if not np.isfinite(step):  # a row with NaN or infinity: its products are not
            q[r] = ZERO_POINT  # finite either, as in float32, whatever its steps
            continue
        for i in range(x.shape[1]):
            # a subnormal row's step rounds: keep its steps within int8
            steps = min(max(np.rint(x[r, i] / step), np.float32(-127)), np.float32(127))
            q[r, i] = np.uint8(steps + np.float32(ZERO_POINT))


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _scale_sums(sums, row_scale, column_scale, out):
    """out = sums * row_scale * column_scale, float32, in that order."""
    for r in range(sums.shape[0]):
        for j in range(sums.shape[1]):
            out[r, j] = np.float32(sums[r, j]) * row_scale[r, 0] * column_scale[j]


class IntegerProduct:
    """Exact int32 sums (x_u8 - 128) @ q of uint8 rows x_u8 [m, k] by int8 q [k, n], in
    `form`."""

    def __init__(self, q, form):
        if form not in FORMS:
            raise ValueError(f'form {form}: expected one of {FORMS}')
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        k, n = q.shape
        zero = numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), 'zero')
        if form == 'u8s8':
            weights, inputs = numpy_helper.from_array(q, 'q'), ['x', 'q', 'zero']
        else:
            weights = numpy_helper.from_array(q.view(np.uint8) ^ np.uint8(ZERO_POINT), 'q')
            inputs = ['x', 'q', 'zero', 'zero']
        graph = helper.make_graph(
            [helper.make_node('MatMulInteger', inputs, ['sums'])], 'product',
            [helper.make_tensor_value_info('x', TensorProto.UINT8, [None, k])],
            [helper.make_tensor_value_info('sums', TensorProto.INT32, [None, n])],
            [weights, zero])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
        options = ort.SessionOptions()
        options.use_per_session_threads = False
        options.log_severity_level = 3  # errors only
        start_pool()
        # Loaded from a file: a session made from bytes keeps them (the weights a second
        # time) for as long as it lives.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'product.onnx')
            onnx.save(model, path)
            self.session = ort.InferenceSession(path, options,
                                                providers=['CPUExecutionProvider'])
        self.form, self.shape = form, (k, n)

    def __call__(self, x_u8):
        return self.session.run(None, {'x': x_u8})[0]


class Int8Matrix:
    """w [k, n] float32 held as int8 with a scale per column: __call__(x [m, k]) is
    about x @ w, each row quantized alone."""

    def __init__(self, w, form):
        q, self.scale = quantize_columns(w)
        self.product = IntegerProduct(q, form)

    def __call__(self, x):
        x_u8, row_scale = quantize_rows(x)
        sums = self.product(x_u8)
        out = np.empty(sums.shape, np.float32)
        _scale_sums(sums, row_scale, self.scale, out)
        return out


def start_pool():
    """ONNX Runtime's one thread pool, if it is not there yet: its default (a thread per
    physical core of the machine), fewer where the process may use fewer cores (its
    affinity, its container's CPU quota), since its threads wait spinning between
    products. Where the process made the pool already (ONNX Runtime allows one), the
    sessions share that one."""
    global _pool_started
    with _pool:
        if _pool_started:
            return
        from onnxruntime.capi import _pybind_state

        from gpt2tune import resources
        cores = resources.usable_cores()
        try:
            _pybind_state.set_global_thread_pool_sizes(
                cores if cores < (os.cpu_count() or 1) else 0, 1)
        except _pybind_state.Fail as e:
            if 'already been created' not in str(e):
                raise
        _pool_started = True
