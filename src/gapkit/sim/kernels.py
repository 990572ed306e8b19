"""Numba-compiled kernels of the sphere engine: batch losses with analytic gradients, the SGD loop,
and the per-trace geometry statistics.

Notation (one mini-batch): X, Y are (b, d) unit rows (images, texts), s = 1/tau the logit scale.
Every `_*_grad` kernel ADDS dL/dX and dL/dY (Euclidean gradients with respect to the unit rows) into
gX, gY and returns the batch loss L. The SGD loop then projects onto the tangent space,
g_p = g - (g . x) x, which is exactly the gradient of L(normalise(p)) at a unit point p, i.e. what
a PyTorch loop with F.normalize inside the loss computes (the tests check this against autograd).

Losses (ids in LOSS_IDS):
  clip     L = 1/(2b) sum_i [lse_j(s x_i.y_j) - s x_i.y_i] + 1/(2b) sum_j [lse_i(s x_i.y_j) - s x_j.y_j]
  clip_shi_eq7
           Shi et al.'s eq. 7 as printed: the image->text denominator leaves the positive out,
           L = 1/(2b) sum_i [lse_{j != i}(s x_i.y_j) - s x_i.y_i] + 1/(2b) sum_j [lse_i(s x_i.y_j) - s x_j.y_j]
           (the text->image term is CLIP's). Not a cross-entropy: the first term is unbounded below.
  simclr   NT-Xent over the 2b rows U = [X; Y] (Chen et al. 2020): the partner of u_k is its pair,
           the negatives are all 2b - 2 other rows, including rows of the same modality.
           L = 1/(2b) sum_k [lse_{j != k}(s u_k.u_j) - s u_k.u_pos(k)]
  slip     clip(X, Y) + w_ssl * NT-Xent over two augmented views of the images,
           v = normalise(x + sigma * eps), eps ~ N(0, I_d) drawn fresh at every step.
  siglip   L = 1/b sum_{i,j} softplus(-z_ij (s x_i.y_j + bias)), z_ii = +1, z_ij = -1 (i != j)
  align_uniform (Wang & Isola 2020)
           L = 1/b sum_i ||x_i - y_i||^2 + w_u * (unif(X) + unif(Y)) / 2,
           unif(U) = log mean_{i != j} exp(-2 ||u_i - u_j||^2)   (temperature-free)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import mt19937 as rng
from .expdet import exp_det
from .vector import run_clip_epochs

LOSS_IDS: dict[str, int] = {"clip": 0, "simclr": 1, "slip": 2, "siglip": 3, "align_uniform": 4,
                            "clip_shi_eq7": 5}
_CLIP, _SIMCLR, _SLIP, _SIGLIP, _ALIGN_UNIFORM, _CLIP_SHI_EQ7 = 0, 1, 2, 3, 4, 5
# Logits are s * cos in [-s, s]; the kernels shift them by s, and exp(z - s) >= exp(-2s) stays a
# normal float64 up to s ~ 350: the engine accepts tau >= 1 / MAX_LOGIT_SCALE.
MAX_LOGIT_SCALE = 300.0

# Order of the statistics returned by trace_stats (names used in the traces of a run).
TRACE_KEYS: tuple[str, ...] = (
    "centroid_distance", "paired_distance_mean", "paired_cosine_mean", "cross_distance_mean",
    "uniformity_image", "uniformity_text", "linear_separation",
)


@njit(cache=True, fastmath=True)
def _dot(a, b) -> float:
    acc = 0.0
    for k in range(a.shape[0]):
        acc += a[k] * b[k]
    return acc


@njit(cache=True, fastmath=True)
def _rdot(A, i, B, j) -> float:
    """A[i] . B[j] without creating row views (measurably faster in the inner loop)."""
    acc = 0.0
    for k in range(A.shape[1]):
        acc += A[i, k] * B[j, k]
    return acc


@njit(cache=True, fastmath=True)
def _clip_grad(X, Y, s, gX, gY, Z, R, with_loss, skip_pos_row=False) -> float:
    """Symmetric InfoNCE. With E_ij = exp(s x_i.y_j - s), r_i = 1/sum_j E_ij, c_j = 1/sum_i E_ij:
    dL/dlogit_ij = (E_ij (r_i + c_j) - 2 [i = j]) / (2b), folded straight into gX, gY.

    skip_pos_row=True is Shi's eq. 7 as printed: r_i = 1/sum_{j != i} E_ij and the row softmax has
    no diagonal entry, so dL/dlogit_ij = (E_ij (r_i [j != i] + c_j) - 2 [i = j]) / (2b). The row
    sum is accumulated over j != i (not as total - E_ii, which cancels when the positive dominates).

    All logits lie in [-s, s], so exp(z - s) neither overflows nor (for s <= MAX_LOGIT_SCALE)
    underflows to zero: one exponential per logit serves both softmaxes. The loss value itself
    (2b logarithms) is only computed when with_loss is true; else 0 is returned.
    """
    b, d = X.shape
    for j in range(b):
        R[b + j] = 0.0
    for i in range(b):
        row = 0.0
        for j in range(b):
            e = math.exp(s * _rdot(X, i, Y, j) - s)
            Z[i, j] = e
            if not (skip_pos_row and i == j):
                row += e
            R[b + j] += e
        R[i] = row
    # -log softmax of the positive = log(row sum) - (z_ii - s), in both directions.
    loss = 0.0
    if with_loss:
        for i in range(b):
            loss += math.log(R[i]) + math.log(R[b + i]) - 2.0 * (s * _rdot(X, i, Y, i) - s)
    for i in range(2 * b):
        R[i] = 1.0 / R[i]
    c = s / (2.0 * b)
    for i in range(b):
        for j in range(b):
            if skip_pos_row and i == j:
                w = Z[i, j] * R[b + j] - 2.0
            else:
                w = Z[i, j] * (R[i] + R[b + j])
                if i == j:
                    w -= 2.0
            w *= c
            for k in range(d):
                gX[i, k] += w * Y[j, k]
                gY[j, k] += w * X[i, k]
    return loss / (2.0 * b)


@njit(cache=True, fastmath=True)
def _accumulate_cross(X, Y, G, c, gX, gY) -> None:
    """logits_ij = s x_i . y_j  =>  gX += c G Y, gY += c G^T X (c folds s and the batch mean)."""
    b, d = X.shape
    for i in range(b):
        for j in range(b):
            w = c * G[i, j]
            for k in range(d):
                gX[i, k] += w * Y[j, k]
                gY[j, k] += w * X[i, k]


@njit(cache=True, fastmath=True)
def _ntxent_grad(U, s, gU, Z, G) -> float:
    """NT-Xent over 2b rows where row k's positive is row (k + b) mod 2b; adds into gU (2b, d).
    Z holds exp(s u_k.u_j - s) (symmetric, diagonal unused); see _clip_grad for the shift."""
    n2, d = U.shape
    half = n2 // 2
    for k in range(n2):  # logits first, then their exponentials in a loop of its own: exp_det
        for j in range(k + 1, n2):  # there runs in SIMD lanes (math.exp is a libm call per value)
            Z[k, j] = s * _rdot(U, k, U, j) - s
        for j in range(k + 1, n2):
            Z[k, j] = exp_det(Z[k, j])
        for j in range(k + 1, n2):
            Z[j, k] = Z[k, j]
    loss = 0.0
    for k in range(n2):
        acc = 0.0
        for j in range(n2):
            if j != k:
                acc += Z[k, j]
        pos = (k + half) % n2
        loss += math.log(acc) - (s * _rdot(U, k, U, pos) - s)
        for j in range(n2):
            G[k, j] = 0.0 if j == k else Z[k, j] / acc
        G[k, pos] -= 1.0
    # The logits are symmetric, so dL/du_k = s/(2b) sum_j (G_kj + G_jk) u_j.
    c = s / n2
    for k in range(n2):
        for j in range(n2):
            w = c * (G[k, j] + G[j, k])
            if w != 0.0:
                for t in range(d):
                    gU[k, t] += w * U[j, t]
    return loss / n2


@njit(cache=True, fastmath=True)
def _simclr_grad(X, Y, s, gX, gY, U, gU, Z, G) -> float:
    b, d = X.shape
    for i in range(b):
        for k in range(d):
            U[i, k] = X[i, k]
            U[b + i, k] = Y[i, k]
            gU[i, k] = 0.0
            gU[b + i, k] = 0.0
    loss = _ntxent_grad(U, s, gU, Z, G)
    for i in range(b):
        for k in range(d):
            gX[i, k] += gU[i, k]
            gY[i, k] += gU[b + i, k]
    return loss


@njit(cache=True, fastmath=True)
def _slip_grad(X, Y, s, sigma, w_ssl, E1, E2, gX, gY, U, gU, R, Z, G, with_loss) -> float:
    """CLIP + w_ssl * NT-Xent over the views v = normalise(x + sigma*eps) of the images.

    The chain rule through the view: dv/dx^T g = (g - (g.v) v) / ||x + sigma*eps||.
    """
    b, d = X.shape
    loss = _clip_grad(X, Y, s, gX, gY, Z, R, with_loss)
    for i in range(b):
        for half, E in ((0, E1), (b, E2)):
            r2 = 0.0
            for k in range(d):
                v = X[i, k] + sigma * E[i, k]
                U[half + i, k] = v
                r2 += v * v
            r = math.sqrt(r2)
            R[half + i] = r
            for k in range(d):
                U[half + i, k] /= r
                gU[half + i, k] = 0.0
    loss += w_ssl * _ntxent_grad(U, s, gU, Z, G)
    for i in range(b):
        for half in (0, b):
            gv = _dot(gU[half + i], U[half + i])
            for k in range(d):
                gX[i, k] += w_ssl * (gU[half + i, k] - gv * U[half + i, k]) / R[half + i]
    return loss


@njit(cache=True, fastmath=True)
def _siglip_grad(X, Y, s, bias, gX, gY, G) -> float:
    b, d = X.shape
    loss = 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            t = z * (s * _rdot(X, i, Y, j) + bias)
            # softplus(-t) = log(1 + e^-t), evaluated stably on both signs of t.
            loss += max(-t, 0.0) + math.log1p(math.exp(-abs(t)))
            sig_neg = 1.0 / (1.0 + math.exp(t))  # sigmoid(-t)
            G[i, j] = -z * sig_neg
    _accumulate_cross(X, Y, G, s / b, gX, gY)
    return loss / b


@njit(cache=True, fastmath=True)
def _uniformity_grad(U, w, gU) -> float:
    """w * log mean_{i != j} exp(-2||u_i - u_j||^2); d/du_a = -8 w/S sum_j K_aj (u_a - u_j)."""
    b, d = U.shape
    S = 0.0
    for i in range(b):
        for j in range(i + 1, b):
            S += 2.0 * math.exp(-2.0 * _sqdist(U[i], U[j]))
    for i in range(b):
        for j in range(b):
            if j != i:
                kij = math.exp(-2.0 * _sqdist(U[i], U[j]))
                for k in range(d):
                    gU[i, k] += -8.0 * w / S * kij * (U[i, k] - U[j, k])
    return w * math.log(S / (b * (b - 1.0)))


@njit(cache=True, fastmath=True)
def _sqdist(a, b) -> float:
    acc = 0.0
    for k in range(a.shape[0]):
        t = a[k] - b[k]
        acc += t * t
    return acc


@njit(cache=True, fastmath=True)
def _align_uniform_grad(X, Y, w_unif, gX, gY) -> float:
    b, d = X.shape
    loss = 0.0
    for i in range(b):
        loss += _sqdist(X[i], Y[i]) / b
        for k in range(d):
            diff = 2.0 * (X[i, k] - Y[i, k]) / b
            gX[i, k] += diff
            gY[i, k] -= diff
    loss += _uniformity_grad(X, 0.5 * w_unif, gX)
    loss += _uniformity_grad(Y, 0.5 * w_unif, gY)
    return loss


@njit(cache=True, fastmath=True)
def loss_grad(loss_id, X, Y, s, bias, sigma, w_ssl, w_unif, E1, E2, gX, gY, U, gU, R, Z, G,
              with_loss=True) -> float:
    """Dispatch to one loss kernel; gX, gY must be zeroed by the caller; returns the batch loss
    (clip and slip skip part of it when with_loss is false; the value is then meaningless)."""
    if loss_id == _CLIP:
        return _clip_grad(X, Y, s, gX, gY, Z, R, with_loss)
    if loss_id == _CLIP_SHI_EQ7:
        return _clip_grad(X, Y, s, gX, gY, Z, R, with_loss, True)
    if loss_id == _SIMCLR:
        return _simclr_grad(X, Y, s, gX, gY, U, gU, Z, G)
    if loss_id == _SLIP:
        return _slip_grad(X, Y, s, sigma, w_ssl, E1, E2, gX, gY, U, gU, R, Z, G, with_loss)
    if loss_id == _SIGLIP:
        return _siglip_grad(X, Y, s, bias, gX, gY, G)
    return _align_uniform_grad(X, Y, w_unif, gX, gY)


@njit(cache=True, fastmath=True)
def workspace(b, d):
    """Scratch arrays for one batch: (U, gU, R, Z, G), allocated once per call of run_epochs."""
    return (np.empty((2 * b, d)), np.empty((2 * b, d)), np.empty(2 * b),
            np.empty((2 * b, 2 * b)), np.empty((2 * b, 2 * b)))


@njit(cache=True, fastmath=True)
def _free_update(P, i, g, r, lr, norm) -> None:
    """SGD on a free row p_i whose loss saw x = p_i / norm: dL/dp = (g - (g.x) x) / norm. The step
    is orthogonal to p_i, so ||p_i|| only grows, shrinking later steps on the sphere by 1/||p||^2."""
    d = P.shape[1]
    gp = _rdot(g, r, P, i) / norm
    for k in range(d):
        P[i, k] -= lr * (g[r, k] - gp * P[i, k] / norm) / norm


@njit(cache=True, fastmath=True)
def _sphere_update(P, i, g, r, lr) -> None:
    """p_i <- normalise(p_i - lr * (g_r - (g_r.p_i) p_i)) for a unit row: a tangent step, then back
    onto the sphere."""
    d = P.shape[1]
    gp = _rdot(g, r, P, i)
    r2 = 0.0
    for k in range(d):
        v = P[i, k] - lr * (g[r, k] - gp * P[i, k])
        P[i, k] = v
        r2 += v * v
    rn = 1.0 / math.sqrt(r2)
    for k in range(d):
        P[i, k] *= rn


@njit(cache=True, fastmath=True)
def _gather(P, i, out, r, normalise) -> float:
    """out[r] = P[i] (divided by its norm if `normalise`); returns the norm used (1 if not)."""
    d = P.shape[1]
    nrm = 1.0
    if normalise:
        nrm = math.sqrt(_rdot(P, i, P, i))
    for k in range(d):
        out[r, k] = P[i, k] / nrm
    return nrm


@njit(cache=True)
def run_epochs(X, Y, n_epochs, steps_per_epoch, batch, loss_id, s, lr, bias, sigma, w_ssl, w_unif,
               reproject, mt, meta, gauss) -> float:
    """Run n_epochs of SGD in place on the rows of X, Y (n, d); returns the mean batch loss of the
    last epoch (see _run_epochs_scalar). clip and clip_shi_eq7 run in gapkit.sim.vector, which
    computes an epoch's independent steps in SIMD lanes; the other losses step one batch at a time."""
    if loss_id == _CLIP or loss_id == _CLIP_SHI_EQ7:
        return run_clip_epochs(X, Y, n_epochs, steps_per_epoch, batch, loss_id == _CLIP_SHI_EQ7, s, lr,
                               reproject, mt, meta)
    return _run_epochs_scalar(X, Y, n_epochs, steps_per_epoch, batch, loss_id, s, lr, bias, sigma, w_ssl,
                              w_unif, reproject, mt, meta, gauss)


