"""Mean-centring per modality (DrML, C3 "collapse", I0T-post) and per role (GR-CLIP).

    mu_m = mean of the L2-normalised rows of modality (or role) m on the calibration set
    x'   = normalise(x - mu_m)         (renormalize=True, the default)
    x'   = x - mu_m                    (renormalize=False)

After centring both clouds sit around the origin, so the centroid gap of the calibration set is
exactly 0 (before re-normalisation) and close to 0 after it. Removing the mean also removes the
shared "cone" component, which is what makes texts look more like texts than like their images.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ..validation import check_mapping
from ._stream import check_rows, mean_of_normalized, normalize_rows, unit_preimage
from .base import Fixer

#: Roles in mixed-modality search and the plain modality each one falls back to.
ROLES = ("query_text", "doc_text", "doc_image", "doc_fused")
ROLE_ALIASES = {"image": "doc_image", "text": "doc_text", "query": "query_text", "fused": "doc_fused"}


def fuse(image: np.ndarray, text: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Fused image+text document embeddings: normalise(w x + (1 - w) y), rows of unit x and y."""
    x = np.asarray(image, np.float64)
    y = np.asarray(text, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return normalize_rows(weight * x + (1 - weight) * y)


class _Centering(Fixer):
    """Shared transform/inverse: subtract the mean of the row's modality (or role)."""

    renormalize: bool

    def _mean(self, modality: str) -> np.ndarray:
        raise NotImplementedError

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        c = u - self._mean(modality)
        return normalize_rows(c) if self.renormalize else c

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        mu = self._mean(modality)
        return unit_preimage(u, mu) if self.renormalize else u + mu


class MeanCentering(_Centering):
    """Subtract each modality's mean; fitted: image_mean_ (D,), text_mean_ (D,)."""

    name = "center"

    def __init__(self, renormalize: bool = True) -> None:
        self.renormalize = renormalize

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        self.image_mean_ = mean_of_normalized(image, "image embeddings")
        self.text_mean_ = mean_of_normalized(text, "text embeddings")

    def _fit_stats(self, stats: Any) -> None:
        self.image_mean_, self.text_mean_ = stats.image.mean.copy(), stats.text.mean.copy()

    def _mean(self, modality: str) -> np.ndarray:
        return self.image_mean_ if modality == "image" else self.text_mean_


class RoleCentering(_Centering):
    """Separate means for query texts, document texts, document images and fused documents.

    fit(image, text) uses the images for doc_image, the texts for doc_text and (unless given
    separately) for query_text, and the fused pairs normalise(x + y) for doc_fused;
    `fit_roles({role: rows})` fits any subset of roles directly. transform(x, modality=ROLE)
    with ROLE in ROLES (or "image" / "text" / "query" / "fused").
    Fitted: roles_ (list of role names), role_means_ (R, D).
    """

    name = "role-center"
    modalities = ROLES + tuple(ROLE_ALIASES)

    def __init__(self, renormalize: bool = True, fuse_weight: float = 0.5) -> None:
        self.renormalize = renormalize
        self.fuse_weight = fuse_weight

    def fit(self, image: Any, text: Any, text_to_image: Any = None, *, query_text: Any = None) -> "RoleCentering":
        """Fit doc_image / doc_text / doc_fused from the pairs and query_text from `query_text`
        (defaults to `text`)."""
        img = check_rows(image, "image embeddings")
        txt = check_rows(text, "text embeddings", dim=img.shape[1])
        mapping = None if text_to_image is None else check_mapping(text_to_image, img.shape[0], txt.shape[0])
        if mapping is None and img.shape[0] != txt.shape[0]:
            check_mapping(None, img.shape[0], txt.shape[0])  # raises the standard message
        rows = {"doc_image": img, "doc_text": txt,
                "query_text": txt if query_text is None else query_text}
        pair_img = img if mapping is None else np.asarray(img)[mapping]
        rows["doc_fused"] = fuse(pair_img, txt, self.fuse_weight)
        return self.fit_roles(rows)

    def fit_roles(self, rows: dict[str, Any]) -> "RoleCentering":
        """Fit the mean of each role given as {role: (n_role, D) rows}."""
        unknown = sorted(set(rows) - set(ROLES))
        if unknown:
            raise GapkitError(f"role-center: unknown roles {unknown}; known: {', '.join(ROLES)}")
        if not rows:
            raise GapkitError("role-center: no roles to fit")
        dim = None
        means = []
        for role in ROLES:
            if role in rows:
                a = check_rows(rows[role], f"{role} embeddings", dim=dim)
                dim = a.shape[1]
                means.append(mean_of_normalized(a, f"{role} embeddings"))
        self.roles_ = [r for r in ROLES if r in rows]
        self.role_means_ = np.stack(means)
        self.dim_ = int(dim)
        return self

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:  # pragma: no cover
        raise AssertionError("RoleCentering overrides fit()")

    @property
    def stats_fuse_weight(self) -> float | None:
        return float(self.fuse_weight)

    def _fit_stats(self, stats: Any) -> None:
        """From merged shard statistics, as fit(image, text) on 1:1 pairs: doc_image and doc_text
        are the modality means, query_text the text mean, doc_fused the fused pairs' mean."""
        if stats.fused is None or stats.fuse_weight != float(self.fuse_weight):
            raise GapkitError("role-center needs the fused-pair statistics made with its fuse weight")
        means = {"query_text": stats.text.mean, "doc_text": stats.text.mean, "doc_image": stats.image.mean,
                 "doc_fused": stats.fused.mean}
        self.roles_ = list(ROLES)
        self.role_means_ = np.stack([means[r].copy() for r in ROLES])

    def _mean(self, modality: str) -> np.ndarray:
        role = ROLE_ALIASES.get(modality, modality)
        if role not in self.roles_:
            raise GapkitError(f"role-center: role '{role}' was not fitted (fitted: {', '.join(self.roles_)})")
        return self.role_means_[self.roles_.index(role)]
