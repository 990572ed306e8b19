"""Orthogonal Procrustes map from text space to image space (Liang Sec. 4.4; Lample et al. 2018).

    W* = argmin_{W orthogonal} || Y W - X ||_F  over the calibration pairs (x_i, y_i)
       = U V^T   where  Y^T X = U S V^T  (SVD)
    image: x' = x        text: y' = y W*

W* is a rotation (or reflection) and keeps every text-text cosine unchanged, so text-only
retrieval is untouched while the text cloud is rotated onto the image cloud. Invertible:
y = y' W*^T. With several captions per image, every caption is paired with its image.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ._stream import DEFAULT_CHUNK, normalize_rows, row_ranges
from .base import Fixer


def cross_covariance(image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None,
                     chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """sum_j y_j^T x_{map(j)} of L2-normalised rows, (D, D), streamed over the texts."""
    d = image.shape[1]
    m = np.zeros((d, d))
    for s, e in row_ranges(text.shape[0], chunk):
        y = np.asarray(text[s:e], dtype=np.float64)
        x = np.asarray(image[s:e] if mapping is None else image[mapping[s:e]], dtype=np.float64)
        m += normalize_rows(y).T @ normalize_rows(x)
    return m


def procrustes_rotation(m: np.ndarray) -> np.ndarray:
    """The orthogonal W maximising trace(W^T M) for M = Y^T X: W = U V^T from M = U S V^T."""
    u, _, vt = np.linalg.svd(m)
    return u @ vt


class ProcrustesMap(Fixer):
    """Rotate texts onto images. Fitted: rotation_ (D, D), orthogonal."""

    name = "procrustes"
    needs_cross = True

    def __init__(self) -> None:
        pass

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if mapping is None and image.shape[0] != text.shape[0]:
            from ..validation import check_mapping

            check_mapping(None, image.shape[0], text.shape[0])  # raises the standard message
        self.rotation_ = procrustes_rotation(cross_covariance(image, text, mapping))

    def _fit_stats(self, stats: Any) -> None:
        if stats.cross is None:
            raise GapkitError("procrustes: the merged statistics lack the cross sum (fit_stats(..., cross=True))")
        self.rotation_ = procrustes_rotation(stats.cross)

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        return u if modality == "image" else normalize_rows(u @ self.rotation_)

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        return u if modality == "image" else normalize_rows(u @ self.rotation_.T)