@njit(cache=True, fastmath=True)
def _run_epochs_scalar(X, Y, n_epochs, steps_per_epoch, batch, loss_id, s, lr, bias, sigma, w_ssl, w_unif,
                       reproject, mt, meta, gauss) -> float:
    """Run n_epochs of SGD in place on the rows of X, Y (n, d); returns the mean batch loss of the
    last epoch. Each epoch draws a fresh permutation and takes steps_per_epoch batches from it.
    reproject=True: rows are unit vectors and are re-projected after every step (Shi's setup).
    reproject=False: rows are free Euclidean parameters and the loss sees them normalised.
    (mt, meta, gauss): the run's random stream (gapkit.sim.mt19937), advanced in place, so a run
    split into several calls continues its stream."""
    n, d = X.shape
    Xb = np.empty((batch, d))
    Yb = np.empty((batch, d))
    gX = np.empty((batch, d))
    gY = np.empty((batch, d))
    E1 = np.zeros((batch, d))
    E2 = np.zeros((batch, d))
    NX = np.ones(batch)
    NY = np.ones(batch)
    U, gU, R, Z, G = workspace(batch, d)
    free = not reproject
    last = 0.0
    for ep in range(n_epochs):
        # Only the last epoch's loss is returned, so only that epoch computes it.
        with_loss = ep == n_epochs - 1
        perm = rng.permutation(mt, meta, n)
        total = 0.0
        for st in range(steps_per_epoch):
            base = st * batch
            for r in range(batch):
                i = perm[base + r]
                NX[r] = _gather(X, i, Xb, r, free)
                NY[r] = _gather(Y, i, Yb, r, free)
                for k in range(d):
                    gX[r, k] = 0.0
                    gY[r, k] = 0.0
            if loss_id == _SLIP:
                for r in range(batch):
                    for k in range(d):
                        E1[r, k] = rng.standard_normal(mt, meta, gauss)
                        E2[r, k] = rng.standard_normal(mt, meta, gauss)
            total += loss_grad(loss_id, Xb, Yb, s, bias, sigma, w_ssl, w_unif, E1, E2, gX, gY, U, gU, R, Z, G,
                               with_loss)
            for r in range(batch):
                i = perm[base + r]
                if reproject:
                    _sphere_update(X, i, gX, r, lr)
                    _sphere_update(Y, i, gY, r, lr)
                else:
                    _free_update(X, i, gX, r, lr, NX[r])
                    _free_update(Y, i, gY, r, lr, NY[r])
        last = total / steps_per_epoch
    return last


