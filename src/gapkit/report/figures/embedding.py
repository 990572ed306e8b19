"""Figures of embedding geometry: where the images and the texts sit, and how far apart.

Functions (each returns a matplotlib Figure; save it with `save_figure`):
  pair_projection      2-D PCA or UMAP of image + text rows, a grey line joining every pair
                       (Liang et al. 2022, Fig. 1; the Jina blog's scatter plots)
  projection_panels    PCA and UMAP side by side for one or several embedding sets
  cones                several clouds (e.g. random initialisations of one encoder on the same
                       inputs) in ONE shared PCA: each forms its own narrow cone (Liang Fig. 2c)
  cosine_histograms    matched image-text vs matched text-text (captions of the same image) vs
                       unmatched image-text cosine similarities (Jina blog, Fig. 1)
  gap_dimensions       sorted per-dimension contributions to the squared gap ||mean x - mean y||^2
                       and their cumulative share (Schrodi et al. 2025)

Inputs are (N, D) image rows, (M, D) text rows and an optional (M,) text -> image map (as in
`PairedEmbeddings`); rows are L2-normalised here, so raw model outputs are fine. Large sets are
subsampled with a seeded generator so plots stay readable and fast.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import GapkitError
from ...validation import as_matrix, check_pairs, l2_normalize
from ...metrics.geometry import cone_cosine_mean
from ._style import COLORS, legend_below, new_figure

# Qualitative colours for several clouds in one plot (cones); colour-blind-safe ordering first.
CLOUD_COLORS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
                "#000000", "#999999", "#8e44ad", "#2ecc71", "#c0392b")


# ----------------------------------------------------------------------------------- helpers
def _prepare(image: Any, text: Any, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated, L2-normalised float64 rows and the explicit (M,) text -> image map."""
    img, txt, mapping = check_pairs(image, text, text_to_image)
    img = l2_normalize(img, np.float64)
    txt = l2_normalize(txt, np.float64)
    if mapping is None:
        mapping = np.arange(txt.shape[0], dtype=np.int64)
    return img, txt, mapping


