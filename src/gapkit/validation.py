"""Input checks shared by every part of gapkit.

Every public function that takes embeddings calls `as_matrix` (and `check_pairs` for two
modalities), so a bad array fails at the door with one clear message naming the problem, the row
and the shape, never deep inside numpy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import GapkitError, GapkitTypeError

# Rows are validated in chunks so memory-mapped inputs of millions of rows are never copied whole.
_CHECK_CHUNK = 65_536


def to_numpy(x: Any) -> np.ndarray:
    """Return a NumPy view of an array-like (NumPy array, torch tensor, list), without copying
    where possible. Torch tensors are detached and moved to CPU."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        t = x.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise GapkitTypeError(f"cannot convert {type(x).__name__} to an array: {exc}") from None


def check_matrix_shape(x: Any, name: str = "embeddings") -> np.ndarray:
    """Numeric dtype, exactly 2-D, non-empty: the checks that read no values (so a memory map of
    millions of rows is not touched). Returns the array as a NumPy view."""
    a = to_numpy(x)
    if a.dtype == object:
        raise GapkitTypeError(f"{name}: object array (pickled Python objects?) where numbers were expected")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise GapkitTypeError(f"{name}: dtype {a.dtype} is not numeric")
    if a.ndim != 2:
        raise GapkitError(f"{name}: expected a 2-D array (rows, dim), got {a.ndim}-D with shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise GapkitError(f"{name}: empty array with shape {tuple(a.shape)}")
    return a


def as_matrix(
    x: Any,
    name: str = "embeddings",
    *,
    dtype: Any = None,
    allow_zero_rows: bool = False,
    check_finite: bool = True,
) -> np.ndarray:
    """Validate a 2-D embedding matrix (N, D) and return it as a floating array.

    Checks: numeric dtype, exactly 2-D, non-empty, finite values, no all-zero rows (those cannot
    be L2-normalised). Half precision is upcast to float32 (metrics never run in half precision).
    `dtype` forces a dtype (e.g. np.float64); otherwise float32/float64 are kept as they are.
    """
    a = check_matrix_shape(x, name)
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    elif a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    for start in range(0, a.shape[0], _CHECK_CHUNK):
        block = np.asarray(a[start : start + _CHECK_CHUNK])
        if check_finite and not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise GapkitError(f"{name}: row {bad} contains NaN or inf")
        if not allow_zero_rows:
            zero = ~block.any(axis=1)
            if zero.any():
                bad = start + int(np.flatnonzero(zero)[0])
                raise GapkitError(f"{name}: row {bad} is all zeros and cannot be L2-normalised")
    return a


def check_mapping(text_to_image: Any, n_image: int, n_text: int) -> np.ndarray | None:
    """Validate a text -> image index map of length n_text with values in [0, n_image).

    Returns it as int64, or None when it is None (meaning 1:1 pairs, which requires
    n_text == n_image).
    """
    if text_to_image is None:
        if n_image != n_text:
            raise GapkitError(
                f"image and text pair counts differ ({n_image} images, {n_text} texts) and no "
                "text_to_image mapping was given"
            )
        return None
    m = to_numpy(text_to_image)
    if m.ndim != 1:
        raise GapkitError(f"text_to_image: expected a 1-D array, got shape {tuple(m.shape)}")
    if m.shape[0] != n_text:
        raise GapkitError(f"text_to_image: length {m.shape[0]} does not match the {n_text} text rows")
    if m.size and not np.issubdtype(m.dtype, np.integer):
        if not np.issubdtype(m.dtype, np.floating) or not np.all(np.equal(np.mod(m, 1), 0)):
            raise GapkitError(f"text_to_image: expected integer indices, got dtype {m.dtype}")
    m = m.astype(np.int64)
    if m.size:
        lo, hi = int(m.min()), int(m.max())
        if lo < 0 or hi >= n_image:
            bad = int(np.flatnonzero((m < 0) | (m >= n_image))[0])
            raise GapkitError(
                f"text_to_image: entry {bad} = {int(m[bad])} is out of range for {n_image} images"
            )
    return m


def check_pairs(image: Any, text: Any, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate an image matrix (N, D), a text matrix (M, D) and an optional (M,) mapping."""
    img = as_matrix(image, "image embeddings")
    txt = as_matrix(text, "text embeddings")
    if img.shape[1] != txt.shape[1]:
        raise GapkitError(
            f"image and text dims differ: image is {tuple(img.shape)}, text is {tuple(txt.shape)}"
        )
    mapping = check_mapping(text_to_image, img.shape[0], txt.shape[0])
    return img, txt, mapping


def l2_normalize(x: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Rows divided by their L2 norm: u_i = x_i / ||x_i||. Shape (N, D) -> (N, D)."""
    a = np.asarray(x, dtype=dtype) if dtype is not None else np.asarray(x)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / norms


def first_caption_rows(text_to_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image rows that have a caption, the text row of each one's first caption), both (K,).

    The convention for metrics defined on 1:1 pairs when an image has several captions.
    """
    return np.unique(text_to_image, return_index=True)


# ---- settings that reach the machine: seeds, devices, threads, memory -------------------------
MAX_SEED = 2**32 - 1  # the range every RNG gapkit seeds accepts (NumPy, torch, numba, Python)


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed must be an integer in [0, 2**32 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise GapkitError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def check_threads(threads: Any, name: str = "threads") -> int:
    """0 (library default) or a thread count no larger than 4x the machine's cores."""
    import os

    limit = 4 * (os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= int(threads) <= limit:
        raise GapkitError(f"{name} must be an integer in [0, {limit}] (0 = default; this machine has "
                          f"{os.cpu_count()} cores), got {threads!r}")
    return int(threads)


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def check_device(device: Any, name: str = "device") -> str:
    """'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; an accelerator that is not there is an error
    (never a silent fall-back to the CPU)."""
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in DEVICE_KINDS or (index and (kind != "cuda" or not index.isdigit())):
        raise GapkitError(f"{name} must be one of auto, cpu, cuda, cuda:N, mps; got {text!r}")
    if kind in ("auto", "cpu"):
        return text
    import torch

    if kind == "cuda":
        if not torch.cuda.is_available():
            raise GapkitError(f"{name} {text}: CUDA is not available on this machine (use cpu or auto)")
        if index and int(index) >= torch.cuda.device_count():
            raise GapkitError(f"{name} {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GapkitError(f"{name} mps: Apple MPS is not available on this machine")
    return text


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux; else physical)."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_allocation(n_bytes: float, what: str) -> None:
    """Refuse, before allocating, work that needs more memory than is available."""
    avail = available_memory()
    if n_bytes > 0.9 * avail:
        raise GapkitError(f"{what} needs about {n_bytes / 2**30:,.1f} GiB of memory; "
                          f"{avail / 2**30:,.1f} GiB are available")