@njit(cache=True, fastmath=True, parallel=True)
def run_epochs_many(X, Y, n_epochs, steps_per_epoch, batch, loss_id, s, lr, bias, sigma, w_ssl, w_unif,
                    reproject, mt, meta, gauss):
    """`run_epochs` for R independent runs at once, spread over numba's threads (prange over runs).

    X, Y: (R, n, d); loss_id, s, lr, bias, sigma, w_ssl, w_unif, reproject: (R,) per-run values;
    mt (R, 624), meta (R, 2), gauss (R, 1): each run's own stream. Run r does exactly what
    run_epochs does on X[r], Y[r] with its own values and stream (the same compiled function), so
    its trajectory is the single-run engine's. Returns the (R,) last-epoch mean losses."""
    R_ = X.shape[0]
    out = np.empty(R_)
    for r in prange(R_):
        out[r] = run_epochs(X[r], Y[r], n_epochs, steps_per_epoch, batch, loss_id[r], s[r], lr[r], bias[r],
                            sigma[r], w_ssl[r], w_unif[r], reproject[r], mt[r], meta[r], gauss[r])
    return out


@njit(cache=True, fastmath=True)
def batch_loss_grad(loss_id, X, Y, s, bias, sigma, w_ssl, w_unif, E1, E2):
    """(loss, gX, gY) for one batch, gradients projected onto the tangent spaces of the unit rows.
    The same code path as one step of run_epochs (used by the gradient tests)."""
    b, d = X.shape
    gX = np.zeros((b, d))
    gY = np.zeros((b, d))
    U, gU, R, Z, G = workspace(b, d)
    loss = loss_grad(loss_id, X, Y, s, bias, sigma, w_ssl, w_unif, E1, E2, gX, gY, U, gU, R, Z, G)
    for P, g in ((X, gX), (Y, gY)):
        for i in range(b):
            gp = _rdot(g, i, P, i)
            for k in range(d):
                g[i, k] -= gp * P[i, k]
    return loss, gX, gY


