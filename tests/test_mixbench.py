"""The labelled-query benchmark: relevance built as promised, NDCG and the paired bootstrap against
naive references written here, and a correction that closes a known gap shows a positive gain."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.embeddings import PairedEmbeddings
from gapkit.errors import GapkitError
from gapkit.evaluate.mixbench import mixbench, split_items, subset_items
from gapkit.evaluate.mixed import corpus_from_pairs, per_query_metrics
from gapkit.evaluate.paired import paired_gain


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_relevance_of_a_hand_built_corpus():
    """4 images; captions 0,1 -> image 0; 2 -> image 1; 3,4,5 -> image 2; 6 -> image 3."""
    rng = np.random.default_rng(0)
    img = unit(rng.standard_normal((4, 5)))
    m = np.array([0, 0, 1, 2, 2, 2, 3])
    txt = unit(rng.standard_normal((7, 5)))
    c = corpus_from_pairs(PairedEmbeddings(img, txt, m), query_fraction=0.5, seed=3, fused=True)
    assert c.queries.shape[0] == 2
    qcap = set(int(j) for j in c.query_sources)
    for qi, (g, j) in enumerate(zip(c.query_groups, c.query_sources)):
        assert m[j] == g                                          # the query is a caption of its item
        np.testing.assert_allclose(c.queries[qi], txt[j], atol=1e-12)
        relevant = {(c.doc_roles[r], *map(int, c.doc_sources[r])) for r in np.flatnonzero(c.doc_groups == g)}
        others = [k for k in np.flatnonzero(m == g) if k != j]   # the item's other captions
        want = {("image", g, -1)} | {("text", -1, k) for k in others}
        if others:                                                # fused = image + its first remaining caption
            want.add(("fused", g, min(others)))
        assert relevant == want
    # every caption that is not a query is a document exactly once; every image is one
    texts = sorted(int(s[1]) for s, r in zip(c.doc_sources, c.doc_roles) if r == "text")
    assert texts == sorted(set(range(7)) - qcap)
    assert sorted(int(s[0]) for s, r in zip(c.doc_sources, c.doc_roles) if r == "image") == [0, 1, 2, 3]
    # each document's vector is the one its provenance names
    for r in range(c.docs.shape[0]):
        i, j = c.doc_sources[r]
        want = img[i] if j < 0 else txt[j] if i < 0 else unit([0.5 * img[i] + 0.5 * txt[j]])[0]
        np.testing.assert_allclose(c.docs[r], want, atol=1e-12)


def naive_ndcg(rel_row, n_rel, k=10):
    dcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(rel_row))) if rel_row[r])
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, n_rel)))
    return dcg / idcg if idcg else 0.0


def test_ndcg_recall_and_image_share_against_naive_formulas():
    rng = np.random.default_rng(1)
    q, depth = 50, 12
    rel = rng.random((q, depth)) < 0.2
    n_rel = rel.sum(axis=1) + rng.integers(0, 4, q)       # some relevant documents were never retrieved
    roles = rng.choice(np.array(["image", "text", "fused"], dtype=object), (q, depth))
    roles[0, 7:] = ""                                     # a short list: 7 filled slots
    rel[0, 7:] = False
    out = per_query_metrics(rel, roles, n_rel, ks=(1, 10))
    for i in range(q):
        assert out["ndcg@10"][i] == pytest.approx(naive_ndcg(list(rel[i]), int(n_rel[i])))
        assert out["recall@10"][i] == float(any(rel[i, :10]))
        filled = [r for r in roles[i, :10] if r]
        assert out["image_share@10"][i] == pytest.approx(sum(r == "image" for r in filled) / len(filled))


def test_paired_gain_against_a_naive_bootstrap():
    rng = np.random.default_rng(2)
    a = rng.random(300)
    b = a + 0.05 + 0.2 * rng.standard_normal(300)
    got = paired_gain(a, b, n_boot=4000, seed=0)
    d = b - a
    r2 = np.random.default_rng(99)
    means = [d[r2.integers(0, d.size, d.size)].mean() for _ in range(4000)]
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert got["gain"] == pytest.approx(d.mean())
    assert got["ci_low"] == pytest.approx(lo, abs=0.004) and got["ci_high"] == pytest.approx(hi, abs=0.004)
    same = paired_gain(a, a + 0.1)                      # a constant shift: a zero-width interval at it
    assert same["gain"] == pytest.approx(0.1) and same["ci_low"] == pytest.approx(0.1) == same["ci_high"]
    nan = paired_gain(np.array([1.0, np.nan, 0.0]), np.array([2.0, 5.0, 0.0]))
    assert nan["n"] == 2 and nan["gain"] == pytest.approx(0.5)
    with pytest.raises(GapkitError, match="one shape"):
        paired_gain(a, b[:3])


def gapped_multi_caption(n=120, caps=3, d=24, seed=0):
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, d))
    e = 3.0 * np.eye(d)[0]
    img = unit(z + e + 0.4 * r.standard_normal((n, d)))
    m = np.repeat(np.arange(n), caps)
    txt = unit(z[m] - e + 0.4 * r.standard_normal((n * caps, d)))
    return PairedEmbeddings(img, txt, m)


def test_split_keeps_captions_with_their_image():
    pe = gapped_multi_caption(20, 3)
    fit, test = split_items(pe, 0.5, seed=1)
    assert fit.n_image + test.n_image == 20 and fit.n_text + test.n_text == 60
    for part in (fit, test):
        for j in range(part.n_text):           # each caption still belongs to the same image
            i = part.mapping[j]
            src_i = int(np.flatnonzero((pe.image == part.image[i]).all(axis=1))[0])
            src_j = int(np.flatnonzero((pe.text == part.text[j]).all(axis=1))[0])
            assert pe.mapping[src_j] == src_i
    sub = subset_items(pe, np.array([3]))
    assert sub.n_image == 1 and sub.n_text == 3
    with pytest.raises(GapkitError, match="fit_fraction"):
        split_items(pe, 1.0)


def test_mixbench_centring_lifts_images_on_a_gapped_set():
    fit, test = split_items(gapped_multi_caption(), 0.5, seed=0)
    res = mixbench(fit, test, ("role-center", "center"), n_boot=300, progress=False)
    assert res["corpus"]["n_fused"] > 0 and 0 < res["corpus"]["corpus_image_share"] < 1
    raw, role = res["exact"]["none"], res["exact"]["role-center"]
    assert raw["image_share@10"] < 0.5 * res["corpus"]["corpus_image_share"]   # the gap buries images
    assert role["image_share@10"] > raw["image_share@10"]
    g = res["exact_gain"]["role-center"]
    assert g["ndcg@10_gain"] == pytest.approx(role["ndcg@10"] - raw["ndcg@10"])
    assert g["ndcg@10_gain_ci_low"] > 0                                           # significant on these queries
    assert g["ndcg@10_gain_ci_low"] <= g["ndcg@10_gain"] <= g["ndcg@10_gain_ci_high"]


def test_index_ranker_equals_the_exact_ranking_in_flat_mode(tmp_path):
    """Through a real index (FAISS flat: exact search) every correction ranks exactly as the NumPy
    reference, so ids map back to the right documents and both fit the same correction."""
    from gapkit.evaluate.mixbench import IndexRanker, corpus_pairs, exact_ranker

    fit, test = split_items(gapped_multi_caption(80, 3, seed=4), 0.5, seed=0)
    corpus = corpus_from_pairs(test, 0.5, seed=0, fused=True)
    pe, row_of = corpus_pairs(corpus)
    assert len(row_of) == corpus.docs.shape[0] and sorted(row_of.values()) == list(range(corpus.docs.shape[0]))
    ranker = IndexRanker(tmp_path, "faiss", {"kind": "flat"})
    for name in ("none", "role-center", "calibrated"):
        np.testing.assert_array_equal(ranker(corpus, fit, name), exact_ranker(corpus, fit, name), err_msg=name)
