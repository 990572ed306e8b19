"""Synthetic embeddings with a realistic modality gap, for tests and benchmarks.

The bundled real CLIP ViT-B/16 sample (500 COCO pairs, 512-d) is fitted with a joint Gaussian
over the concatenated pair [x, y] (1024-d; mean + the 499 principal directions of the pairs), so
resampled items keep CLIP's geometry: the two cones, their gap (the means), the paired
cross-covariance (a caption lies near its image), plus isotropic noise that makes every caption
and image distinct:

    z = mu + g L^T,   g ~ N(0, I_r)                   one latent pair per item, (1024,)
    image = normalise(z[:D] + s_i e),  caption_j = normalise(z[D:] + s_t e_j),  e ~ N(0, I/D)

Rows are generated chunk by chunk from per-chunk seeds, so any row range is reproducible and a
million rows never need to be in memory at once.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

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


class GappedGenerator:
    """Resamples the bundled sample's joint image-text geometry (see module docstring).

    image_noise / text_noise: noise norm relative to the RMS norm of the centred latent half.
    """

    def __init__(self, sample: str = "clip", image_noise: float = 0.6, text_noise: float = 0.6, seed: int = 0) -> None:
        self.mu, self.factors, rms = _joint_gaussian(sample)
        self.dim = self.mu.size // 2
        self.image_sd = image_noise * rms / np.sqrt(self.dim)
        self.text_sd = text_noise * rms / np.sqrt(self.dim)
        self.seed = seed

    def _latent(self, rng: np.random.Generator, n: int) -> np.ndarray:
        g = rng.standard_normal((n, self.factors.shape[1]), dtype=np.float32)
        return self.mu.astype(np.float32) + g @ self.factors.T

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


def gapped_pairs(n: int, captions: int = 1, seed: int = 0, **kw: float) -> PairedEmbeddings:
    """Shortcut: GappedGenerator(seed=seed, **kw).pairs(n, captions)."""
    return GappedGenerator(seed=seed, **kw).pairs(n, captions)
