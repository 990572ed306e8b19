"""The CLIP sphere step vectorised across the batches of an epoch.

Why this is exact: one epoch cuts a permutation of the n pairs into disjoint batches, a batch's
loss depends on its own rows only, and its SGD step moves its own rows only. So the steps of an
epoch do not interact: running them one after another (the textbook loop) or all at once gives
the same numbers, as long as each batch gets the same arithmetic. This kernel gathers the batches
of up to lanes_for(b) steps into lane-major scratch arrays (row, lane), with lanes = steps, so every
inner loop runs across steps with unit stride and LLVM puts it in SIMD registers (AVX2: 4 doubles),
exp included (gapkit.sim.expdet). Nothing is fast-math: no sum is reassociated, and the dot
products, the gradient sums and exp's polynomial use explicit fused multiply-adds (expdet.fma,
IEEE-exact), so a lane computes bit for bit what the same batch computes alone, in any loop,
thread or inlining context (tests/test_sim_vector.py).

One batch (b pairs, d dims, s = 1/tau), per lane (see kernels._clip_grad for the derivation):
    z_ij = s x_i.y_j - s,   E_ij = exp(z_ij),   row_i = sum_j E_ij ([j != i] for eq. 7),
    col_j = sum_i E_ij,     L = 1/(2b) sum_i [log row_i + log col_i - 2 z_ii]
    w_ij = s/(2b) (E_ij (1/row_i [+ 0 on eq. 7's diagonal] + 1/col_j) - 2 [i = j])
    gX_i = sum_j w_ij y_j,  gY_j = sum_i w_ij x_i     (every sum in index order, by FMAs)
Step on the sphere (reproject): p <- normalise(p - lr (g - (g.p) p)); free rows: see
kernels._free_update.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import mt19937 as rng
from .expdet import exp_det, fma

# Steps processed together: as many as fit (an epoch of Shi's setup is 100 steps; long lane loops
# amortise each loop's set-up, 18 % faster than 32 lanes, under load), while the E block
# (b * b * lanes doubles) stays within about 256 KiB of cache.
MAX_LANES, MIN_LANES, E_BLOCK_DOUBLES = 128, 8, 32768


@njit(cache=True)
def lanes_for(b) -> int:
    """Steps per block for batch size b: min(MAX_LANES, E_BLOCK_DOUBLES // b^2), at least MIN_LANES."""
    return max(MIN_LANES, min(MAX_LANES, E_BLOCK_DOUBLES // (b * b)))


@njit(cache=True)
def clip_workspace(b, d):
    """Lane-major scratch for L = lanes_for(b) steps: Xb, Yb, gX, gY (b*d, L); E (b*b, L);
    row, col, zd, NX, NY (b, L); two (L,) buffers."""
    L = lanes_for(b)
    return (np.empty((b * d, L)), np.empty((b * d, L)), np.empty((b * d, L)), np.empty((b * d, L)),
            np.empty((b * b, L)), np.empty((b, L)), np.empty((b, L)), np.empty((b, L)),
            np.ones((b, L)), np.ones((b, L)), np.empty(L), np.empty(L))


@njit(cache=True)
def _gather(P, perm, first, nl, b, Pb, N, free) -> None:
    """Pb[r*d + k, l] = P[perm[(first + l) * b + r], k] (over its norm N[r, l] for free rows)."""
    d = P.shape[1]
    for l in range(nl):
        base = (first + l) * b
        for r in range(b):
            i = perm[base + r]
            nrm = 1.0
            if free:
                acc = 0.0
                for k in range(d):
                    acc += P[i, k] * P[i, k]
                nrm = math.sqrt(acc)
                N[r, l] = nrm
            for k in range(d):
                Pb[r * d + k, l] = P[i, k] / nrm


@njit(cache=True)
def _logits(Xb, Yb, nl, b, d, s, eq7, E, row, col, zd, dot) -> None:
    """E_ij = exp(s x_i.y_j - s) per lane; row and column sums in index order; zd_i = z_ii."""
    for i in range(b):
        for l in range(nl):
            row[i, l] = 0.0
            col[i, l] = 0.0
    for i in range(b):
        for j in range(b):
            in_row = not (eq7 and i == j)
            q = i * b + j
            if d == 3:  # the paper's S^2, unrolled: one loop over lanes, nothing stored between
                for l in range(nl):
                    dt = fma(Xb[i * 3 + 2, l], Yb[j * 3 + 2, l],
                             fma(Xb[i * 3 + 1, l], Yb[j * 3 + 1, l], Xb[i * 3, l] * Yb[j * 3, l]))
                    e = exp_det(s * dt - s)
                    E[q, l] = e
                    col[j, l] += e
                    if in_row:
                        row[i, l] += e
                    dot[l] = dt
            else:
                for l in range(nl):
                    dot[l] = Xb[i * d, l] * Yb[j * d, l]
                for k in range(1, d):
                    for l in range(nl):
                        dot[l] = fma(Xb[i * d + k, l], Yb[j * d + k, l], dot[l])
                for l in range(nl):
                    e = exp_det(s * dot[l] - s)
                    E[q, l] = e
                    col[j, l] += e
                    if in_row:
                        row[i, l] += e
            if i == j:
                for l in range(nl):
                    zd[i, l] = s * dot[l] - s


@njit(cache=True)
def _losses(nl, b, row, col, zd, out) -> None:
    """out[l] = 1/(2b) sum_i [log row_i + log col_i - 2 z_ii] (scalar logs: last epoch only)."""
    for l in range(nl):
        acc = 0.0
        for i in range(b):
            acc += math.log(row[i, l]) + math.log(col[i, l]) - 2.0 * zd[i, l]
        out[l] = acc / (2.0 * b)


@njit(cache=True)
def _gradients(Xb, Yb, nl, b, d, s, eq7, E, row, col, gX, gY, w) -> None:
    """gX_i = sum_j w_ij y_j, gY_j = sum_i w_ij x_i (row, col hold the reciprocals)."""
    for q in range(b * d):
        for l in range(nl):
            gX[q, l] = 0.0
            gY[q, l] = 0.0
    c = s / (2.0 * b)
    for i in range(b):
        for j in range(b):
            q = i * b + j
            if eq7 and i == j:
                for l in range(nl):
                    w[l] = (E[q, l] * col[j, l] - 2.0) * c
            elif i == j:
                for l in range(nl):
                    w[l] = (E[q, l] * (row[i, l] + col[j, l]) - 2.0) * c
            else:
                for l in range(nl):
                    w[l] = E[q, l] * (row[i, l] + col[j, l]) * c
            # One row at a time through 1-D views: LLVM then vectorises each loop without
            # runtime alias checks between the rows of gX and gY.
            for k in range(d):
                gx, yb = gX[i * d + k], Yb[j * d + k]
                for l in range(nl):
                    gx[l] = fma(w[l], yb[l], gx[l])
                gy, xb = gY[j * d + k], Xb[i * d + k]
                for l in range(nl):
                    gy[l] = fma(w[l], xb[l], gy[l])


@njit(cache=True)
def _sphere_step(Pb, g, nl, b, d, lr, gp) -> None:
    """p <- normalise(p - lr (g - (g.p) p)) for every row and lane of Pb."""
    for r in range(b):
        for l in range(nl):
            gp[l] = 0.0
        for k in range(d):
            for l in range(nl):
                gp[l] += g[r * d + k, l] * Pb[r * d + k, l]
        for k in range(d):
            for l in range(nl):
                Pb[r * d + k, l] = Pb[r * d + k, l] - lr * (g[r * d + k, l] - gp[l] * Pb[r * d + k, l])
        for l in range(nl):
            gp[l] = 0.0
        for k in range(d):
            for l in range(nl):
                gp[l] += Pb[r * d + k, l] * Pb[r * d + k, l]
        for l in range(nl):
            gp[l] = 1.0 / math.sqrt(gp[l])
        for k in range(d):
            for l in range(nl):
                Pb[r * d + k, l] *= gp[l]


@njit(cache=True)
def _scatter(P, perm, first, nl, b, Pb) -> None:
    d = P.shape[1]
    for l in range(nl):
        base = (first + l) * b
        for r in range(b):
            i = perm[base + r]
            for k in range(d):
                P[i, k] = Pb[r * d + k, l]


@njit(cache=True)
def _free_scatter(P, perm, first, nl, b, g, N, lr) -> None:
    """Free rows: p <- p - lr (g - (g.x) x) / ||p|| with x = p / ||p|| (kernels._free_update)."""
    d = P.shape[1]
    for l in range(nl):
        base = (first + l) * b
        for r in range(b):
            i = perm[base + r]
            nrm = N[r, l]
            acc = 0.0
            for k in range(d):
                acc += g[r * d + k, l] * P[i, k]
            gp = acc / nrm
            for k in range(d):
                P[i, k] -= lr * (g[r * d + k, l] - gp * P[i, k] / nrm) / nrm


@njit(cache=True)
def clip_epoch(X, Y, perm, steps, b, s, lr, eq7, reproject, with_loss, ws) -> float:
    """One epoch of CLIP (or eq. 7) SGD on X, Y (n, d) in place, the batches of `perm` processed
    in blocks of lanes_for(b) steps; returns the sum of the batch losses in step order (0 if not with_loss)."""
    Xb, Yb, gX, gY, E, row, col, zd, NX, NY, w, lossv = ws
    b_, d = b, X.shape[1]
    free = not reproject
    total = 0.0
    lanes = Xb.shape[1]
    for first in range(0, steps, lanes):
        nl = min(lanes, steps - first)
        _gather(X, perm, first, nl, b_, Xb, NX, free)
        _gather(Y, perm, first, nl, b_, Yb, NY, free)
        _logits(Xb, Yb, nl, b_, d, s, eq7, E, row, col, zd, w)
        if with_loss:
            _losses(nl, b_, row, col, zd, lossv)
            for l in range(nl):
                total += lossv[l]
        for i in range(b_):
            for l in range(nl):
                row[i, l] = 1.0 / row[i, l]
                col[i, l] = 1.0 / col[i, l]
        _gradients(Xb, Yb, nl, b_, d, s, eq7, E, row, col, gX, gY, w)
        if reproject:
            _sphere_step(Xb, gX, nl, b_, d, lr, w)
            _sphere_step(Yb, gY, nl, b_, d, lr, w)
            _scatter(X, perm, first, nl, b_, Xb)
            _scatter(Y, perm, first, nl, b_, Yb)
        else:
            _free_scatter(X, perm, first, nl, b_, gX, NX, lr)
            _free_scatter(Y, perm, first, nl, b_, gY, NY, lr)
    return total


@njit(cache=True)
def run_clip_epochs(X, Y, n_epochs, steps_per_epoch, batch, eq7, s, lr, reproject, mt, meta) -> float:
    """kernels.run_epochs for the clip and clip_shi_eq7 losses: n_epochs of SGD in place, a fresh
    permutation from the run's stream (mt, meta) per epoch; returns the last epoch's mean batch loss."""
    ws = clip_workspace(batch, X.shape[1])
    last = 0.0
    for ep in range(n_epochs):
        with_loss = ep == n_epochs - 1
        perm = rng.permutation(mt, meta, X.shape[0])
        total = clip_epoch(X, Y, perm, steps_per_epoch, batch, s, lr, eq7, reproject, with_loss, ws)
        last = total / steps_per_epoch
    return last
