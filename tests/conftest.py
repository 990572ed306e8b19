"""Shared fixtures: small random embeddings and their files in every format."""
from __future__ import annotations

import os

import numpy as np
import pytest

# Tests never touch the network: hub lookups fail fast instead of retrying for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's cache (~/.cache/gapkit): one fresh cache per session."""
    old = os.environ.get("GAPKIT_CACHE")
    os.environ["GAPKIT_CACHE"] = str(tmp_path_factory.mktemp("gapkit-cache"))
    yield
    if old is None:
        os.environ.pop("GAPKIT_CACHE", None)
    else:
        os.environ["GAPKIT_CACHE"] = old


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def gapped_pairs(n: int = 200, d: int = 16, gap: float = 1.0, noise: float = 0.3, seed: int = 0):
    """1:1 pairs with a known gap: x = norm(z + gap*e0 + noise), y = norm(z - gap*e0 + noise)."""
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, d))
    shift = np.zeros(d)
    shift[0] = gap
    x = z + shift + noise * r.standard_normal((n, d))
    y = z - shift + noise * r.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture
def pairs():
    return gapped_pairs()
