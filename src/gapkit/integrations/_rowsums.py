"""One pass over a CPU batch: the GeometryState sums of its L2-normalised rows, without normalised copies.

For image rows x_i (i < B), text rows y_j (j < M), pairs (x_t(j), y_j) (t = identity for 1:1 batches),
r_i = ||x_i||, q_j = ||y_j||, and inverse norms 1 / max(r, 1e-12) (a zero row stays zero, as in
`batch_state`), the kernel ADDS into its float64 outputs

    col_image += sum_i x_i / r_i           (D,)      col_text += sum_j y_j / q_j    (D,)
    stats[0]  += sum_i (r_i / r_i)^2                  stats[1] += sum_j (q_j / q_j)^2
    stats[2]  += sum_j c_j,  c_j = <x_t(j), y_j> / (r_t(j) q_j)
    stats[3]  += sum_j sqrt(max(2 - 2 c_j, 0))

and writes x_i / r_i into image_buf[image_dest[i]] for the rows with image_dest[i] >= 0 (likewise
texts): the rows the caller keeps for its sample, stored while the row is still in L1 cache.

Why a kernel: torch has no fused row-wise dot, and `(x * y).sum(1)`, `F.normalize` and
`torch.linalg.vecdot` all materialise a (B, D) temporary (an 8 MB write and page faults per call at
4096 x 512). Here each input row is read from memory once (1:1 batches: x_i and y_i together), the
per-row sums r^2, q^2 and <x, y> are accumulated in the input dtype (float32 or float64; rounding
<= D * eps relative), and the column sums are accumulated in the input dtype over blocks of BLOCK
rows, then added to float64, so the float32 error does not grow with the number of rows.
`fused_sums_threaded` splits a 1:1 batch into row ranges (multiples of BLOCK) run by the kernel in
plain Python threads (the kernel releases the GIL), each into private float64 partials that are added
in range order: the result does not depend on thread timing. The threads belong to a pool that
this module creates in the process that uses it and forgets in a forked child (os.register_at_fork):
numba's own parallel layer, once started, does not survive fork(), which Lightning's ddp_fork and
forked DataLoader workers do.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

BLOCK = 256  # rows per float32 partial column sum
MIN_ROWS_PER_THREAD = 1024  # below this a thread's hand-off (~20-50 us) costs more than its share
# Reassociation lets LLVM vectorise the reductions; no "nnan"/"ninf": a NaN feature (a diverged
# model) must give NaN metrics, not be treated as a number.
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST, nogil=True)
def _row_out(a, i, inv, part, buf, dest) -> None:
    """part += a[i] * inv; buf[dest] = a[i] * inv when dest >= 0 (the row is hot in cache)."""
    f = a.dtype.type(inv)
    for k in range(a.shape[1]):
        part[k] += a[i, k] * f
    if dest >= 0:
        for k in range(a.shape[1]):
            buf[dest, k] = a[i, k] * f


@njit(cache=True, fastmath=_FAST, nogil=True)
def _flush(part, col) -> None:
    for k in range(part.shape[0]):
        col[k] += part[k]
        part[k] = 0


@njit(cache=True, nogil=True)
def _inv(sq: float) -> tuple[float, float]:
    """(1 / max(sqrt(sq), 1e-12), (r * that)^2): the row's inverse norm and its unit row's squared norm."""
    r = np.sqrt(sq)
    inv = 1.0 / max(r, 1e-12)
    return inv, (r * inv) ** 2


@njit(cache=True, nogil=True)
def _pair(dot: float, inv_x: float, inv_y: float, stats) -> None:
    c = dot * inv_x * inv_y
    stats[2] += c
    stats[3] += np.sqrt(max(2.0 - 2.0 * c, 0.0))


@njit(cache=True, fastmath=_FAST, nogil=True)
def fused_sums(x, y, mapping, image_dest, text_dest, image_buf, text_buf, col_image, col_text, stats) -> None:
    """Add the batch's sums into col_image, col_text (D,) and stats (4,) (module doc); fill the buffers.

    x (B, D), y (M, D) C-contiguous, same dtype; mapping (M,) int64 image row of each text, or an
    empty array for a 1:1 batch (M == B); image_dest (B,), text_dest (M,) int64 buffer rows or -1.
    """
    n, d = x.shape
    part_x = np.zeros(d, dtype=x.dtype)
    part_y = np.zeros(d, dtype=x.dtype)
    zero = x.dtype.type(0)
    if mapping.shape[0] == 0:  # 1:1: x_i and y_i in one pass
        for i in range(n):
            sx, sy, sxy = zero, zero, zero
            for k in range(d):
                a, b = x[i, k], y[i, k]
                sx += a * a
                sy += b * b
                sxy += a * b
            ix, ux = _inv(sx)
            iy, uy = _inv(sy)
            stats[0] += ux
            stats[1] += uy
            _pair(sxy, ix, iy, stats)
            _row_out(x, i, ix, part_x, image_buf, image_dest[i])
            _row_out(y, i, iy, part_y, text_buf, text_dest[i])
            if (i + 1) % BLOCK == 0:
                _flush(part_x, col_image)
                _flush(part_y, col_text)
        _flush(part_x, col_image)
        _flush(part_y, col_text)
        return
    inv_x = np.empty(n)
    for i in range(n):  # images first: the pairs need their inverse norms
        sx = zero
        for k in range(d):
            sx += x[i, k] * x[i, k]
        inv_x[i], ux = _inv(sx)
        stats[0] += ux
        _row_out(x, i, inv_x[i], part_x, image_buf, image_dest[i])
        if (i + 1) % BLOCK == 0:
            _flush(part_x, col_image)
    _flush(part_x, col_image)
    for j in range(y.shape[0]):
        t = mapping[j]
        sy, sxy = zero, zero
        for k in range(d):
            b = y[j, k]
            sy += b * b
            sxy += x[t, k] * b
        iy, uy = _inv(sy)
        stats[1] += uy
        _pair(sxy, inv_x[t], iy, stats)
        _row_out(y, j, iy, part_y, text_buf, text_dest[j])
        if (j + 1) % BLOCK == 0:
            _flush(part_y, col_text)
    _flush(part_y, col_text)


def split_ranges(n: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous row ranges [a, b) covering 0..n, at most `threads`, cut at multiples of BLOCK,
    none shorter than MIN_ROWS_PER_THREAD (except when there is one)."""
    parts = max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    blocks = -(-n // BLOCK)
    cuts = [min(n, BLOCK * ((blocks * k) // parts)) for k in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def fused_sums_threaded(x, y, mapping, image_dest, text_dest, image_buf, text_buf, col_image, col_text, stats,
                        threads: int) -> None:
    """`fused_sums` with a 1:1 batch's rows split over up to `threads` threads (module doc); batches
    with a text->image mapping, small batches and threads <= 1 run the serial kernel as is."""
    ranges = split_ranges(x.shape[0], threads) if mapping.shape[0] == 0 else [(0, x.shape[0])]
    if len(ranges) == 1:
        fused_sums(x, y, mapping, image_dest, text_dest, image_buf, text_buf, col_image, col_text, stats)
        return
    d = x.shape[1]
    cols = np.zeros((len(ranges), 2, d))
    parts = np.zeros((len(ranges), 4))

    def run(k: int) -> None:
        a, b = ranges[k]
        fused_sums(x[a:b], y[a:b], mapping, image_dest[a:b], text_dest[a:b], image_buf, text_buf,
                   cols[k, 0], cols[k, 1], parts[k])

    futures = [_pool(len(ranges) - 1).submit(run, k) for k in range(1, len(ranges))]
    run(0)  # the calling thread takes the first range
    for f in futures:
        f.result()
    for k in range(len(ranges)):  # range order: deterministic whatever the threads' timing
        col_image += cols[k, 0]
        col_text += cols[k, 1]
        stats += parts[k]


_POOLS: dict[int, ThreadPoolExecutor] = {}  # by worker count: never replaced while in use
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """This process's pool of `workers` threads, created on first use."""
    with _POOL_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gapkit-rowsums")
        return _POOLS[workers]


def _forget_pool() -> None:
    """In a forked child the parent's worker threads do not exist: start new pools on next use."""
    global _POOL_LOCK
    _POOLS.clear()
    _POOL_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