def _subsample_pairs(mapping: np.ndarray, max_pairs: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick at most `max_pairs` images (all their captions kept): (image idx, text idx)."""
    images = np.unique(mapping)
    if max_pairs is not None and images.size > max_pairs:
        images = np.sort(np.random.default_rng(seed).choice(images, size=max_pairs, replace=False))
    texts = np.flatnonzero(np.isin(mapping, images))
    return images, texts


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of x (K, D) on their top-2 principal components.

    Returns the (K, 2) coordinates and the explained-variance ratio of the two components.
    PCA = SVD of the centred matrix: x - mean = U S V^T, coordinates = (x - mean) V[:, :2].
    """
    xc = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s**2
    ratio = var[:2] / max(float(var.sum()), 1e-300)
    return xc @ vt[:2].T, ratio


def umap_2d(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """(K, 2) UMAP coordinates of x with cosine distance (umap-learn; imported here: slow)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba / n_jobs chatter
            import umap
    except ImportError:
        raise GapkitError("UMAP figures need umap-learn: pip install 'gapkit[report]'") from None
    _cache_compiled("umap", "pynndescent")
    small = x.shape[0] < UMAP_DENSE_MAX
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, x.shape[0] - 1),
                            metric="precomputed" if small else "cosine", random_state=seed,
                            init="random" if x.shape[0] < 10 else "spectral")
        return np.asarray(reducer.fit_transform(cosine_distances(x) if small else x))


# Below this many rows umap-learn computes the exact all-pairs distance matrix itself, through
# scikit-learn with its numba cosine as a Python callable (one call per pair: 1.2-1.9 s for 1,000
# rows). The same matrix from one matrix product is handed over as "precomputed" instead: the
# same embedding bit for bit when the k-NN graph is connected (the bundled CLIP sample); when it
# falls apart (random-init CLIP: images and texts are two components) umap-learn places the
# components by their closest points instead of their centroids, a different but equally valid
# arrangement of the same clusters.
UMAP_DENSE_MAX = 4096


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """(K, K) float64 1 - cos(x_i, x_j), clipped to [0, 2], zero diagonal (zero rows: distance 1)."""
    v = np.asarray(x, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    d = np.clip(1.0 - v @ v.T, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


_CACHED_PACKAGES: set[str] = set()


def _cache_compiled(*packages: str) -> None:
    """Let numba keep the machine code of these packages' jitted functions on disk.

    umap-learn and pynndescent compile most of their functions without `cache=True`, so every
    process spent ~15-25 s (2 idle cores) compiling them before its first UMAP; with the on-disk
    cache a later process loads the same machine code (identical results): 21.7 -> 7.6 s for a
    1,100 x 512 fit (benchmarks/bench_umap_cache.py). numba puts the cache beside the package or,
    when that is read-only, in the user's cache folder; a function numba cannot cache is simply compiled as before."""
    import sys

    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    for name, mod in list(sys.modules.items()):
        top = name.split(".")[0]
        if top not in packages or top in _CACHED_PACKAGES or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, Dispatcher):
                try:
                    obj.enable_caching()
                except Exception:  # numba refuses some functions (e.g. dynamic globals): compile them
                    pass
    _CACHED_PACKAGES.update(packages)


def _project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates and axis-label suffix for method 'pca' or 'umap'."""
    if method == "pca":
        xy, ratio = pca_2d(x)
        return xy, f"PC1 ({100 * ratio[0]:.0f} % var.)|PC2 ({100 * ratio[1]:.0f} % var.)"
    if method == "umap":
        return umap_2d(x, seed=seed), "UMAP 1|UMAP 2"
    raise GapkitError(f"unknown projection '{method}'; use 'pca' or 'umap'")


# --------------------------------------------------------------------------- pair projection
def draw_pair_projection(ax: Any, image: Any, text: Any, text_to_image: Any = None, *, method: str = "pca",
                         max_pairs: int | None = 300, seed: int = 0, title: str | None = None,
                         legend: bool = True) -> None:
    """Draw the 2-D projection of one embedding set on `ax` (see `pair_projection`)."""
    from matplotlib.collections import LineCollection

    img, txt, mapping = _prepare(image, text, text_to_image)
    keep_img, keep_txt = _subsample_pairs(mapping, max_pairs, seed)
    # Fit the projection on both modalities together, so distances between the clouds are real.
    xy, labels = _project(np.vstack([img[keep_img], txt[keep_txt]]), method, seed)
    xy_img, xy_txt = xy[: keep_img.size], xy[keep_img.size :]
    row_of_image = {int(i): r for r, i in enumerate(keep_img)}
    ends = np.array([row_of_image[int(i)] for i in mapping[keep_txt]])
    segments = np.stack([xy_img[ends], xy_txt], axis=1)  # (T, 2 points, 2 coords)
    ax.add_collection(LineCollection(segments, colors=COLORS["pair"], linewidths=0.5, alpha=0.35, zorder=1))
    ax.scatter(xy_img[:, 0], xy_img[:, 1], s=10, c=COLORS["image"], label=f"image ({keep_img.size})",
               zorder=2, edgecolors="none", alpha=0.85)
    ax.scatter(xy_txt[:, 0], xy_txt[:, 1], s=10, c=COLORS["text"], label=f"text ({keep_txt.size})",
               zorder=2, edgecolors="none", alpha=0.85, marker="s")
    xl, yl = labels.split("|")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="best", markerscale=1.8, fontsize=8, title="grey line = a matched pair", title_fontsize=8)


def pair_projection(image: Any, text: Any, text_to_image: Any = None, *, method: str = "pca",
                    max_pairs: int | None = 300, seed: int = 0, title: str | None = None) -> Any:
    """One panel: image rows (orange) and text rows (blue) projected to 2-D, pairs joined in grey.

    The projection (PCA: top-2 principal components of the L2-normalised rows of both modalities
    together; UMAP: cosine metric) is fitted on at most `max_pairs` images and all their captions.
    Two separate clouds crossed by long parallel grey lines = a modality gap (Liang Fig. 1).
    """
    fig, axes = new_figure(width=5.2, height=4.6)
    draw_pair_projection(axes[0, 0], image, text, text_to_image, method=method, max_pairs=max_pairs,
                         seed=seed, title=title or f"{method.upper()} of image and text embeddings")
    fig.tight_layout()
    return fig


def projection_panels(sets: Mapping[str, Any], methods: Sequence[str] = ("pca", "umap"), *,
                      max_pairs: int | None = 300, seed: int = 0, max_cols: int = 4) -> Any:
    """A grid of 2-D projections of several embedding sets (name -> PairedEmbeddings).

    With several methods: one row per set, one column per method. With one method: the sets side
    by side (wrapping after `max_cols`), e.g. the same data before and after each training arm."""
    if not sets:
        raise GapkitError("projection_panels: no embedding sets given")
    if not methods:
        raise GapkitError("projection_panels: no projection methods given")
    cells = [(name, pe, m) for name, pe in sets.items() for m in methods]
    ncols = len(methods) if len(methods) > 1 else min(max_cols, len(sets))
    nrows = -(-len(cells) // ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.4, height=4.1)
    for k, (name, pe, method) in enumerate(cells):
        ax = axes[k // ncols, k % ncols]
        title = f"{name}: {method.upper()}" if len(methods) > 1 else str(name)
        draw_pair_projection(ax, pe.image, pe.text, pe.text_to_image, method=method, max_pairs=max_pairs,
                             seed=seed, title=title, legend=(k == 0))
    for k in range(len(cells), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------- cones
def cones(clouds: Mapping[str, Any], *, max_points: int | None = 300, seed: int = 0,
          title: str = "Each random initialisation forms its own cone") -> Any:
    """All clouds (name -> (K_i, D) rows, same D) in one shared 2-D PCA, one colour each.

    Left: the PCA scatter (fitted on all clouds together). Right: each cloud's mean off-diagonal
    cosine (how narrow its cone is: 1 = all rows identical in direction) next to the cosine
    between cloud centroids, averaged over pairs of clouds (how far apart the cones are).
    Liang et al. 2022 Fig. 2c: the same inputs through 25 random initialisations of one encoder.
    """
    if len(clouds) < 1:
        raise GapkitError("cones: give at least one cloud")
    rng = np.random.default_rng(seed)
    names, rows = [], []
    dim = None
    for name, x in clouds.items():
        a = l2_normalize(as_matrix(x, f"cloud '{name}'", dtype=np.float64))
        if dim is not None and a.shape[1] != dim:
            raise GapkitError(f"cones: cloud '{name}' has dim {a.shape[1]}, others have {dim}")
        dim = a.shape[1]
        if max_points is not None and a.shape[0] > max_points:
            a = a[np.sort(rng.choice(a.shape[0], size=max_points, replace=False))]
        names.append(str(name))
        rows.append(a)
    xy, ratio = pca_2d(np.vstack(rows))
    fig, axes = new_figure(ncols=2, width=5.0, height=4.4)
    ax, bx = axes[0, 0], axes[0, 1]
    start = 0
    within = []
    for k, (name, a) in enumerate(zip(names, rows)):
        part = xy[start : start + a.shape[0]]
        start += a.shape[0]
        color = CLOUD_COLORS[k % len(CLOUD_COLORS)]
        ax.scatter(part[:, 0], part[:, 1], s=8, color=color, alpha=0.75, edgecolors="none", label=name)
        within.append(cone_cosine_mean(a))
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} % var.)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} % var.)")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    if len(names) <= 12:
        ax.legend(fontsize=7, markerscale=1.6, loc="best")
    centroids = l2_normalize(np.stack([a.mean(axis=0) for a in rows]))
    between = cone_cosine_mean(centroids) if len(rows) > 1 else float("nan")
    y = np.arange(len(names))
    bx.barh(y, within, color=[CLOUD_COLORS[k % len(CLOUD_COLORS)] for k in range(len(names))])
    bx.set_yticks(y, names, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlim(min(0.0, min(within) - 0.05), 1.0)
    bx.set_xlabel("mean cosine between rows of one cloud")
    title_b = "Cone narrowness (1 = a single direction)"
    if np.isfinite(between):
        bx.axvline(between, color=COLORS["neutral"], ls="--", lw=1.2)
        title_b += f"\ndashed: cosine between cloud centres = {between:.2f}"
    bx.set_title(title_b)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------ cosine histograms
def cosine_samples(image: Any, text: Any, text_to_image: Any = None, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The cosine-similarity samples of the Jina blog's Fig. 1 (first three from
    gapkit.metrics.cosine_distributions):

    matched image-text   : <x_{t(j)}, y_j> for every caption j of image t(j)
    matched text-text    : <y_j, y_k> for every pair j < k of captions of the same image (empty for 1:1 data)
    unmatched image-text : <x_i, y_j> for one random caption j of another image per caption
    unmatched text-text  : <y_j, y_k> for one random caption k of another image per caption, so
                           1:1 data (one caption per image) still shows how close texts sit together
    """
    from ...metrics.cosines import cosine_distributions

    d = cosine_distributions(image, text, text_to_image, seed=seed)
    _, txt, mapping = _prepare(image, text, text_to_image)
    k = np.random.default_rng([seed, 7]).integers(0, txt.shape[0], txt.shape[0])
    other = mapping[k] != mapping
    tt_other = np.einsum("md,md->m", txt[other], txt[k[other]])
    return {"matched image-text": d["image2text"], "matched text-text": d["text2text"],
            "unmatched image-text": d["unpaired_image2text"], "unmatched text-text": tt_other}


_HIST_COLORS = {"matched image-text": COLORS["fused"], "matched text-text": COLORS["text"],
                "unmatched image-text": COLORS["neutral"], "unmatched text-text": "#9ecae1"}


def draw_cosine_histograms(ax: Any, samples: Mapping[str, np.ndarray], title: str | None = None,
                           bins: np.ndarray | None = None, legend: bool = True) -> None:
    """Draw the density histograms of `cosine_samples` output on `ax`, medians dashed."""
    if bins is None:
        values = np.concatenate([v for v in samples.values() if v.size])
        bins = np.linspace(max(-1.0, values.min() - 0.02), min(1.0, values.max() + 0.02), 60)
    for name, v in samples.items():
        color = _HIST_COLORS.get(name, COLORS["accent"])
        if v.size == 0:
            ax.plot([], [], color=color, label=f"{name}: n/a (one caption per image)")
            continue
        med = float(np.median(v))
        ax.hist(v, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=color)
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.4, color=color,
                label=f"{name} (n={v.size:,}, median {med:.2f})")
        ax.axvline(med, color=color, ls="--", lw=1)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title or "Cosine similarity: matched vs unmatched")
    if legend:  # below the axes: matched cosines sit where an "upper left" legend would be
        legend_below(ax, ncol=1)


