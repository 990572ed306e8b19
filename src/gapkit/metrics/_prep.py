"""Input preparation shared by every metric: validate, upcast, L2-normalise.

Every metric takes numpy arrays or torch tensors of shape (N, D) (image) and (M, D) (text), an
optional (M,) `text_to_image` map, validates them through `gapkit.validation`, and works on
L2-normalised rows. Half precision is upcast (float16/bfloat16 -> float32): metrics never run in
half precision. float64 inputs stay float64; everything else becomes float32 (sums are always
accumulated in float64).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import as_matrix, check_pairs, first_caption_rows, l2_normalize

# Rows processed per chunk in O(N D) passes: bounds temporaries to a few tens of MB
# (8192 x 512 float64 = 32 MiB).
ROW_CHUNK = 8_192


def compute_dtype(a: np.ndarray) -> np.dtype:
    """float64 stays float64; any other input is computed in float32 (never half)."""
    return np.dtype(np.float64) if a.dtype == np.float64 else np.dtype(np.float32)


def unit_rows(x: Any, name: str = "embeddings") -> np.ndarray:
    """Validate one (N, D) matrix and return its rows L2-normalised (float32 or float64)."""
    a = as_matrix(x, name)
    return l2_normalize(a, compute_dtype(a))


@dataclass(frozen=True)
class Pairs:
    """L2-normalised image (N, D) and text (M, D) rows with the (M,) text -> image map.

    `mapping` is never None: 1:1 data get the identity (then `one_to_one` is True).
    """

    image: np.ndarray
    text: np.ndarray
    mapping: np.ndarray
    one_to_one: bool

    @property
    def n_image(self) -> int:
        return int(self.image.shape[0])

    @property
    def n_text(self) -> int:
        return int(self.text.shape[0])

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])

    def paired_image(self) -> np.ndarray:
        """image[text_to_image]: the image row of every text, shape (M, D)."""
        return self.image if self.one_to_one else self.image[self.mapping]

    def caption_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, starts, counts): texts sorted by image; image i's captions are
        order[starts[i] : starts[i] + counts[i]]."""
        order = np.argsort(self.mapping, kind="stable")
        counts = np.bincount(self.mapping, minlength=self.n_image)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return order, starts, counts

    def first_caption(self) -> tuple[np.ndarray, np.ndarray]:
        """1:1 pairs from the first caption of every image that has one: (K, D), (K, D)."""
        if self.one_to_one:
            return self.image, self.text
        imgs, first = first_caption_rows(self.mapping)
        return self.image[imgs], self.text[first]


def validated(image: Any, text: Any = None, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked but NOT normalised (image, text, mapping or None for 1:1): no copy of float32/64
    input, for the O(N D) passes that normalise chunk by chunk. Accepts Pairs/PairedEmbeddings."""
    if isinstance(image, Pairs):
        return image.image, image.text, None if image.one_to_one else image.mapping
    if text is None and hasattr(image, "text") and hasattr(image, "image"):  # PairedEmbeddings
        image, text, text_to_image = image.image, image.text, image.text_to_image
    return check_pairs(image, text, text_to_image)


def unit_chunk(a: np.ndarray, dtype: Any) -> np.ndarray:
    """One chunk of rows, L2-normalised in `dtype` (a copy; the input is never modified)."""
    return l2_normalize(np.asarray(a), dtype)


def prepare(image: Any, text: Any = None, text_to_image: Any = None) -> Pairs:
    """Validate and L2-normalise a pair of modalities.

    `image` may also be a PairedEmbeddings or a `Pairs` (then `text`/`text_to_image` are
    ignored when None). Returns a `Pairs` whose rows share one dtype (float32 unless both
    inputs are float64).
    """
    if isinstance(image, Pairs):
        return image
    if text is None and hasattr(image, "text") and hasattr(image, "image"):  # PairedEmbeddings
        image, text, text_to_image = image.image, image.text, image.text_to_image
    img, txt, mapping = check_pairs(image, text, text_to_image)
    dtype = np.float64 if (img.dtype == np.float64 and txt.dtype == np.float64) else np.float32
    x, y = l2_normalize(img, dtype), l2_normalize(txt, dtype)
    if mapping is None:
        return Pairs(x, y, np.arange(x.shape[0], dtype=np.int64), True)
    one = mapping.shape[0] == x.shape[0] and bool(np.array_equal(mapping, np.arange(x.shape[0])))
    return Pairs(x, y, mapping, one)


def rowwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """<a_i, b_i> for every row, shape (N,), accumulated in float64 chunk by chunk."""
    out = np.empty(a.shape[0], dtype=np.float64)
    for s in range(0, a.shape[0], ROW_CHUNK):
        out[s : s + ROW_CHUNK] = np.einsum("ij,ij->i", a[s : s + ROW_CHUNK], b[s : s + ROW_CHUNK],
                                           dtype=np.float64)
    return out


def paired_cosines(p: Pairs) -> np.ndarray:
    """cos(image[text_to_image[j]], text[j]) for every text j, shape (M,), float64."""
    out = np.empty(p.n_text, dtype=np.float64)
    for s in range(0, p.n_text, ROW_CHUNK):
        idx = p.mapping[s : s + ROW_CHUNK]
        out[s : s + ROW_CHUNK] = np.einsum("ij,ij->i", p.image[idx], p.text[s : s + ROW_CHUNK], dtype=np.float64)
    return out


def column_sum(a: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """sum_i w_i a_i in float64, shape (D,) or (B, D) for weights (B, N); chunked over rows."""
    d = a.shape[1]
    out = np.zeros(d if weights is None else (weights.shape[0], d), dtype=np.float64)
    for s in range(0, a.shape[0], ROW_CHUNK):
        blk = np.asarray(a[s : s + ROW_CHUNK])
        out += blk.sum(0, dtype=np.float64) if weights is None else weights[:, s : s + ROW_CHUNK] @ blk
    return out
