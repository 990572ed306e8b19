"""The labelled-query benchmark: relevance built as promised, NDCG against a naive reference written
here, an index ranks exactly as NumPy in flat mode, and a correction that closes a known gap shows
a positive paired difference."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.embeddings import PairedEmbeddings
from gapkit.errors import GapkitError
from gapkit.evaluate.mixbench import mixbench
from gapkit.evaluate.mixed import corpus_from_pairs, per_query_metrics
from gapkit.evaluate.protocol import split_images


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


def gapped_multi_caption(n=120, caps=3, d=24, seed=0):
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, d))
    e = 3.0 * np.eye(d)[0]
    img = unit(z + e + 0.4 * r.standard_normal((n, d)))
    m = np.repeat(np.arange(n), caps)
    txt = unit(z[m] - e + 0.4 * r.standard_normal((n * caps, d)))
    return PairedEmbeddings(img, txt, m)


def test_mixbench_centring_lifts_images_on_a_gapped_set():
    fit, test = split_images(gapped_multi_caption(), 0.5, seed=0)
    res = mixbench(fit, test, ("role-center", "center"), n_boot=300, progress=False)
    assert res["corpus"]["n_fused"] > 0 and 0 < res["corpus"]["corpus_image_share"] < 1
    raw, role = res["exact"]["none"], res["exact"]["role-center"]
    assert raw["image_share@10"] < 0.5 * res["corpus"]["corpus_image_share"]   # the gap buries images
    assert role["image_share@10"] > raw["image_share@10"]
    assert role["ndcg@10_diff"] == pytest.approx(role["ndcg@10"] - raw["ndcg@10"])
    assert role["ndcg@10_diff_ci_low"] > 0                                    # significant on these queries
    assert role["ndcg@10_diff_ci_low"] <= role["ndcg@10_diff"] <= role["ndcg@10_diff_ci_high"]
    assert raw["ndcg@10_ci_low"] <= raw["ndcg@10"] <= raw["ndcg@10_ci_high"]


def test_index_ranker_equals_the_exact_ranking_in_flat_mode(tmp_path):
    """Through a real index (FAISS flat: exact search) every correction ranks exactly as the NumPy
    reference, so ids map back to the right documents and both fit the same correction."""
    from gapkit.evaluate.mixbench import IndexRanker, corpus_pairs, exact_ranker

    fit, test = split_images(gapped_multi_caption(80, 3, seed=4), 0.5, seed=0)
    corpus = corpus_from_pairs(test, 0.5, seed=0, fused=True)
    pe, row_of = corpus_pairs(corpus)
    assert len(row_of) == corpus.docs.shape[0] and sorted(row_of.values()) == list(range(corpus.docs.shape[0]))
    ranker = IndexRanker(tmp_path, "faiss", {"kind": "flat"})
    for name in ("none", "role-center", "calibrated"):
        np.testing.assert_array_equal(ranker(corpus, fit, name), exact_ranker(corpus, fit, name), err_msg=name)


@pytest.mark.parametrize("extra,msg", [
    (["--backends", "milvus"], "unknown backend"),
    (["--corrections", "centre"], "unknown correction"),
    (["--n-boot", "0"], "n-boot"),
    (["--fixer", "center", "--fit-sample", "clip"], "drop --fixer"),
])
def test_mixbench_cli_bad_input_is_one_line(tmp_path, capsys, extra, msg):
    from gapkit.cli import main

    out = tmp_path / "mb.json"
    assert main(["evaluate", "--task", "mixbench", "--sample", "clip", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and not out.exists()


def test_mixbench_cli_writes_a_record(tmp_path, capsys):
    import json

    from gapkit.cli import main

    out = tmp_path / "mb.json"
    assert main(["evaluate", "--task", "mixbench", "--sample", "clip", "--corrections", "center",
                 "--n-boot", "100", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["kind"] == "evaluate" and rec["task"] == "mixbench"
    res = rec["results"]
    assert res["corpus"]["n_queries"] == 125 and res["corpus"]["corpus_image_share"] == 0.5
    assert res["exact"]["center"]["ndcg@10_diff_ci_low"] > 0          # centring lifts the buried images
    assert "exact/center" in capsys.readouterr().out                   # the one-line summary
