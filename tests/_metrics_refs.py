"""Naive reference implementations for the metric tests: explicit loops and full N x N matrices,
written independently of gapkit.metrics (small N only)."""
from __future__ import annotations

import math

import numpy as np


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def multi_caption(n_image=40, per_image=(1, 4), d=12, seed=0, gap=0.8):
    """Images and a varying number of captions per image (some images may get none)."""
    r = np.random.default_rng(seed)
    img = r.standard_normal((n_image, d)) + gap
    counts = r.integers(per_image[0], per_image[1] + 1, n_image)
    mapping = np.repeat(np.arange(n_image), counts)
    r.shuffle(mapping)
    txt = img[mapping] + 0.7 * r.standard_normal((mapping.size, d)) - 2 * gap
    return img.astype(np.float32), txt.astype(np.float32), mapping


def centroid_distance(x, y):
    x, y = unit(x), unit(y)
    return float(np.sqrt(sum((x[:, d].mean() - y[:, d].mean()) ** 2 for d in range(x.shape[1]))))


def off_diagonal(g):
    return g[~np.eye(g.shape[0], dtype=bool)]


def cone_mean(x):
    u = unit(x)
    return float(off_diagonal(u @ u.T).mean())


def cone_min(x):
    u = unit(x)
    return float(off_diagonal(u @ u.T).min())


def paired(x, y, mapping):
    x, y = unit(x), unit(y)
    return x[mapping], y


def rmg(x, y, mapping):
    a, b = paired(x, y, mapping)
    m = (1 - np.mean([a[j] @ b[j] for j in range(len(b))])) / 2
    ai, bt = (1 - cone_mean(x)) / 2, (1 - cone_mean(y)) / 2
    return m / (m + (ai + bt) / 2)


def uniformity_within(x):
    u = unit(x)
    n = len(u)
    vals = [math.exp(-2 * np.sum((u[i] - u[k]) ** 2)) for i in range(n) for k in range(n) if i != k]
    return math.log(np.mean(vals))


def uniformity_cross(x, y, mapping):
    x, y = unit(x), unit(y)
    vals = [math.exp(-2 * np.sum((x[i] - y[j]) ** 2)) for i in range(len(x)) for j in range(len(y)) if mapping[j] != i]
    return math.log(np.mean(vals))


def recall(x, y, mapping, k):
    """Naive any-of-the-captions recall via a full argsort (scores are distinct for random data)."""
    s = unit(x) @ unit(y).T
    i2t = []
    for i in range(len(x)):
        own = set(np.flatnonzero(mapping == i))
        if own:
            top = np.argsort(-s[i])[:k]
            i2t.append(bool(own & set(top.tolist())))
    t2i = [mapping[j] in np.argsort(-s[:, j])[:k] for j in range(len(y))]
    return float(np.mean(i2t)), float(np.mean(t2i))


def logit_entropy(x, y, scale):
    s = scale * unit(x) @ unit(y).T
    out = []
    for row in s:
        p = np.exp(row - row.max())
        p /= p.sum()
        out.append(-np.sum(p * np.log(p)))
    return float(np.mean(out))
