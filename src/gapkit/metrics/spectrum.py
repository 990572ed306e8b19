"""Spectrum of each modality and the per-dimension make-up of the gap (Schrodi et al. 2025).

    singular values   s_1 >= ... of the (N, D) matrix of L2-normalised rows (not centred, so the
                      cone's shared direction shows as a dominant s_1), from the D x D Gram matrix
                      U^T U = sum_i u_i u_i^T, whose eigenvalues are s_k^2
    effective_rank    exp(-sum_k p_k log p_k), p_k = s_k / sum_k s_k      (Roy & Vetterli 2007)
    rank              #{k : s_k > 1}: the number of singular values above 1 of the normalised
                      rows (Fahim et al. 2024's "rank", abrar-fahim/contrastive-gap). The squares
                      sum to N (unit rows), so at most N of them exceed 1 and an isotropic cloud in
                      D <= N dims has all D of them at sqrt(N / D) > 1; it depends on N, so compare
                      ranks at equal N only
    gap dimension shares  delta_d^2 / ||delta||^2 sorted descending, delta = mean x - mean y
    centroid_distance_without_top{k}_dims: the centroid distance after zeroing the k dimensions
                      with the largest |delta_d| in both modalities and re-normalising the rows

The Gram matrix and row sum are sums over rows, so `MomentState` streams (update/merge) and the
pure functions are built on the same helpers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._prep import ROW_CHUNK, Pairs, column_sum, prepare, unit_rows

DEFAULT_TOP_KS = (1, 10)


@dataclass
class MomentState:
    """Row count n, row sum (D,) and Gram matrix U^T U (D, D) of one modality, float64."""

    n: float
    total: np.ndarray
    gram: np.ndarray

    def __add__(self, other: "MomentState") -> "MomentState":
        return MomentState(self.n + other.n, self.total + other.total, self.gram + other.gram)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    def covariance(self) -> np.ndarray:
        """Population covariance E[u u^T] - mu mu^T, (D, D)."""
        mu = self.mean
        return self.gram / self.n - np.outer(mu, mu)


def moment_state(u: np.ndarray) -> MomentState:
    """MomentState of prepared (unit) rows, accumulated in float64 chunk by chunk."""
    gram = np.zeros((u.shape[1], u.shape[1]), dtype=np.float64)
    for s in range(0, u.shape[0], ROW_CHUNK):
        # float64 products: a float32 Gram matrix has eigenvalue noise ~1e-7 ||G||, which inflates
        # the many tiny singular values of a narrow cone and biases the effective rank (by ~1 %
        # on the bundled ConVIRT sample)
        blk = np.asarray(u[s : s + ROW_CHUNK], dtype=np.float64)
        gram += blk.T @ blk
    return MomentState(float(u.shape[0]), column_sum(u), gram)


def singular_values_from(state: MomentState) -> np.ndarray:
    """Singular values (descending) of the stacked rows from their Gram matrix."""
    ev = np.linalg.eigvalsh(state.gram)[::-1]
    return np.sqrt(np.clip(ev, 0.0, None))[: int(min(state.n, state.gram.shape[0]))]


def effective_rank_from(sv: np.ndarray) -> float:
    """exp(entropy) of the singular values normalised to sum 1."""
    p = sv[sv > 0] / sv.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def rank_from(sv: np.ndarray, threshold: float = 1.0) -> int:
    """Number of singular values strictly above `threshold` (contrastive-gap's rank: 1)."""
    return int((np.asarray(sv) > threshold).sum())


def singular_values(x: Any) -> np.ndarray:
    """Singular values of the (N, D) matrix of L2-normalised rows, descending, float64."""
    return singular_values_from(moment_state(unit_rows(x)))


def effective_rank(x: Any) -> float:
    """Effective rank (Roy & Vetterli) of the L2-normalised rows."""
    return effective_rank_from(singular_values(x))


def rank(x: Any, threshold: float = 1.0) -> int:
    """Number of singular values > threshold of the (N, D) L2-normalised rows (Fahim et al. 2024)."""
    return rank_from(singular_values(x), threshold)


def gap_dimension_shares(image: Any, text: Any = None, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(dims sorted by |delta_d| descending, their shares delta_d^2 / ||delta||^2)."""
    p = prepare(image, text, text_to_image)
    delta = column_sum(p.image) / p.n_image - column_sum(p.text) / p.n_text
    order = np.argsort(-np.abs(delta), kind="stable")
    return order, delta[order] ** 2 / float(delta @ delta)


def _renorm_mean(u: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Mean of unit rows after zeroing the `removed` dims and re-normalising, (D,) float64.

    The new norm of row i is r_i = sqrt(||u_i||^2 - sum_{d removed} u_id^2), so the mean is
    (1/n) sum_i u_i / r_i with the removed dims set to 0: one weighted column sum, no copies.
    Rows that vanish entirely (r_i = 0) are left out.
    """
    total, n = np.zeros(u.shape[1]), 0
    for s in range(0, u.shape[0], ROW_CHUNK):
        blk = u[s : s + ROW_CHUNK]
        r2 = np.einsum("ij,ij->i", blk, blk, dtype=np.float64) - (blk[:, removed].astype(np.float64) ** 2).sum(1)
        ok = r2 > 1e-12
        total += (ok / np.sqrt(np.where(ok, r2, 1.0))) @ blk
        n += int(ok.sum())
    total[removed] = 0.0
    return total / max(n, 1)


def gap_after_removal(p: Pairs, ks: Sequence[int] = DEFAULT_TOP_KS) -> dict[str, float]:
    """Centroid distance after zeroing the top-k gap dimensions, for each k."""
    order, _ = gap_dimension_shares(p)
    out = {}
    for k in ks:
        gap = _renorm_mean(p.image, order[:k]) - _renorm_mean(p.text, order[:k])
        out[f"centroid_distance_without_top{k}_dims"] = float(np.linalg.norm(gap))
    return out


def moment_metrics(image: MomentState, text: MomentState, ks: Sequence[int] = DEFAULT_TOP_KS) -> dict[str, float]:
    """Effective ranks, ranks and gap_top{k}_dims_share from the two modalities' moment states."""
    sv_image, sv_text = singular_values_from(image), singular_values_from(text)
    out = {
        "effective_rank_image": effective_rank_from(sv_image),
        "effective_rank_text": effective_rank_from(sv_text),
        "rank_image": float(rank_from(sv_image)),
        "rank_text": float(rank_from(sv_text)),
    }
    delta = image.mean - text.mean
    shares = np.sort(delta**2)[::-1] / float(delta @ delta)
    for k in ks:
        out[f"gap_top{k}_dims_share"] = float(shares[:k].sum())
    return out


def spectrum_from_moments(p: Pairs, image: MomentState, text: MomentState,
                          ks: Sequence[int] = DEFAULT_TOP_KS) -> dict[str, float]:
    """The spectrum family from precomputed moment states of the prepared pairs `p`."""
    return {**moment_metrics(image, text, ks), **gap_after_removal(p, ks)}


def spectrum_metrics(image: Any, text: Any = None, text_to_image: Any = None,
                     ks: Sequence[int] = DEFAULT_TOP_KS) -> dict[str, float]:
    """effective_rank_image/text, rank_image/text, gap_top{k}_dims_share and the removal effect for each k."""
    p = prepare(image, text, text_to_image)
    return spectrum_from_moments(p, moment_state(p.image), moment_state(p.text), ks)
