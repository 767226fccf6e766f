"""A product of rows by a matrix whose every row's numbers are the same however many rows
it is given with: the float32 kernel of a decoding step (kernels.py).

A BLAS (OpenBLAS, oneDNN) picks its algorithm, blocking and vector width by the number of
rows, so its product of one row and of several differ in the last bits. Here the code that
computes out[r, j] is chosen by the column j alone: a dot product of x[r] and w_t[j],
vectorized in one fixed order, four columns at a time (each row read once for four of
w_t's rows). The columns are shared among the threads in blocks, each block's rows of w_t
read from memory once and from the cache for every further row of x: one row reads the
weights as fast as a matrix-vector product, and 16 rows cost little more than 2.

Numba compiles it on first use (cached beside this file, or in Numba's user cache where
that cannot be written).

    out = product(x, w_t)   # x [m, k] float32, w_t [n, k] float32 -> x @ w_t.T [m, n]
"""

import threading

import numba
import numpy as np

# Columns per parallel task: enough for the threads to share, few enough for a task's rows
# of w_t ([COLUMNS, k]) to stay in the cache while every row of x passes over them.
COLUMNS = 32
# The products run without the GIL, so the server's event loop answers while they do.
# Numba's fallback thread pool (where neither OpenMP nor TBB is found) aborts when two
# threads launch parallel work at once: products are made one at a time.
_one_at_a_time = threading.Lock()
# Reassociation lets a dot product's sum use vector lanes (in one order, fixed when it is
# compiled, whatever the number of rows); nothing here meets NaN or infinity by design,
# but the flags that would assume so are left off.
_FASTMATH = {'reassoc', 'contract'}


@numba.njit(fastmath=_FASTMATH, inline='always')
def _dot(a, b):
    s = np.float32(0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(fastmath=_FASTMATH, inline='always')
def _dot4(a, b0, b1, b2, b3):
    s0 = s1 = s2 = s3 = np.float32(0)
    for i in range(a.shape[0]):
        ai = a[i]
        s0 += ai * b0[i]
        s1 += ai * b1[i]
        s2 += ai * b2[i]
        s3 += ai * b3[i]
    return s0, s1, s2, s3


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True, boundscheck=False, nogil=True)
def _product(x, w_t, out):
    m, n = x.shape[0], w_t.shape[0]
    for block in numba.prange((n + COLUMNS - 1) // COLUMNS):
        end = min(n, (block + 1) * COLUMNS)
        for r in range(m):
            row = x[r]
            j = block * COLUMNS
            while j + 4 <= end:
                out[r, j], out[r, j + 1], out[r, j + 2], out[r, j + 3] = _dot4(
                    row, w_t[j], w_t[j + 1], w_t[j + 2], w_t[j + 3])
                j += 4
            while j < end:  # the last block's last columns, for every row alike
                out[r, j] = _dot(row, w_t[j])
                j += 1


def product(x, w_t):
    """x [m, k] @ w_t.T for w_t [n, k] (both float32): [m, n], row r's numbers depending
    on x[r] and w_t alone."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty([len(x), len(w_t)], np.float32)
    with _one_at_a_time:
        _product(x, w_t, out)
    return out
