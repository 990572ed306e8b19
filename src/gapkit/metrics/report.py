"""`measure`: run a set of gap metrics on one pair of embedding matrices -> one flat dict.

Metrics are grouped in families (one module each); `metrics=` selects families or single keys.
The default runs every family; the truly pairwise ones switch to documented sampled estimators
above EXACT_LIMIT rows (their keys then come with _ci_low/_ci_high/_n_sampled) unless
exact=True, and the cone minimum (no unbiased estimator) is then left out. `ci=True` adds
95 % CIs (`<key>_ci_low`, `<key>_ci_high`): bootstrap for geometry and cosines, over queries
for retrieval, the U-statistic variance for exact uniformity (docs/metrics.md); geometry CIs
are basic-bootstrap intervals with the bootstrap bias beside them (`<key>_bias`, see
gapkit.metrics.bootstrap). `null=True` adds the permutation null of the gap metrics
(`<key>_null_p95`, `<key>_p_value`, see gapkit.metrics.null).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..errors import GapkitError
from ..typecheck import check_positive
from ._prep import Pairs, prepare
from ._tiles import EXACT_LIMIT
from .geometry import GEOMETRY_KEYS


@dataclass(frozen=True)
class Options:
    """Settings shared by the families of one `measure` call."""

    exact: bool | None
    seed: int
    ks: tuple[int, ...]
    logit_scale: float
    exact_limit: int
    n_samples: int
    n_queries: int
    train_fraction: float
    folds: int | None
    ci: bool
    cache: dict = field(default_factory=dict)  # results shared by families (the D x D moments)


def _geometry(p: Pairs, o: Options) -> dict[str, float]:
    from .geometry import geometry_compute, geometry_state

    return geometry_compute(geometry_state(p))


def _uniformity(p: Pairs, o: Options) -> dict[str, float]:
    from .pairwise import cross_stat, within_stat

    out: dict[str, float] = {}
    for name, u in (("image", p.image), ("text", p.text)):
        stat, lo = within_stat(u, o.exact, o.n_samples, o.seed, o.exact_limit, o.ci)
        out.update(stat.as_dict(f"uniformity_{name}"))
        if lo is not None:
            out[f"{name}_cone_cosine_min"] = lo
    out.update(cross_stat(p, o.exact, o.n_samples, o.seed, o.exact_limit, o.ci).as_dict("uniformity_cross"))
    return out


def _retrieval(p: Pairs, o: Options) -> dict[str, float]:
    from .retrieval import retrieval_metrics

    return retrieval_metrics(p, ks=o.ks, logit_scale=o.logit_scale, exact=o.exact, n_queries=o.n_queries, seed=o.seed,
                             exact_limit=o.exact_limit, ci=o.ci)


def _separability(p: Pairs, o: Options) -> dict[str, float]:
    from .separability import linear_separability

    return {"linear_separability": linear_separability(p, train_fraction=o.train_fraction, folds=o.folds, seed=o.seed)}


def _moments(p: Pairs, o: Options) -> tuple:
    """Each modality's Gram matrix and row sum, computed once for spectrum and gapstats."""
    from .spectrum import moment_state

    if "moments" not in o.cache:
        o.cache["moments"] = (moment_state(p.image), moment_state(p.text))
    return o.cache["moments"]


def _spectrum(p: Pairs, o: Options) -> dict[str, float]:
    from .spectrum import spectrum_from_moments

    return spectrum_from_moments(p, *_moments(p, o))


def _gapstats(p: Pairs, o: Options) -> dict[str, float]:
    from .gapstats import gapstats_compute, gapstats_state

    return gapstats_compute(gapstats_state(p, *_moments(p, o)))


def _distribution(p: Pairs, o: Options) -> dict[str, float]:
    from .distribution import distribution_metrics

    return distribution_metrics(p, seed=o.seed)


def _cosines(p: Pairs, o: Options) -> dict[str, float]:
    from .cosines import cosine_summary

    return cosine_summary(p, seed=o.seed)


# family -> (function, regex matching every key it reports)
FAMILIES: dict[str, tuple[Callable[[Pairs, Options], dict[str, float]], str]] = {
    "geometry": (_geometry, "|".join(GEOMETRY_KEYS)),
    "uniformity": (_uniformity, r"uniformity_(image|text|cross)|(image|text)_cone_cosine_min"),
    "retrieval": (_retrieval, r"(i2t|t2i)_recall@\d+|logit_entropy"),
    "separability": (_separability, r"linear_separability"),
    "spectrum": (_spectrum, r"(effective_)?rank_(image|text)|gap_top\d+_dims_share|centroid_distance_without_top\d+_dims"),
    "gapstats": (_gapstats, r"gap_length_cv|gap_direction_consistency|gap_variance_share_(image|text)"),
    "distribution": (_distribution, r"mmd_rbf|sliced_wasserstein"),
    "cosines": (_cosines, r"(image2text|text2text|unpaired_image2text)_cosine_mean"),
}
# Families with bootstrap CIs: geometry and the cosine means, both from per-image sums under
# resample weights (metrics.bootstrap). The spectrum and gapstats need a D x D Gram matrix per
# resample and are left out.


