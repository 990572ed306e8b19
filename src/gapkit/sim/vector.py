"""The CLIP sphere step vectorised across the batches of an epoch and across runs.

Why this is exact: one epoch cuts a permutation of the n pairs into disjoint batches, a batch's
loss depends on its own rows only, and its SGD step moves its own rows only. So the steps of an
epoch do not interact: running them one after another (the textbook loop) or all at once gives
the same numbers, as long as each batch gets the same arithmetic. Runs that share a seed draw the
same permutations (gapkit.sim.mt19937), so their batches hold the same point indices at every step,
and their steps are independent too.

Layout: the W runs of one chunk keep their positions run-innermost, P (n, d, W), so a batch row of
all W runs is W contiguous doubles. A block of S steps is copied into lane-major scratch arrays
(row, lane) with lane = step * W + run (S * W = lanes_for(b) lanes, W = 1 for a single run), so
every inner loop runs across steps and runs with unit stride and LLVM puts it in SIMD registers
(AVX2: 4 doubles), exp included (gapkit.sim.expdet). Each lane carries its run's s = 1/tau, lr and
loss (CLIP or eq. 7) in per-lane arrays. Nothing is fast-math: no sum is reassociated, and the dot
products, the gradient sums and exp's polynomial use explicit fused multiply-adds (expdet.fma,
IEEE-exact), so a lane computes bit for bit what the same batch computes alone, in any loop,
thread, run grouping or inlining context (tests/test_sim_vector.py): a run in a sweep equals its
single run.

One batch (b pairs, d dims, s = 1/tau), per lane (see kernels._clip_grad for the derivation):
    z_ij = s x_i.y_j - s,   E_ij = exp(z_ij),   row_i = sum_j m_ij E_ij,   col_j = sum_i E_ij,
    m_ij = 0 for i = j under eq. 7, else 1 (E * 0 adds an exact +0: the sum over j != i, bit for bit)
    L = 1/(2b) sum_i [log row_i + log col_i - 2 z_ii]
    w_ij = s/(2b) (E_ij (m_ij/row_i + 1/col_j) - 2 [i = j])
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

# Lanes processed together: as many as fit (an epoch of Shi's setup is 100 steps; long lane loops
# amortise each loop's set-up, 18 % faster than 32 lanes, under load), while the E block
# (b * b * lanes doubles) stays within about 256 KiB of cache.
MAX_LANES, MIN_LANES, E_BLOCK_DOUBLES = 128, 8, 32768


@njit(cache=True)
def lanes_for(b) -> int:
    """Lanes per block for batch size b: min(MAX_LANES, E_BLOCK_DOUBLES // b^2), at least MIN_LANES."""
    return max(MIN_LANES, min(MAX_LANES, E_BLOCK_DOUBLES // (b * b)))


@njit(cache=True)
def steps_per_block(b, W) -> int:
    """Steps per block for W runs: lanes_for(b) // W, at least 1."""
    return max(1, lanes_for(b) // W)


@njit(cache=True)
def clip_workspace(b, d, W):
    """Lane-major scratch for L = steps_per_block(b, W) * W lanes: Xb, Yb, gX, gY (b*d, L); E (b*b, L);
    row, col, zd, NX, NY (b, L); two (L,) buffers."""
    L = steps_per_block(b, W) * W
    return (np.empty((b * d, L)), np.empty((b * d, L)), np.empty((b * d, L)), np.empty((b * d, L)),
            np.empty((b * b, L)), np.empty((b, L)), np.empty((b, L)), np.empty((b, L)),
            np.ones((b, L)), np.ones((b, L)), np.empty(L), np.empty(L))


@njit(cache=True)
def lane_params(s, lr, eq7, b, L):
    """Per-lane copies (L,) of each run's s, c = s/(2b), lr and row mask m (0 under eq. 7): lane
    step * W + r belongs to run r of the W runs."""
    W = s.shape[0]
    sL, cL, lrL, mL = np.empty(L), np.empty(L), np.empty(L), np.empty(L)
    for l in range(L):
        r = l % W
        sL[l] = s[r]
        cL[l] = s[r] / (2.0 * b)
        lrL[l] = lr[r]
        mL[l] = 0.0 if eq7[r] else 1.0
    return sL, cL, lrL, mL


@njit(cache=True)
def _gather(P, perm, first, ns, b, Pb, N, free) -> None:
    """Pb[r*d + k, st*W + w] = P[perm[(first + st) * b + r], k, w] (over its norm N for free rows)."""
    d, W = P.shape[1], P.shape[2]
    for st in range(ns):
        base = (first + st) * b
        o = st * W
        for r in range(b):
            i = perm[base + r]
            if free:
                for w in range(W):
                    acc = 0.0
                    for k in range(d):
                        acc += P[i, k, w] * P[i, k, w]
                    N[r, o + w] = math.sqrt(acc)
                for k in range(d):
                    for w in range(W):
                        Pb[r * d + k, o + w] = P[i, k, w] / N[r, o + w]
            elif W == 1:  # a single run: no loop of one lane per coordinate (15 % of its time)
                for k in range(d):
                    Pb[r * d + k, o] = P[i, k, 0]
            else:
                for k in range(d):
                    for w in range(W):
                        Pb[r * d + k, o + w] = P[i, k, w]


@njit(cache=True)
def _logits(Xb, Yb, nl, b, d, s, m, E, row, col, zd, dot) -> None:
    """E_ij = exp(s x_i.y_j - s) per lane; row (times m on the diagonal) and column sums in index
    order; zd_i = z_ii."""
    for i in range(b):
        for l in range(nl):
            row[i, l] = 0.0
            col[i, l] = 0.0
    for i in range(b):
        for j in range(b):
            q = i * b + j
            if d == 3:  # the paper's S^2, unrolled: one loop over lanes, nothing stored between
                if i == j:
                    for l in range(nl):
                        dt = fma(Xb[i * 3 + 2, l], Yb[j * 3 + 2, l],
                                 fma(Xb[i * 3 + 1, l], Yb[j * 3 + 1, l], Xb[i * 3, l] * Yb[j * 3, l]))
                        z = s[l] * dt - s[l]
                        e = exp_det(z)
                        E[q, l] = e
                        col[j, l] += e
                        row[i, l] += e * m[l]
                        zd[i, l] = z
                else:
                    for l in range(nl):
                        dt = fma(Xb[i * 3 + 2, l], Yb[j * 3 + 2, l],
                                 fma(Xb[i * 3 + 1, l], Yb[j * 3 + 1, l], Xb[i * 3, l] * Yb[j * 3, l]))
                        e = exp_det(s[l] * dt - s[l])
                        E[q, l] = e
                        col[j, l] += e
                        row[i, l] += e
            else:
                for l in range(nl):
                    dot[l] = Xb[i * d, l] * Yb[j * d, l]
                for k in range(1, d):
                    for l in range(nl):
                        dot[l] = fma(Xb[i * d + k, l], Yb[j * d + k, l], dot[l])
                mask = i == j
                for l in range(nl):
                    z = s[l] * dot[l] - s[l]
                    e = exp_det(z)
                    E[q, l] = e
                    col[j, l] += e
                    row[i, l] += e * m[l] if mask else e
                if mask:
                    for l in range(nl):
                        zd[i, l] = s[l] * dot[l] - s[l]


@njit(cache=True)
def _losses(nl, b, row, col, zd, out) -> None:
    """out[l] = 1/(2b) sum_i [log row_i + log col_i - 2 z_ii] (scalar logs: last epoch only)."""
    for l in range(nl):
        acc = 0.0
        for i in range(b):
            acc += math.log(row[i, l]) + math.log(col[i, l]) - 2.0 * zd[i, l]
        out[l] = acc / (2.0 * b)


@njit(cache=True)
def _gradients(Xb, Yb, nl, b, d, c, m, E, row, col, gX, gY, w) -> None:
    """gX_i = sum_j w_ij y_j, gY_j = sum_i w_ij x_i (row, col hold the reciprocals; c = s/(2b))."""
    for q in range(b * d):
        for l in range(nl):
            gX[q, l] = 0.0
            gY[q, l] = 0.0
    for i in range(b):
        for j in range(b):
            q = i * b + j
            if i == j:
                for l in range(nl):
                    w[l] = (E[q, l] * (row[i, l] * m[l] + col[j, l]) - 2.0) * c[l]
            else:
                for l in range(nl):
                    w[l] = E[q, l] * (row[i, l] + col[j, l]) * c[l]
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
                Pb[r * d + k, l] = Pb[r * d + k, l] - lr[l] * (g[r * d + k, l] - gp[l] * Pb[r * d + k, l])
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
def _scatter(P, perm, first, ns, b, Pb) -> None:
    d, W = P.shape[1], P.shape[2]
    for st in range(ns):
        base = (first + st) * b
        o = st * W
        for r in range(b):
            i = perm[base + r]
            if W == 1:
                for k in range(d):
                    P[i, k, 0] = Pb[r * d + k, o]
                continue
            for k in range(d):
                for w in range(W):
                    P[i, k, w] = Pb[r * d + k, o + w]


@njit(cache=True)
def _free_scatter(P, perm, first, ns, b, g, N, lr) -> None:
    """Free rows: p <- p - lr (g - (g.x) x) / ||p|| with x = p / ||p|| (kernels._free_update)."""
    d, W = P.shape[1], P.shape[2]
    for st in range(ns):
        base = (first + st) * b
        for r in range(b):
            i = perm[base + r]
            for w in range(W):
                l = st * W + w
                nrm = N[r, l]
                acc = 0.0
                for k in range(d):
                    acc += g[r * d + k, l] * P[i, k, w]
                gp = acc / nrm
                for k in range(d):
                    P[i, k, w] -= lr[l] * (g[r * d + k, l] - gp * P[i, k, w] / nrm) / nrm


@njit(cache=True)
def clip_epoch(X, Y, perm, steps, b, params, reproject, with_loss, ws, total) -> None:
    """One epoch of CLIP (or eq. 7) SGD on the W runs of X, Y (n, d, W) in place, the batches of
    `perm` processed in blocks of steps_per_block(b, W) steps; params = lane_params(...). Adds each
    run's batch losses, in step order, to total (W,) when with_loss."""
    Xb, Yb, gX, gY, E, row, col, zd, NX, NY, w, lossv = ws
    sL, cL, lrL, mL = params
    d, W = X.shape[1], X.shape[2]
    free = not reproject
    S = Xb.shape[1] // W
    for first in range(0, steps, S):
        ns = min(S, steps - first)
        nl = ns * W
        _gather(X, perm, first, ns, b, Xb, NX, free)
        _gather(Y, perm, first, ns, b, Yb, NY, free)
        _logits(Xb, Yb, nl, b, d, sL, mL, E, row, col, zd, w)
        if with_loss:
            _losses(nl, b, row, col, zd, lossv)
            for l in range(nl):
                total[l % W] += lossv[l]
        for i in range(b):
            for l in range(nl):
                row[i, l] = 1.0 / row[i, l]
                col[i, l] = 1.0 / col[i, l]
        _gradients(Xb, Yb, nl, b, d, cL, mL, E, row, col, gX, gY, w)
        if reproject:
            _sphere_step(Xb, gX, nl, b, d, lrL, w)
            _sphere_step(Yb, gY, nl, b, d, lrL, w)
            _scatter(X, perm, first, ns, b, Xb)
            _scatter(Y, perm, first, ns, b, Yb)
        else:
            _free_scatter(X, perm, first, ns, b, gX, NX, lrL)
            _free_scatter(Y, perm, first, ns, b, gY, NY, lrL)


@njit(cache=True, nogil=True)
def run_clip_lanes(X, Y, n_epochs, steps_per_epoch, batch, eq7, s, lr, reproject, mt, meta, out) -> None:
    """n_epochs of SGD on the W runs of X, Y (n, d, W) in place, which share one random stream
    (mt, meta): a fresh permutation per epoch. eq7, s, lr: (W,) per run. out (W,) receives each
    run's last-epoch mean batch loss. It releases the GIL, so chunks run on Python threads
    (engine.simulate_many) without a parallel kernel to compile."""
    W = X.shape[2]
    ws = clip_workspace(batch, X.shape[1], W)
    params = lane_params(s, lr, eq7, batch, ws[0].shape[1])
    total = np.zeros(W)
    for ep in range(n_epochs):
        with_loss = ep == n_epochs - 1
        perm = rng.permutation(mt, meta, X.shape[0])
        clip_epoch(X, Y, perm, steps_per_epoch, batch, params, reproject, with_loss, ws, total)
    for r in range(W):
        out[r] = total[r] / steps_per_epoch


@njit(cache=True)
def run_clip_epochs(X, Y, n_epochs, steps_per_epoch, batch, eq7, s, lr, reproject, mt, meta) -> float:
    """kernels.run_epochs for the clip and clip_shi_eq7 losses: one run, X, Y (n, d), in place
    (run_clip_lanes with W = 1); returns the last epoch's mean batch loss."""
    n, d = X.shape
    out = np.empty(1)
    run_clip_lanes(X.reshape((n, d, 1)), Y.reshape((n, d, 1)), n_epochs, steps_per_epoch, batch,
                   np.array([eq7]), np.array([s]), np.array([lr]), reproject, mt, meta, out)
    return out[0]
