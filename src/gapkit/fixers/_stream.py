"""Chunked passes over (possibly memory-mapped) embedding matrices in bounded memory.

Every fixer fits and transforms through these helpers, so a (10M, 512) memory-mapped matrix is
processed a few thousand rows at a time: peak memory is O(chunk x D), not O(N x D).

Resident pages of a memory map count towards the process's RSS until the kernel evicts them, so
after each chunk `release_pages` tells the kernel (madvise MADV_DONTNEED) that the pages just read
or written are no longer needed by this process. The data stays in the page cache (and dirty
pages of a shared writable map are still written back), so this is safe and costs almost nothing.
"""
from __future__ import annotations

import mmap
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import GapkitError
from ..validation import check_matrix_shape

#: Rows per chunk: 16,384 x 512 float64 = 64 MiB of work space per temporary.
DEFAULT_CHUNK = 16_384

_PAGE = mmap.PAGESIZE


def check_rows(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """Cheap up-front checks of an (N, D) matrix without touching its rows (they may be mmapped).

    Values (finite, non-zero rows) are checked chunk by chunk as they stream through `normalized_chunks`.
    """
    a = check_matrix_shape(x, name)
    if dim is not None and a.shape[1] != dim:
        raise GapkitError(f"{name}: dimension {a.shape[1]} does not match the fitted dimension {dim}")
    return a


def row_ranges(n: int, chunk: int = DEFAULT_CHUNK) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges covering [0, n) in steps of `chunk`."""
    if chunk <= 0:
        raise GapkitError(f"chunk size must be positive, got {chunk}")
    for s in range(0, n, chunk):
        yield s, min(s + chunk, n)


def _mmap_of(a: np.ndarray) -> mmap.mmap | None:
    """The mmap object behind `a` (np.memmap or a view of one), or None."""
    mm = getattr(a, "_mmap", None)
    if isinstance(mm, mmap.mmap):
        return mm
    base = a.base
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        base = getattr(base, "base", None)
    return None


def release_pages(a: np.ndarray, start: int, stop: int) -> None:
    """Drop rows [start, stop) of a memory-mapped, C-contiguous `a` from this process's RSS.

    No-op for in-memory arrays or where madvise is unavailable.
    """
    mm = _mmap_of(a)
    if mm is None or not hasattr(mm, "madvise") or stop <= start or not a.flags.c_contiguous:
        return
    try:
        base_addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data  # address of the mmap, no copy
    except (TypeError, ValueError, BufferError):
        return
    row_bytes = a.strides[0]
    lo = a.ctypes.data - base_addr + start * row_bytes
    hi = a.ctypes.data - base_addr + stop * row_bytes
    lo_page = (lo // _PAGE) * _PAGE
    hi_page = min(-(-hi // _PAGE) * _PAGE, len(mm))
    if hi_page > lo_page:
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo_page, hi_page - lo_page)
        except (OSError, ValueError):
            pass


def normalized_chunks(
    x: np.ndarray, name: str, chunk: int = DEFAULT_CHUNK, dtype: Any = np.float64
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, u) with u = x[start:stop] / ||row|| upcast to `dtype`.

    Half-precision storage is upcast per chunk. Non-finite values or all-zero rows raise a
    GapkitError naming the row. Pages of a memory-mapped `x` are released after each chunk.
    """
    for s, e in row_ranges(x.shape[0], chunk):
        block = np.asarray(x[s:e], dtype=dtype)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "is all zeros" if norms[i, 0] == 0 else "contains NaN or inf"
            raise GapkitError(f"{name}: row {s + i} {what}")
        yield s, e, block / norms
        release_pages(x, s, e)


def mean_of_normalized(x: np.ndarray, name: str, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """mean_i x_i / ||x_i|| in float64, shape (D,), in one streaming pass."""
    total = np.zeros(x.shape[1], dtype=np.float64)
    for _, _, u in normalized_chunks(x, name, chunk):
        total += u.sum(axis=0)
    return total / x.shape[0]


def moments_of_normalized(x: np.ndarray, name: str, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of the L2-normalised rows, shapes (D,), (D,).

    Uses shifted sums (shift = first chunk's mean) so the variance does not lose precision when
    the mean is large compared to the spread (the cone effect makes that the usual case).
    """
    shift: np.ndarray | None = None
    s1 = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for _, _, u in normalized_chunks(x, name, chunk):
        if shift is None:
            shift = u.mean(axis=0)
        d = u - shift
        s1 += d.sum(axis=0)
        s2 += (d * d).sum(axis=0)
    n = x.shape[0]
    mean_d = s1 / n
    var = np.maximum(s2 / n - mean_d**2, 0.0)
    return shift + mean_d, np.sqrt(var)


def map_rows(
    x: np.ndarray,
    fn: Callable[[np.ndarray, int], np.ndarray],
    name: str,
    out: np.ndarray | None = None,
    chunk: int = DEFAULT_CHUNK,
    out_dtype: Any = None,
) -> np.ndarray:
    """out[s:e] = fn(normalised x[s:e], s) chunk by chunk; `out` may be a writable memmap.

    Returns `out` (allocated in memory with x's float dtype when not given). fn receives float64
    rows and the index of their first row, and returns an array of the same shape.
    """
    if out_dtype is None:
        out_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    if out is None:
        out = np.empty(x.shape, dtype=out_dtype)
    elif out.shape != x.shape:
        raise GapkitError(f"out has shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    for s, e, u in normalized_chunks(x, name, chunk):
        out[s:e] = fn(u, s)
        release_pages(out, s, e)
    return out


def normalize_rows(a: np.ndarray) -> np.ndarray:
    """a / ||a|| row-wise (in place when possible); rows must be non-zero."""
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def unit_preimage(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Invert y = normalise(x - v) for unit rows x: x = a u + v with a > 0 and ||x|| = 1.

    u: (n, D) directions (here the transformed rows, or a per-dimension rescaling of them),
    v: (D,) offset with ||v|| < 1. Solves a^2 ||u||^2 + 2a <u, v> + ||v||^2 - 1 = 0 for the
    positive root, which exists and is unique because ||v|| < 1.
    """
    uu = np.einsum("ij,ij->i", u, u)
    uv = u @ v
    c = float(v @ v) - 1.0
    if c >= 0:
        raise GapkitError("cannot invert: the fitted offset has norm >= 1")
    a = (-uv + np.sqrt(uv * uv - uu * c)) / uu
    return a[:, None] * u + v