def _select(metrics: Iterable[str] | None) -> tuple[list[str], set[str] | None]:
    """Families to run and the names asked for (family names and/or keys; None = everything)."""
    if metrics is None:
        return list(FAMILIES), None
    fams, names = [], set()
    for m in (m.strip() for m in metrics):
        hit = [m] if m in FAMILIES else [f for f, (_, pat) in FAMILIES.items() if re.fullmatch(pat, m)]
        if not hit:
            raise GapkitError(f"unknown metric '{m}'; known families: {', '.join(FAMILIES)} "
                              "(or any key they report, see docs/metrics.md)")
        fams.append(hit[0])
        names.add(m)
    return list(dict.fromkeys(fams)), names


def _keep(key: str, wanted: set[str] | None, family_of: dict[str, str]) -> bool:
    """Is `key` (or the metric its _ci_low/_ci_high/_n_sampled suffix belongs to) wanted?"""
    if wanted is None:
        return True
    base = re.sub(r"_(ci_low|ci_high|n_sampled|bias|null_p95|p_value|null_observed)$", "", key)
    if key == "null_n_perm":
        return True
    return base in wanted or family_of.get(base) in wanted


def measure(image: Any, text: Any = None, text_to_image: Any = None, metrics: Sequence[str] | None = None, *,
            ci: bool = False, n_boot: int = 1000, seed: int = 0, exact: bool = False,
            ks: Sequence[int] = (1, 5, 10), logit_scale: float = 100.0, exact_limit: int = EXACT_LIMIT,
            n_samples: int = 200_000, n_queries: int = 1_000, train_fraction: float = 0.5,
            folds: int | None = None, progress: bool = False, null: bool = False,
            n_perm: int = 1000) -> dict[str, float]:
    """Run gap metrics on image (N, D) and text (M, D) embeddings; return one flat dict.

    `image` may be a PairedEmbeddings (then `text` is omitted). `metrics`: family names
    (see FAMILIES) or single keys; None = all.
    `exact=True` computes pairwise metrics exactly at any size (O(N^2 D) time, bounded memory).
    `null=True` (with the geometry family) adds the modality-label permutation null of
    centroid_distance and rmg: <key>_null_p95 and <key>_p_value from `n_perm` swap patterns.
    The dict holds n_image, n_text, dim and every metric key (docs/metrics.md).
    """
    # NaN, inf or < 0 would make logit_entropy meaningless; 0 is the uniform softmax (entropy log M)
    check_positive("logit_scale", logit_scale, allow_zero=True)
    p = prepare(image, text, text_to_image)
    fams, wanted = _select(metrics)
    opts = Options(True if exact else None, seed, tuple(int(k) for k in ks), float(logit_scale), exact_limit,
                   n_samples, n_queries, train_fraction, folds, ci)
    out: dict[str, float] = {"n_image": p.n_image, "n_text": p.n_text, "dim": p.dim}
    family_of: dict[str, str] = {}
    bar = _progress(fams, progress)
    for fam in bar:
        res = FAMILIES[fam][0](p, opts)
        family_of.update({k: fam for k in res})
        out.update(res)
    if ci:
        out.update(_bootstraps(p, fams, opts, n_boot))
    if null and "geometry" in fams:
        from .null import permutation_null

        out.update(permutation_null(p, n_perm=n_perm, seed=seed, observed=out))
    return {k: v for k, v in out.items() if k in ("n_image", "n_text", "dim") or _keep(k, wanted, family_of)}


def _bootstraps(p: Pairs, fams: list[str], o: Options, n_boot: int) -> dict[str, float]:
    from .bootstrap import cosine_bootstrap, geometry_bootstrap

    out: dict[str, float] = {}
    if "geometry" in fams:
        out.update(geometry_bootstrap(p, n_boot, o.seed))
    if "cosines" in fams:
        out.update(cosine_bootstrap(p, n_boot, o.seed))
    return out


def _progress(items: list[str], show: bool) -> Iterable[str]:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="metrics", unit="family", leave=False)
