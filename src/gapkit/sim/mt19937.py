"""An explicit-state copy of numba's NumPy-style random generator, so many sphere runs can each
carry their own stream inside one compiled, multi-threaded kernel.

numba's `np.random` inside @njit code is a Mersenne Twister (MT19937) with one hidden state per
thread: `np.random.seed(s)` runs the reference `init_genrand(s)`, `np.random.permutation(n)` is a
Fisher-Yates shuffle drawing `randint(0, i + 1)` for i = n-1 .. 1 by rejection on the low
bit_length(i) bits of one 32-bit draw, and `np.random.standard_normal()` is the polar Box-Muller
method that caches the second value of each pair. A hidden per-thread state cannot give run r
the stream of seed r when runs share threads, so this module keeps the same algorithm with the
state passed in, laid out as

    mt    (624,) uint32   the twister's words
    meta  (2,) int64      [position in mt (624 = regenerate first), has a cached normal (0/1)]
    gauss (1,) float64    the cached normal

The streams are those of numba's generator for the same seed, number for number (tested), which
keeps the single-run engine's trajectories (and every number documented from them) unchanged.
Written from the MT19937 reference (Matsumoto & Nishimura 1998) and numba's documented behaviour;
no arithmetic here is fast-math, so every draw is exact.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

N, M = 624, 397
_MATRIX_A, _UPPER, _LOWER = np.uint32(0x9908B0DF), np.uint32(0x80000000), np.uint32(0x7FFFFFFF)


def new_state(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mt, meta, gauss) for `seed`, as numba's np.random.seed(seed) leaves its generator."""
    mt, meta, gauss = np.empty(N, np.uint32), np.zeros(2, np.int64), np.zeros(1, np.float64)
    seed_state(mt, meta, gauss, seed)
    return mt, meta, gauss


@njit(cache=True)
def seed_state(mt, meta, gauss, seed) -> None:
    """init_genrand(seed & 0xffffffff): Knuth's multiplier 1812433253, as the reference code."""
    s = np.uint32(seed & 0xFFFFFFFF)
    for pos in range(N):
        mt[pos] = s
        s = np.uint32(np.uint32(1812433253) * (s ^ (s >> np.uint32(30))) + np.uint32(pos + 1))
    meta[0] = N
    meta[1] = 0
    gauss[0] = 0.0


@njit(cache=True, inline="always")
def _twist(mt, i, i1, im) -> None:
    y = (mt[i] & _UPPER) | (mt[i1] & _LOWER)
    v = mt[im] ^ (y >> np.uint32(1))
    if y & np.uint32(1):
        v ^= _MATRIX_A
    mt[i] = v


@njit(cache=True)
def _regenerate(mt) -> None:
    """The twist: a new block of 624 words from the old one, in the reference order (word i uses
    the new words below i), split at the wrap-arounds so the loops need no modulo."""
    for i in range(N - M):
        _twist(mt, i, i + 1, i + M)
    for i in range(N - M, N - 1):
        _twist(mt, i, i + 1, i + M - N)
    _twist(mt, N - 1, 0, M - 1)


@njit(cache=True, inline="always")
def next_u32(mt, meta) -> np.uint32:
    """The next tempered 32-bit output."""
    if meta[0] >= N:
        _regenerate(mt)
        meta[0] = 0
    y = mt[meta[0]]
    meta[0] += 1
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@njit(cache=True)
def next_double(mt, meta) -> float:
    """A double in [0, 1) from 53 random bits: (a * 2^26 + b) / 2^53, a = u >> 5, b = u >> 6."""
    a = float(next_u32(mt, meta) >> np.uint32(5))
    b = float(next_u32(mt, meta) >> np.uint32(6))
    return (a * 67108864.0 + b) / 9007199254740992.0


@njit(cache=True)
def randbelow(mt, meta, n) -> int:
    """Uniform integer in [0, n) (n < 2^32), NumPy-style: mask the low bit_length(n - 1) bits of
    a 32-bit draw and reject values >= n."""
    if n == 1:
        return np.int64(0)
    nbits = 0
    v = n - 1
    while v:
        nbits += 1
        v >>= 1
    mask = np.uint32(0xFFFFFFFF) >> np.uint32(32 - nbits)
    while True:
        r = np.int64(next_u32(mt, meta) & mask)
        if r < n:
            return r


@njit(cache=True)
def permutation(mt, meta, n):
    """A random permutation of 0..n-1 (Fisher-Yates from the top, as numba's shuffle): the same
    draws as randbelow(i + 1) for i = n-1 .. 1, with the mask kept across draws (it only shrinks
    when i falls below a power of two) and the word read inline."""
    out = np.arange(n)
    i = n - 1
    mask = np.uint32(0xFFFFFFFF)
    while i > 0:
        while (mask >> np.uint32(1)) >= i:  # the smallest 2^k - 1 >= i
            mask >>= np.uint32(1)
        while True:
            j = np.int64(next_u32(mt, meta) & mask)
            if j <= i:
                break
        t = out[i]
        out[i] = out[j]
        out[j] = t
        i -= 1
    return out


@njit(cache=True)
def standard_normal(mt, meta, gauss) -> float:
    """Polar Box-Muller: draw (x1, x2) uniform in the unit disc, f = sqrt(-2 log r2 / r2); return
    f x2 now and cache f x1 for the next call."""
    if meta[1]:
        meta[1] = 0
        return gauss[0]
    while True:
        x1 = 2.0 * next_double(mt, meta) - 1.0
        x2 = 2.0 * next_double(mt, meta) - 1.0
        r2 = x1 * x1 + x2 * x2
        if r2 < 1.0 and r2 != 0.0:
            break
    f = math.sqrt(-2.0 * math.log(r2) / r2)
    gauss[0] = f * x1
    meta[1] = 1
    return f * x2