@njit(cache=True, fastmath=True)
def _sqdist_row(P, i, QT, start, out) -> None:
    """out[j] = ||P[i] - Q[j]||^2 for j >= start, Q given transposed, QT (d, n): one loop over j
    per coordinate, which LLVM vectorises."""
    n = QT.shape[1]
    for j in range(start, n):
        out[j] = 0.0
    for k in range(QT.shape[0]):
        p = P[i, k]
        for j in range(start, n):
            t = p - QT[k, j]
            out[j] += t * t


@njit(cache=True, fastmath=True)
def _uniformity(U, buf) -> float:
    """log mean_{i < j} exp(-2 ||u_i - u_j||^2) (exp_det: the exponentials vectorise)."""
    n, d = U.shape
    UT = np.ascontiguousarray(U.T)
    acc = 0.0
    for i in range(n):
        if d == 3:  # S^2: one fused loop over j, nothing stored between
            a0, a1, a2 = U[i, 0], U[i, 1], U[i, 2]
            for j in range(i + 1, n):
                t0, t1, t2 = a0 - UT[0, j], a1 - UT[1, j], a2 - UT[2, j]
                acc += exp_det(-2.0 * (t0 * t0 + t1 * t1 + t2 * t2))
            continue
        _sqdist_row(U, i, UT, i + 1, buf)
        for j in range(i + 1, n):
            acc += exp_det(-2.0 * buf[j])
    return math.log(2.0 * acc / (n * (n - 1.0)))


