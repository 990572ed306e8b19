"""The correction an index applies: none, an embedding fixer, or calibrated scores.

    none        score = raw cosine <q, d>
    fixer       documents stored as fixer.transform(d, role) (role-aware fixers get doc_image /
                doc_text / doc_fused, others image / text, and fused documents are re-fused from
                their fixed parts); the query is transformed by its own role (query_text, or
                image) at query time; score = cosine of the corrected vectors
    calibrated  documents stored raw; score = P(match | raw cosine, query role, document role)
                from a fitted CalibratedScores, with priors set for THIS corpus:
                prior(q, d) = relevant documents of role d per query / documents of role d
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from .documents import Parts, fuse, unit

KINDS = ("none", "fixer", "calibrated")
_DOC_ROLE = {"image": "doc_image", "text": "doc_text", "fused": "doc_fused"}


def pair_name(query_role: str, doc_role: str) -> str:
    from ..fixers.calibrate import canonical_pair

    return canonical_pair(f"{query_role}-{doc_role}")


class Correction:
    """A fitted correction (or none) with the operations an index needs."""

    def __init__(self, fixer: Any = None) -> None:
        self.fixer = fixer
        if fixer is None:
            self.kind = "none"
        elif getattr(fixer, "acts_on", "embeddings") == "scores":
            self.kind = "calibrated"
        else:
            self.kind = "fixer"

    @property
    def name(self) -> str:
        return "none" if self.fixer is None else str(self.fixer.name)

    @property
    def moves_vectors(self) -> bool:
        return self.kind == "fixer"

    def _knows_roles(self) -> bool:
        return "query_text" in getattr(self.fixer, "modalities", ())

    def doc_rows(self, role: str, parts: Parts, fuse_weight: float) -> np.ndarray:
        """Corrected unit vectors of a chunk of documents of `role` (fixer corrections only)."""
        fx = self.fixer
        if self._knows_roles():
            raw = fuse(parts[0], parts[1], fuse_weight) if role == "fused" else parts[0]
            return unit(fx.transform(raw, _DOC_ROLE[role]))
        if role == "fused":  # fuse the separately fixed parts
            return fuse(fx.transform(parts[0], "image"), fx.transform(parts[1], "text"), fuse_weight)
        return unit(fx.transform(parts[0], role))

    def query_rows(self, q: np.ndarray, query_role: str) -> np.ndarray:
        """Corrected unit query vectors (identity unless the correction moves vectors)."""
        if not self.moves_vectors:
            return unit(q)
        if self._knows_roles():
            return unit(self.fixer.transform(q, "query_text" if query_role == "text" else "doc_image"))
        return unit(self.fixer.transform(q, query_role))

    def calibrated_pairs(self) -> list[str]:
        return list(self.fixer.prob_pairs_) if self.kind == "calibrated" else []

    def probability(self, raw_cos: np.ndarray, query_role: str, doc_role: str) -> np.ndarray | None:
        """P(match) of raw cosines, or None when this correction has no calibration for the pair."""
        if self.kind != "calibrated":
            return None
        pair = pair_name(query_role, doc_role)
        if pair not in self.fixer.prob_pairs_:
            return None
        return self.fixer.probability(raw_cos, pair)

    def set_corpus_priors(self, counts: dict[str, int], override: Any = None) -> dict[str, float]:
        """Priors for this corpus (see module docstring); `override` (a number or {pair: number})
        wins. Returns {pair: prior} as set."""
        fx = self.fixer
        calib = dict(getattr(fx, "role_counts_", {}) or {})
        out: dict[str, float] = {}
        for pair in fx.prob_pairs_:
            a, b = pair.split("-")
            doc = a if b == "text" and a != "text" else b  # the non-text role; text for text-text
            n_doc = int(counts.get(doc, 0))
            if pair in fx.density_ and calib.get(doc) and n_doc:
                same = 1 if a == b else 0  # a query is not its own match
                per_query = fx.density_[pair] * (calib[doc] - same)
                out[pair] = float(min(max(per_query / max(n_doc - same, 1), 1e-12), 0.99))
        if override is not None:
            given = override if isinstance(override, dict) else {p: override for p in fx.prob_pairs_}
            out.update({pair_name(*k.split("-")): float(v) for k, v in given.items()})
        for pair, p in out.items():
            fx.set_prior(pair, p)
        return out


def check_kind(correction: str) -> None:
    from ..fixers import available_fixers

    if correction != "none" and correction not in available_fixers():
        raise GapkitError(f"unknown correction '{correction}'; use none or a fixer: {', '.join(available_fixers())}")


def check_prior(prior: Any) -> None:
    """None, a number in (0, 1), or {pair: number in (0, 1)} (GapkitError otherwise)."""
    from ..fixers.calibrate import _check_probability, canonical_pair

    if prior is None:
        return
    for k, v in (prior.items() if isinstance(prior, dict) else [("prior", prior)]):
        if k != "prior":
            canonical_pair(k)
        _check_probability(v, f"prior of {k}" if k != "prior" else "prior")
