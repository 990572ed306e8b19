"""IsoCLIP: keep the isotropic, modality-shared directions of the projectors (Magistri et al.,
"IsoCLIP: Decomposing CLIP Projectors for Efficient Intra-modal Alignment", CVPR 2026,
arXiv:2603.19862; code github.com/simomagi/IsoCLIP).

With projectors A_i (D, d_i), A_t (D, d_t) (embedding = A h), the cross-modal cosine of two
pre-projection features is h_i^T Psi h_t / norms with the inter-modal operator

    Psi = A_i^T A_t  (d_i, d_t) = U S V^T          (SVD, r = min(d_i, d_t) values, descending)

The paper finds the middle of the spectrum nearly isotropic (aligned) and the k_top largest and
k_bottom smallest directions modality specific. IsoCLIP keeps the middle block K = [k_top, r - k_bottom):

    image: x_iso = A_i U_K U_K^T h_i        text: y_iso = A_t V_K V_K^T h_t

and uses them for INTRA-modal tasks (image->image, text->text retrieval; the paper's claim); its
code refuses cross-modal use. gapkit works on embeddings x = A_i h_i, so the fixer applies the
equivalent map in the shared space, x_iso = M_i x with

    M_i = A_i U_K U_K^T A_i^+  (D, D)        M_t = A_t V_K V_K^T A_t^+

which equals the paper's formula whenever the kept directions lie in the row space of A (true for
every direction with a non-zero singular value, since U's columns span range(A_i^T)); rows are
re-normalised afterwards (cosine retrieval is scale free). Defaults keep the proportions of the
paper's ViT-B/32 setting (k_top 150, k_bottom 50 of r = 512): k_top = round(0.293 r),
k_bottom = round(0.098 r). Not invertible (the removed directions are lost).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from .base import Fixer
from .projections import read_projections

#: the paper's ViT-B/32 defaults (k_top 150, k_bottom 50 of 512 singular values) as fractions of r
TOP_FRACTION, BOTTOM_FRACTION = 150 / 512, 50 / 512


def isoclip_block(r: int, k_top: int | None, k_bottom: int | None) -> tuple[int, int]:
    """(start, stop) of the kept singular directions; None picks the paper's proportions."""
    top = round(TOP_FRACTION * r) if k_top is None else int(k_top)
    bottom = round(BOTTOM_FRACTION * r) if k_bottom is None else int(k_bottom)
    if top < 0 or bottom < 0 or top + bottom >= r:
        raise GapkitError(f"isoclip: k_top + k_bottom must be < {r} (the rank of Psi) and both >= 0, "
                          f"got {top} and {bottom}")
    return top, r - bottom


def isoclip_maps(a_image: np.ndarray, a_text: np.ndarray, k_top: int | None = None,
                 k_bottom: int | None = None) -> dict[str, Any]:
    """Shared-space maps M_i, M_t (D, D), the singular values of Psi and the kept block."""
    a_i = np.asarray(a_image, np.float64)
    a_t = np.asarray(a_text, np.float64)
    if a_i.ndim != 2 or a_t.ndim != 2 or a_i.shape[0] != a_t.shape[0]:
        raise GapkitError(f"isoclip: projections must be (D, d_i) and (D, d_t), got {a_i.shape} and {a_t.shape}")
    u, s, vt = np.linalg.svd(a_i.T @ a_t, full_matrices=False)
    # Psi has at most min(D, d_i, d_t) non-zero singular values (ViT-B/32: 512 of 512); the rest
    # are exact zeros whose directions the projectors cannot express, so they are not counted
    r = min(a_i.shape[0], a_i.shape[1], a_t.shape[1])
    u, s, vt = u[:, :r], s[:r], vt[:r]
    start, stop = isoclip_block(r, k_top, k_bottom)
    uk, vk = u[:, start:stop], vt[start:stop].T
    return {"image_map": a_i @ uk @ uk.T @ np.linalg.pinv(a_i), "text_map": a_t @ vk @ vk.T @ np.linalg.pinv(a_t),
            "singular_values": s, "kept": (start, stop)}


class IsoCLIP(Fixer):
    """Project each modality on the isotropic block of its projector (intra-modal tasks).

    Parameters: weights (path of the model's projection weights, see gapkit.fixers.projections;
    or call `fit_projections(A_image, A_text)` from Python), k_top, k_bottom (None: the paper's
    proportions). Fitted: image_map_ (D, D), text_map_ (D, D), singular_values_ (r,), kept_ (2,).
    `fit(image, text)` reads the weights and checks that the embeddings have their dimension; the
    calibration rows themselves are not used (the method is training free).
    """

    name = "isoclip"

    def __init__(self, weights: str | None = None, k_top: int | None = None, k_bottom: int | None = None) -> None:
        self.weights = weights
        self.k_top = k_top
        self.k_bottom = k_bottom

    def fit_projections(self, image_projection: Any, text_projection: Any) -> "IsoCLIP":
        """Fit from projection matrices A_image (D, d_i), A_text (D, d_t) (embedding = A h)."""
        self._set_maps(np.asarray(image_projection), np.asarray(text_projection))
        self.dim_ = int(self.image_map_.shape[0])
        return self

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if self.weights is None:
            raise GapkitError("isoclip needs the model's projection weights: --param weights=PATH (a .safetensors/"
                              ".npz/.pt file or a saved heads folder), or fit_projections(A_image, A_text) in Python")
        self._set_maps(*read_projections(self.weights))
        if self.image_map_.shape[0] != image.shape[1]:
            raise GapkitError(f"isoclip: the projections map into {self.image_map_.shape[0]} dimensions, the "
                              f"embeddings have {image.shape[1]}")

    def _set_maps(self, a_image: np.ndarray, a_text: np.ndarray) -> None:
        m = isoclip_maps(a_image, a_text, self.k_top, self.k_bottom)
        self.image_map_, self.text_map_ = m["image_map"], m["text_map"]
        self.singular_values_ = m["singular_values"]
        self.kept_ = np.asarray(m["kept"], dtype=np.int64)

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        m = self.image_map_ if modality == "image" else self.text_map_
        out = u @ m.T
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        # a row with nothing in the kept block has no direction left: keep it at zero
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 1e-12)