@njit(cache=True, fastmath=True)
def trace_stats(X, Y):
    """Geometry of the whole point set, in the order of TRACE_KEYS (O(n^2 d), no n x n matrix):
    ||mean x - mean y||, mean ||x_i - y_i||, mean x_i.y_i, mean_{i,j} ||x_i - y_j||,
    uniformity of X and of Y, and the accuracy of the hyperplane orthogonal to the gap vector through
    the midpoint of the centroids at telling images from texts (0.5 = mixed, 1 = disjoint sides).
    The O(n^2) sums run one row at a time over a transposed copy, so their loops vectorise."""
    n, d = X.shape
    mx = np.zeros(d)
    my = np.zeros(d)
    for i in range(n):
        for k in range(d):
            mx[k] += X[i, k] / n
            my[k] += Y[i, k] / n
    g = mx - my
    centroid = math.sqrt(_dot(g, g))
    paired = 0.0
    cos = 0.0
    for i in range(n):
        paired += math.sqrt(_sqdist(X[i], Y[i])) / n
        cos += _rdot(X, i, Y, i) / n
    YT = np.ascontiguousarray(Y.T)
    buf = np.empty(n)
    cross = 0.0
    for i in range(n):
        row = 0.0
        if d == 3:  # S^2: one fused loop over j, nothing stored between
            a0, a1, a2 = X[i, 0], X[i, 1], X[i, 2]
            for j in range(n):
                t0, t1, t2 = a0 - YT[0, j], a1 - YT[1, j], a2 - YT[2, j]
                row += math.sqrt(max(t0 * t0 + t1 * t1 + t2 * t2, 0.0))
        else:
            _sqdist_row(X, i, YT, 0, buf)
            for j in range(n):
                row += math.sqrt(max(buf[j], 0.0))
        cross += row / (n * n)
    sep = 0.5
    if centroid > 1e-12:
        c = 0.5 * (_dot(mx, g) + _dot(my, g))
        hits = 0
        for i in range(n):
            hits += _dot(X[i], g) > c
            hits += _dot(Y[i], g) < c
        sep = hits / (2.0 * n)
    out = np.empty(7)
    out[0], out[1], out[2], out[3] = centroid, paired, cos, cross
    out[4], out[5], out[6] = _uniformity(X, buf), _uniformity(Y, buf), sep
    return out


@njit(cache=True, fastmath=True, parallel=True)
def trace_stats_many(X, Y):
    """trace_stats of R runs at once, X, Y (R, n, d) unit rows -> (R, len(TRACE_KEYS)), runs spread
    over numba's threads (the O(n^2 d) cross distance dominates a trace at n = 1000)."""
    out = np.empty((X.shape[0], len(TRACE_KEYS)))
    for r in prange(X.shape[0]):
        out[r] = trace_stats(X[r], Y[r])
    return out
