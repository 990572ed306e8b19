"""Translate the query modality by the part of the gap outside the retrieved modality's subspace
(Chowers, Naparstek, Barzelay & Weiss, "Is the Modality Gap a Bug or a Feature? A Robustness
Perspective", CVPR 2026, arXiv:2603.29080).

Their claim: the gap vector is (nearly) orthogonal to the embeddings; removing it does not change
clean accuracy but makes predictions flip less when embeddings are perturbed (Gaussian noise,
quantisation, rephrasing). Their post-processing "projects the gap vector onto the orthogonal
complement of the retrieval modality subspace, then translates one modality toward the other".
gapkit's reading (the paper's method section was not available offline; the definition below is
what the summary above says, made precise):

    G      rows of the retrieved ("gallery") modality, unit; Q (D, k): its top-k right singular
           vectors (uncentred SVD: the linear span the rows live in); k = `rank`, or the smallest
           k whose singular values hold `energy` of sum s^2
    g      = mean(gallery) - mean(query)           the gap, pointing from the queries to the gallery
    g_perp = (I - Q Q^T) g
    query  : x' = normalise(x + lam g_perp)        gallery: y' = y (unchanged)

For every gallery row t inside span(Q), <x + lam g_perp, t> = <x, t>, so each query's ranking of
such a gallery is unchanged (clean accuracy is exactly flat for, e.g., C < D class prompts with
rank = C; nearly flat when the gallery is only approximately in the subspace). The re-normalised
query keeps the same in-subspace direction with a larger share of its unit norm (the shared offset
of the query cloud is what g_perp removes), so a perturbation of fixed size moves its scores
less relative to the margins between gallery items: that is the robustness the paper reports.
"""
from __future__ import annotations

import numpy as np

from ..errors import GapkitError
from ._stream import mean_of_normalized, normalize_rows, normalized_chunks, unit_preimage
from .base import Fixer

MODALITIES = ("image", "text")


def span_basis(rows: np.ndarray, rank: int | None = None, energy: float = 0.99) -> np.ndarray:
    """Orthonormal basis (D, k) of the top-k right singular vectors of the (uncentred) rows."""
    gram = np.zeros((rows.shape[1], rows.shape[1]))
    for _, _, u in normalized_chunks(rows, "gallery embeddings"):
        gram += u.T @ u  # streamed: the (D, D) Gram matrix has the same right singular vectors
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    if rank is None:
        if not 0 < energy <= 1:
            raise GapkitError(f"chowers: energy must be in (0, 1], got {energy}")
        cum = np.cumsum(evals) / evals.sum()
        k = int(np.searchsorted(cum, energy - 1e-12) + 1)
    else:
        k = int(rank)
        if not 0 < k < rows.shape[1]:
            raise GapkitError(f"chowers: rank must be in [1, {rows.shape[1] - 1}], got {rank}")
    return evecs[:, :min(k, rows.shape[1])]


class ComplementShift(Fixer):
    """Move the query modality by the gap's component outside the gallery modality's subspace.

    Parameters: retrieve ("text": images query texts, as in zero-shot classification; "image":
    texts query images), rank (subspace dimension; None = by `energy`), energy (share of the
    gallery's sum of squared singular values kept when rank is None), lam (1 = the full translation).
    Fitted: basis_ (D, k), gap_ (D,), offset_ (D,) = lam g_perp, rank_, moved_ (the query modality).
    """

    name = "chowers"

    def __init__(self, retrieve: str = "text", rank: int | None = None, energy: float = 0.99,
                 lam: float = 1.0) -> None:
        self.retrieve = retrieve
        self.rank = rank
        self.energy = energy
        self.lam = lam

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if self.retrieve not in MODALITIES:
            raise GapkitError(f"chowers: retrieve must be 'image' or 'text', got {self.retrieve!r}")
        if not np.isfinite(float(self.lam)):
            raise GapkitError("chowers: lam must be finite")
        gallery, query = (text, image) if self.retrieve == "text" else (image, text)
        self.basis_ = span_basis(gallery, self.rank, float(self.energy))
        self.rank_ = int(self.basis_.shape[1])
        self.moved_ = "image" if self.retrieve == "text" else "text"
        self.gap_ = mean_of_normalized(gallery, "gallery embeddings") - mean_of_normalized(query, "query embeddings")
        g_perp = self.gap_ - self.basis_ @ (self.basis_.T @ self.gap_)
        self.offset_ = float(self.lam) * g_perp
        if float(np.linalg.norm(self.offset_)) >= 1.0:
            # a unit row could then be moved onto the origin; the paper's gaps are well below 1
            raise GapkitError(f"chowers: the translation has norm {np.linalg.norm(self.offset_):.3f} >= 1 "
                              "(use a smaller lam)")

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        return normalize_rows(u + self.offset_) if modality == self.moved_ else u

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        return unit_preimage(u, -self.offset_) if modality == self.moved_ else u
