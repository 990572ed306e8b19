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
