"""Synthetic embeddings with a realistic modality gap, for tests and benchmarks.

The bundled real CLIP ViT-B/16 sample (500 COCO pairs, 512-d, rows z_j = [x_j, y_j] of the
concatenated unit pair, 1024-d) is resampled in one of two ways. Both keep CLIP's geometry: the
two cones, their gap (the means), the paired cross-covariance (a caption lies near its image):

    gaussian   z = mu + g L^T,  g ~ N(0, I_r)              one joint Gaussian: mean mu and the
               r = 499 principal directions L (cov = L L^T) of the 500 pairs
    bootstrap  z = mu + (z_j - mu + h g L^T) / sqrt(1 + h^2),  j ~ U{0..499}
               a smoothed bootstrap (a kernel density estimate with the data's covariance as the
               kernel, shrunk so that the covariance of z stays the data's): a real pair plus a
               scaled latent perturbation; bandwidth h (default 0.6)

then   image = normalise(z[:D] + s_i e),  caption_j = normalise(z[D:] + s_t e_j),  e ~ N(0, I/D).

Which one is realistic was measured, not assumed (docs/search.md, "Synthetic data";
`geometry_stats` below, benchmarks/bench_synthetic_geometry.py): on 500 rows the real CLIP images
have a TwoNN intrinsic dimension of 15 (captions 12), a median 1st-NN cosine of 0.82 and a
relative contrast (1 - median cosine) / (1 - 10th-NN cosine) of 1.69. The Gaussian draws have
intrinsic dimension ~60, 1st-NN cosine 0.62 and contrast 1.29: no cluster structure, far harder
for ANN indexes than real embeddings. The bootstrap (h 0.6, noise 0.15) gives 1st-NN 0.85, contrast
1.52 and the same median cosine and matched-pair cosine as the real sample; its TwoNN estimate
(~6.5) is lower than the real one because draws of the same real pair are near-duplicates. At
scale it is a mixture of 500 overlapping clusters, one per real pair: the "realistic" case of the
benchmarks; the Gaussian stays available as the hard case.

Rows are generated chunk by chunk from per-chunk seeds, so any row range is reproducible and a
million rows never need to be in memory at once.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..embeddings import PairedEmbeddings
from ..errors import GapkitError

CHUNK = 65_536


@functools.lru_cache(maxsize=4)
def _joint_gaussian(sample: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean (2D,), factors (2D, r) with cov = L L^T, and the RMS norm of the centred image half."""
    from ..samples import load_sample

    pe = load_sample(sample)
    x = np.asarray(pe.image, np.float64)
    y = np.asarray(pe.text, np.float64)
    z = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True),
                        y / np.linalg.norm(y, axis=1, keepdims=True)], axis=1)
    mu = z.mean(axis=0)
    c = z - mu
    # eigen-decomposition of the small (n, n) Gram matrix instead of an SVD of (n, 2D): same factors
    w, u = np.linalg.eigh(c @ c.T)
    keep = w > 1e-10 * w.max()
    vt = (u[:, keep].T @ c) / np.sqrt(w[keep])[:, None]  # right singular vectors (r, 2D)
    factors = (vt.T * np.sqrt(w[keep] / (z.shape[0] - 1))).astype(np.float32)
    rms = float(np.sqrt((c[:, : x.shape[1]] ** 2).sum(axis=1).mean()))
    return mu, factors, rms


