"""Mixed retrieval with graded relevance and the fused-document weight alpha: graded NDCG@10
against a naive per-query reference written here; alpha changes only the fused documents."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.errors import GapkitError
from gapkit.evaluate.compare import alpha_sweep
from gapkit.evaluate.mixed import corpus_from_pairs, mixed_per_query
from gapkit.embeddings import PairedEmbeddings


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def naive_graded_ndcg(corpus, gains_by_role, k=10):
    out = []
    for q, group in zip(unit(corpus.queries), corpus.query_groups):
        scores = unit(corpus.docs) @ q
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        gain = [gains_by_role[corpus.doc_roles[i]] if corpus.doc_groups[i] == group else 0.0
                for i in range(len(scores))]
        dcg = sum(gain[d] / math.log2(r + 2) for r, d in enumerate(order[:k]))
        ideal = sorted(gain, reverse=True)[:k]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return np.array(out)


@pytest.fixture(scope="module")
def pairs():
    """40 images with 3 captions each and a gap between the modalities."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((40, 16))
    img = unit(z + np.r_[1.0, np.zeros(15)] + 0.3 * rng.standard_normal((40, 16)))
    m = np.repeat(np.arange(40), 3)
    txt = unit(z[m] - np.r_[1.0, np.zeros(15)] + 0.5 * rng.standard_normal((120, 16)))
    return PairedEmbeddings(img, txt, m)


def test_graded_ndcg_matches_naive(pairs):
    gains = {"image": 1.0, "text": 0.5, "fused": 2.0}
    corpus = corpus_from_pairs(pairs, 0.5, seed=1, fused=True, alpha=0.3, gains=gains)
    got = mixed_per_query(corpus)["ndcg@10"]
    np.testing.assert_allclose(got, naive_graded_ndcg(corpus, gains), atol=1e-12)
    # all gains 1 is binary NDCG
    binary = corpus_from_pairs(pairs, 0.5, seed=1, fused=True, alpha=0.3)
    ones = corpus_from_pairs(pairs, 0.5, seed=1, fused=True, alpha=0.3, gains={"image": 1, "text": 1, "fused": 1})
    np.testing.assert_allclose(mixed_per_query(ones)["ndcg@10"], mixed_per_query(binary)["ndcg@10"], atol=1e-12)


def test_alpha_weights_the_image_in_fused_documents(pairs):
    a0 = corpus_from_pairs(pairs, 0.5, seed=2, fused=True, alpha=0.0)
    a1 = corpus_from_pairs(pairs, 0.5, seed=2, fused=True, alpha=1.0)
    fused = a0.role_rows("fused")
    np.testing.assert_allclose(a0.docs[fused], unit(a0.fused_parts[:, 1]), atol=1e-12)  # text only
    np.testing.assert_allclose(a1.docs[fused], unit(a1.fused_parts[:, 0]), atol=1e-12)  # image only
    other = a0.doc_roles != "fused"
    np.testing.assert_array_equal(a0.docs[other], a1.docs[other])
    rows = alpha_sweep(pairs, [0.0, 0.5, 1.0], n_boot=200)
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    assert all(r["ndcg@10_ci_low"] <= r["ndcg@10"] <= r["ndcg@10_ci_high"] for r in rows)
    with pytest.raises(GapkitError, match="alpha"):
        corpus_from_pairs(pairs, 0.5, fused=True, alpha=1.5)
    with pytest.raises(GapkitError, match="gains"):
        corpus_from_pairs(pairs, 0.5, fused=True, gains={"audio": 1.0})


def test_cli_alpha_sweep_and_gains(tmp_path, pairs):
    np.savez(tmp_path / "e.npz", image=pairs.image, text=pairs.text, text_to_image=pairs.text_to_image)
    out = tmp_path / "sweep.json"
    assert main(["evaluate", "--task", "mixed-retrieval", "--embeddings", str(tmp_path / "e.npz"), "--alpha",
                 "0,0.5,1", "--gains", "image=1,text=1,fused=2", "--fixer", "center", "--fit", str(tmp_path / "e.npz"),
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert [r["alpha"] for r in rec["metrics"]["alpha_sweep"]] == [0.0, 0.5, 1.0]
    assert "ndcg@10_diff" in rec["metrics"]["alpha_sweep"][0]
    assert rec["params"]["gains"] == {"image": 1.0, "text": 1.0, "fused": 2.0}