def cosine_histograms(image: Any, text: Any, text_to_image: Any = None, *, title: str | None = None,
                      seed: int = 0) -> Any:
    """Density histograms of the three cosine samples (see `cosine_samples`), medians marked.

    Read it like the Jina blog's Fig. 1: with a modality gap, two captions of the same image are
    far more similar to each other than either is to its own image, and matched image-text
    cosines sit only a little above unmatched ones.
    """
    samples = cosine_samples(image, text, text_to_image, seed=seed)
    fig, axes = new_figure(width=6.4, height=3.8)
    draw_cosine_histograms(axes[0, 0], samples, title)
    fig.tight_layout()
    return fig


def cosine_histogram_panels(sets: Mapping[str, Any], *, seed: int = 0, max_cols: int = 4) -> Any:
    """`cosine_histograms` of several sets side by side on one shared x axis (name -> PairedEmbeddings)."""
    if not sets:
        raise GapkitError("cosine_histogram_panels: no embedding sets given")
    samples = {n: cosine_samples(pe.image, pe.text, pe.text_to_image, seed=seed)
               for n, pe in sets.items()}
    values = np.concatenate([v for s in samples.values() for v in s.values() if v.size])
    bins = np.linspace(max(-1.0, values.min() - 0.02), min(1.0, values.max() + 0.02), 70)
    ncols = min(max_cols, len(sets))
    nrows = -(-len(sets) // ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=5.0, height=3.4, sharex=True)
    for k, (name, s) in enumerate(samples.items()):
        medians = " | ".join(f"{_SHORT[key]} {np.median(v):.2f}" for key, v in s.items() if v.size)
        draw_cosine_histograms(axes[k // ncols, k % ncols], s, f"{name}\nmedian: {medians}", bins, legend=False)
    for k in range(len(samples), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    handles = [plt_patch(_HIST_COLORS[key], key) for key in _HIST_COLORS]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


_SHORT = {"matched image-text": "image-text", "matched text-text": "text-text", "unmatched image-text": "unm. i-t",
          "unmatched text-text": "unm. t-t"}


def plt_patch(color: str, label: str) -> Any:
    """A legend handle: a filled box in `color`."""
    from matplotlib.patches import Patch

    return Patch(facecolor=color, edgecolor=color, alpha=0.6, label=label)


# ------------------------------------------------------------------ per-dimension gap shares
def gap_contributions(image: Any, text: Any, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(dims, share), largest first: share_d = g_d^2 / ||g||^2 with g = mean image - mean text
    (gapkit.metrics.gap_dimension_shares). A zero gap is an error (nothing to share out)."""
    from ...metrics import gap_dimension_shares, gap_vector

    if not np.any(gap_vector(image, text, text_to_image)):
        raise GapkitError("gap_contributions: the two centroids coincide (gap is exactly zero)")
    return gap_dimension_shares(image, text, text_to_image)


def gap_dimensions(image: Any, text: Any, text_to_image: Any = None, *, top: int = 20,
                   title: str | None = None) -> Any:
    """Left: the `top` dimensions with the largest share of the squared gap (bars, labelled with
    the dimension index). Right: cumulative share vs number of dimensions (log x), with the number
    of dimensions that carry half and 90 % of the gap marked. A gap carried by a few dimensions
    can be removed by dropping them (Schrodi et al. 2025)."""
    dims, share = gap_contributions(image, text, text_to_image)
    top = max(1, min(top, dims.size))
    fig, axes = new_figure(ncols=2, width=4.8, height=3.8)
    ax, bx = axes[0, 0], axes[0, 1]
    ax.bar(np.arange(top), 100 * share[:top], color=COLORS["accent"])
    ax.set_xticks(np.arange(top), [str(int(d)) for d in dims[:top]], rotation=90, fontsize=7)
    ax.set_xlabel("embedding dimension (sorted by contribution)")
    ax.set_ylabel("% of squared gap")
    ax.set_title(f"Top {top} of {dims.size} dimensions")
    cum = np.cumsum(share)
    k = np.arange(1, dims.size + 1)
    bx.plot(k, 100 * cum, color=COLORS["accent"], lw=1.8)
    bx.set_xscale("log")
    bx.set_xlabel("number of dimensions (largest first)")
    bx.set_ylabel("cumulative % of squared gap")
    for frac, ls in ((0.5, "--"), (0.9, ":")):
        n = int(np.searchsorted(cum, frac) + 1)
        bx.axhline(100 * frac, color=COLORS["neutral"], ls=ls, lw=0.8)
        bx.axvline(n, color=COLORS["neutral"], ls=ls, lw=0.8)
        bx.annotate(f"{int(100 * frac)} % in {n} dims", (n, 100 * frac), xytext=(4, -12),
                    textcoords="offset points", fontsize=8)
    bx.set_ylim(0, 102)
    bx.set_title("How concentrated the gap is")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["pair_projection", "projection_panels", "draw_pair_projection", "cones", "cosine_samples",
           "cosine_histograms", "cosine_histogram_panels", "draw_cosine_histograms", "gap_contributions", "gap_dimensions", "pca_2d", "umap_2d"]