@functools.lru_cache(maxsize=4)
def _centred_pairs(sample: str) -> np.ndarray:
    """The sample's concatenated unit pairs minus their mean, (n, 2D) float32 (bootstrap centres)."""
    from ..samples import load_sample

    pe = load_sample(sample)
    z = np.concatenate([_unit(pe.image), _unit(pe.text)], axis=1)
    return (z - z.mean(axis=0)).astype(np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


KINDS = ("gaussian", "bootstrap")
# default noise per kind: the Gaussian's historical 0.6; the bootstrap's 0.15 (with h 0.6) measured
# closest to the real sample's nearest-neighbour statistics (docs/search.md, "Synthetic data")
DEFAULT_NOISE = {"gaussian": 0.6, "bootstrap": 0.15}


class GappedGenerator:
    """Resamples the bundled sample's joint image-text geometry (see module docstring).

    kind: "gaussian" (default; one joint Gaussian, the hard case for ANN) or "bootstrap" (a
    smoothed bootstrap of the real pairs, bandwidth h; clustered like real embeddings).
    image_noise / text_noise: noise norm relative to the RMS norm of the centred latent half
    (default per kind, DEFAULT_NOISE).
    """

    def __init__(self, sample: str = "clip", image_noise: float | None = None, text_noise: float | None = None,
                 seed: int = 0, kind: str = "gaussian", bandwidth: float = 0.6) -> None:
        if kind not in KINDS:
            raise GapkitError(f"synthetic generator kind must be one of {', '.join(KINDS)}, got '{kind}'")
        if not bandwidth > 0:
            raise GapkitError(f"bootstrap bandwidth must be > 0, got {bandwidth}")
        self.mu, self.factors, rms = _joint_gaussian(sample)
        self.centres = _centred_pairs(sample) if kind == "bootstrap" else None
        self.kind, self.bandwidth = kind, float(bandwidth)
        self.dim = self.mu.size // 2
        noise = DEFAULT_NOISE[kind]
        self.image_sd = (noise if image_noise is None else image_noise) * rms / np.sqrt(self.dim)
        self.text_sd = (noise if text_noise is None else text_noise) * rms / np.sqrt(self.dim)
        self.seed = seed

    def describe(self) -> str:
        """One line naming the generator and its parameters (benchmarks print it)."""
        extra = f", bandwidth {self.bandwidth}" if self.kind == "bootstrap" else ""
        return f"synthetic CLIP geometry: {self.kind}{extra}, seed {self.seed}"

    def _latent(self, rng: np.random.Generator, n: int) -> np.ndarray:
        g = rng.standard_normal((n, self.factors.shape[1]), dtype=np.float32)
        if self.centres is None:
            return self.mu.astype(np.float32) + g @ self.factors.T
        h = self.bandwidth
        j = rng.integers(0, self.centres.shape[0], n)
        # shrink by 1 / sqrt(1 + h^2): cov(z) = (C + h^2 C) / (1 + h^2) = C, the data's covariance
        return self.mu.astype(np.float32) + (self.centres[j] + h * (g @ self.factors.T)) / np.float32(np.sqrt(1 + h * h))

    def chunk(self, start: int, n: int, captions: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Items [start, start + n): image (n, D) and text (n * captions, D) float32 unit rows;
        text row i * captions + j is caption j of item i. start must be a multiple of CHUNK
        unless n <= CHUNK and the caller always asks the same ranges."""
        rng = np.random.default_rng([self.seed, start, captions])
        z = self._latent(rng, n)
        d = self.dim
        img = z[:, :d] + self.image_sd * rng.standard_normal((n, d), dtype=np.float32)
        txt = np.repeat(z[:, d:], captions, axis=0) + self.text_sd * rng.standard_normal((n * captions, d), dtype=np.float32)
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
        return img, txt

    def chunks(self, n: int, captions: int = 1) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        for s in range(0, n, CHUNK):
            img, txt = self.chunk(s, min(CHUNK, n - s), captions)
            yield s, img, txt

    def pairs(self, n: int, captions: int = 1) -> PairedEmbeddings:
        """n items with `captions` captions each, in memory."""
        if n < 1 or captions < 1:
            raise GapkitError("synthetic pairs need n >= 1 and captions >= 1")
        parts = list(self.chunks(n, captions))
        img = np.concatenate([p[1] for p in parts])
        txt = np.concatenate([p[2] for p in parts])
        mapping = np.repeat(np.arange(n), captions) if captions > 1 else None
        return PairedEmbeddings(img, txt, mapping, captions=[f"item {i} caption {j}" for i in range(n) for j in range(captions)])

    def write_clip_retrieval(self, out: str | Path, n: int, shard_rows: int = 250_000) -> Path:
        """n 1:1 pairs as a clip-retrieval folder (img_emb/img_emb_K.npy, text_emb/text_emb_K.npy),
        written atomically, one chunk at a time through memory maps; the rows equal pairs(n)."""
        from ..atomic import atomic_dir
        from ..fixers._stream import release_pages

        if shard_rows < 1:
            raise GapkitError("shard_rows must be positive")
        with atomic_dir(out) as tmp:
            (tmp / "img_emb").mkdir()
            (tmp / "text_emb").mkdir()
            shards = []
            for k, s0 in enumerate(range(0, n, shard_rows)):
                rows = min(shard_rows, n - s0)
                shards.append((s0, [np.lib.format.open_memmap(tmp / sub / f"{sub}_{k}.npy", "w+", np.float32,
                                                              (rows, self.dim)) for sub in ("img_emb", "text_emb")]))
            for s, img, txt in self.chunks(n):
                for s0, maps in shards:  # copy the overlap of this chunk with every shard
                    lo, hi = max(s, s0), min(s + img.shape[0], s0 + maps[0].shape[0])
                    if lo < hi:
                        for mm, src in zip(maps, (img, txt)):
                            mm[lo - s0:hi - s0] = src[lo - s:hi - s]
                            mm.flush()
                            release_pages(mm, lo - s0, hi - s0)
            del shards
        return Path(out)


def gapped_pairs(n: int, captions: int = 1, seed: int = 0, **kw: Any) -> PairedEmbeddings:
    """Shortcut: GappedGenerator(seed=seed, **kw).pairs(n, captions)."""
    return GappedGenerator(seed=seed, **kw).pairs(n, captions)


def geometry_stats(x: np.ndarray, k: int = 10) -> dict[str, float]:
    """Statistics of (n, D) rows that decide how hard ANN search over them is (exact, O(n^2)):

    twonn         TwoNN intrinsic dimension (Facco et al. 2017, maximum-likelihood form):
                  n / sum_i log(r2_i / r1_i), r1, r2 = Euclidean distances of the unit rows to
                  their 1st and 2nd nearest neighbours
    nn1_cos       median cosine to the nearest neighbour
    nnk_cos       median cosine to the k-th nearest neighbour
    median_cos    median cosine over all pairs
    contrast      relative contrast (1 - median_cos) / median(1 - cos to the k-th NN): how much
                  closer the k-th neighbour is than a typical point (low = hard for ANN)
    """
    u = _unit(x)
    n = u.shape[0]
    if n <= k:
        raise GapkitError(f"geometry_stats needs more than k={k} rows, got {n}")
    c = u @ u.T
    np.fill_diagonal(c, -np.inf)
    top = -np.sort(-c, axis=1)[:, :k]  # (n, k) descending cosines
    r = np.sqrt(np.maximum(2 - 2 * top[:, :2], 1e-30))  # |a - b| = sqrt(2 - 2 cos) for unit rows
    med = float(np.median(c[np.triu_indices(n, 1)]))
    return {"twonn": float(n / np.log(r[:, 1] / r[:, 0]).sum()), "nn1_cos": float(np.median(top[:, 0])),
            "nnk_cos": float(np.median(top[:, k - 1])), "median_cos": med,
            "contrast": float((1 - med) / np.median(1 - top[:, k - 1]))}
