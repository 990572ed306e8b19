"""Evaluation metrics against naive references and tiny hand-made cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.evaluate import (
    MixedCorpus, build_classifier, corpus_from_pairs, denigration, ensemble, intra_modal_retrieval,
    linear_probe, mixed_retrieval, prompts, retrieval, zero_shot,
)
from gapkit.evaluate._rank import ndcg_at_k
from gapkit.fixers import create_fixer


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def naive_best_rank(sims_row, relevant):
    """Rank (1-based) of the best relevant item: sort all items by score, find the first relevant,
    counting only strictly better items ahead of it."""
    best = max(s for s, r in zip(sims_row, relevant) if r)
    return 1 + sum(1 for s in sims_row if s > best)


# ------------------------------------------------------------------ retrieval
def test_retrieval_hand_made():
    # 2-D: images at angles 0, 90, 180 degrees; captions: two for image 0, one each for 1 and 2
    ang = np.deg2rad
    img = np.array([[1, 0], [0, 1], [-1, 0]], float)
    txt = np.array([[np.cos(ang(50)), np.sin(ang(50))],   # caption of 0, but nearer image 1
                    [np.cos(ang(10)), np.sin(ang(10))],   # caption of 0, near image 0
                    [np.cos(ang(160)), np.sin(ang(160))],  # caption of 1, but near image 2
                    [np.cos(ang(185)), np.sin(ang(185))]])  # caption of 2
    m = np.array([0, 0, 1, 2])
    r = retrieval(img, txt, m, ks=(1, 2))
    # text -> image ranks: 2, 1, 2, 1
    assert r["t2i_recall@1"] == 0.5 and r["t2i_recall@2"] == 1.0
    assert r["t2i_mean_rank"] == 1.5
    # image -> text: image 0 has caption 1 at rank 1 (any caption counts); image 1: captions
    # sorted by cos to (0,1): t0 (sin50=.77), t2 (sin160=.34), t1, t3 -> rank 2; image 2: t3 first
    assert r["i2t_recall@1"] == pytest.approx(2 / 3)
    assert r["i2t_recall@2"] == 1.0


def test_retrieval_matches_naive_reference():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((30, 8))
    m = rng.integers(0, 30, 70)
    txt = img[m] + 1.2 * rng.standard_normal((70, 8))
    r = retrieval(img, txt, m, ks=(1, 5))
    s = unit(img) @ unit(txt).T
    i2t = [naive_best_rank(s[i], m == i) for i in range(30) if (m == i).any()]
    t2i = [naive_best_rank(s[:, j], np.arange(30) == m[j]) for j in range(70)]
    assert r["i2t_recall@5"] == pytest.approx(np.mean(np.array(i2t) <= 5))
    assert r["t2i_recall@1"] == pytest.approx(np.mean(np.array(t2i) <= 1))
    assert r["t2i_median_rank"] == pytest.approx(np.median(t2i))
    assert r["n_images_with_caption"] == len(i2t)


def test_intra_modal_matches_naive():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 6))
    g = rng.integers(0, 8, 40)
    g[0] = 99  # a singleton group is skipped
    r = intra_modal_retrieval(x, g, ks=(1, 3))
    s = unit(x) @ unit(x).T
    ranks = []
    for i in range(40):
        rel = (g == g[i]) & (np.arange(40) != i)
        if rel.any():
            row = np.delete(s[i], i)
            ranks.append(naive_best_rank(row, np.delete(rel, i)))
    assert r["intra_n_queries"] == len(ranks) == 39
    assert r["intra_recall@3"] == pytest.approx(np.mean(np.array(ranks) <= 3))


# ------------------------------------------------------------------ ndcg / mixed retrieval
def test_ndcg_hand_computed():
    top = np.array([[5, 1, 7]])
    rel = np.array([[False, True, True]])
    got = ndcg_at_k(top, rel, np.array([2]), k=3)
    want = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert got[0] == pytest.approx(want)


def test_mixed_retrieval_hand_made():
    # 1 query; docs: relevant image (cos 0.3), two irrelevant texts (cos 0.6, 0.5), relevant text (0.4)
    q = np.array([[1.0, 0.0]])

    def at(c):
        return [c, np.sqrt(1 - c * c)]

    docs = np.array([at(0.3), at(0.6), at(0.5), at(0.4)])
    corpus = MixedCorpus(q, np.array([7]), docs, np.array(["image", "text", "text", "text"], dtype=object),
                         np.array([7, 1, 2, 7]))
    r = mixed_retrieval(corpus, ks=(1, 3, 4))
    # ranking: t(0.6) t(0.5) t_rel(0.4) img_rel(0.3)
    assert r["recall@1"] == 0 and r["recall@3"] == 1
    assert r["image_recall@3"] == 0 and r["image_recall@4"] == 1 and r["text_recall@3"] == 1
    want = (1 / np.log2(4) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert r["ndcg@10"] == pytest.approx(want)
    assert r["image_share@10"] == pytest.approx(0.25)


def test_corpus_from_pairs_structure():
    rng = np.random.default_rng(2)
    img = unit(rng.standard_normal((20, 6)))
    m = np.repeat(np.arange(20), 3)
    txt = unit(img[m] + 0.1 * rng.standard_normal((60, 6)))
    from gapkit.embeddings import PairedEmbeddings

    c = corpus_from_pairs(PairedEmbeddings(img, txt, m), query_fraction=0.25, seed=0, fused=True)
    assert c.queries.shape[0] == 5
    # each query group keeps its image + 2 other captions + 1 fused doc as relevant documents
    for g in c.query_groups:
        roles = sorted(c.doc_roles[c.doc_groups == g])
        assert roles == ["fused", "image", "text", "text"]
    # queries are not in the corpus
    assert not (np.abs(c.queries[:, None, :] - c.docs[None]).sum(-1) < 1e-12).any()


def test_gap_sinks_images_and_fixers_lift_them():
    """With a gap, text queries rank unrelated texts above their images; centring and calibration
    bring images back into the top 10."""
    rng = np.random.default_rng(3)
    n, d = 200, 32
    z = rng.standard_normal((n, d))
    e = np.eye(d)[0] * 4
    img, txt = unit(z + e + 0.5 * rng.standard_normal((n, d))), unit(z - e + 0.5 * rng.standard_normal((n, d)))
    from gapkit.embeddings import PairedEmbeddings

    pe = PairedEmbeddings(img, txt)
    calib, test = PairedEmbeddings(img[:100], txt[:100]), PairedEmbeddings(img[100:], txt[100:])
    corpus = corpus_from_pairs(test, seed=0)
    raw = mixed_retrieval(corpus)
    assert raw["image_share@10"] < 0.15 * raw["corpus_image_share"]
    for name in ("center", "calibrated"):
        fx = create_fixer(name).fit(calib.image, calib.text)
        fixed = mixed_retrieval(corpus, fx)
        assert fixed["ndcg@10"] > raw["ndcg@10"] + 0.3, name
    assert pe.n_image == n


# ------------------------------------------------------------------ zero-shot
def test_zero_shot_hand_made():
    cls = np.eye(3)
    x = np.array([[1, 0.1, 0], [0.2, 1, 0.5], [0, 0.6, 0.5], [0.1, 0, 1]])
    y = np.array([0, 1, 2, 2])
    r = zero_shot(x, y, cls, ks=(1, 2))
    # predictions: 0, 1, 1, 2 -> acc1 3/4; recall per class: 1, 1, 1/2
    assert r["acc1"] == 0.75 and r["acc2"] == 1.0
    assert r["mean_per_class_recall"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_prompt_ensemble_and_classifier():
    assert prompts(["cat"], ["a {}.", "art of {}."]) == [["a cat.", "art of cat."]]
    table = {"a cat.": [1, 0], "art of cat.": [0, 1], "a dog.": [-1, 0], "art of dog.": [-1, 0]}
    w = build_classifier(["cat", "dog"], lambda texts: np.array([table[t] for t in texts], float),
                         ["a {}.", "art of {}."])
    np.testing.assert_allclose(w, [[np.sqrt(0.5), np.sqrt(0.5)], [-1, 0]])
    np.testing.assert_allclose(ensemble(np.array([[[2, 0], [0, 1]]])), [[np.sqrt(0.5), np.sqrt(0.5)]])
    with pytest.raises(GapkitError, match="unknown template set"):
        prompts(["a"], "nope")
    with pytest.raises(GapkitError, match="labels must lie"):
        zero_shot(np.eye(3), np.array([0, 1, 5]), np.eye(3))


# ------------------------------------------------------------------ linear probe
def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(4)
    centers = 3 * np.eye(5)
    y = rng.integers(0, 5, 400)
    x = centers[y] + 0.3 * rng.standard_normal((400, 5)) + 3
    assert linear_probe(x, y, C=10)["acc1"] > 0.97
    noise = rng.standard_normal((400, 5))
    assert linear_probe(noise, y)["acc1"] < 0.4


# ------------------------------------------------------------------ fairness
def test_denigration_synthetic_fixture():
    """Prompts: 2 human classes + 1 'non-human' + 1 'crime'. Group A has 2 of 4 images nearest the
    non-human prompt; group B has 1 of 2 nearest the crime prompt."""
    prompts_e = np.eye(4)
    cats = ["human", "human", "non-human", "crime"]
    img = np.array([[1, 0, 0.2, 0], [0, 1, 0, 0], [0.1, 0, 1, 0], [0, 0.2, 1, 0],   # group A
                    [0, 1, 0, 0.1], [0, 0.3, 0, 1]])                               # group B
    groups = ["A"] * 4 + ["B"] * 2
    r = denigration(img, groups, prompts_e, cats, true_prompt=np.array([0, 1, 0, 1, 1, 1]))
    assert r["denigration_A_non-human"] == 0.5 and r["denigration_A_crime"] == 0
    assert r["denigration_B_crime"] == 0.5 and r["denigration_B_total"] == 0.5
    assert r["denigration_all_total"] == pytest.approx(3 / 6)
    assert r["acc1"] == pytest.approx(3 / 6)
    with pytest.raises(GapkitError, match="have no prompt"):
        denigration(img, groups, prompts_e, ["human"] * 4)


def test_fused_documents_through_fixers():
    """Fused documents: a role fixer transforms them as doc_fused; a plain fixer fuses its fixed
    parts; calibrated scores map each document's cosine through its own pair (text-fused for fused
    documents), checked against a ranking computed here."""
    rng = np.random.default_rng(5)
    img = unit(rng.standard_normal((40, 8)) + 3 * np.eye(8)[0])
    m = np.repeat(np.arange(40), 2)
    txt = unit(img[m] - 6 * np.eye(8)[0] + 0.3 * rng.standard_normal((80, 8)))
    from gapkit.embeddings import PairedEmbeddings
    from gapkit.fixers import fuse

    pe = PairedEmbeddings(img, txt, m)
    corpus = corpus_from_pairs(pe, fused=True)
    center = create_fixer("center").fit(img, txt, m)
    role = create_fixer("role-center").fit(img, txt, m)
    fused_rows = corpus.role_rows("fused")
    from gapkit.evaluate.mixed import _transformed

    _, d_center = _transformed(corpus, center)
    p = corpus.fused_parts
    np.testing.assert_allclose(d_center[fused_rows],
                               fuse(center.transform(p[:, 0], "image"), center.transform(p[:, 1], "text")), atol=1e-6)
    _, d_role = _transformed(corpus, role)
    np.testing.assert_allclose(d_role[fused_rows], role.transform(corpus.docs[fused_rows], "doc_fused"), atol=1e-6)
    assert 0 <= mixed_retrieval(corpus, role)["fused_recall@10"] <= 1
    cal = create_fixer("calibrated").fit(img, txt, m)
    from gapkit.evaluate.mixed import rank_corpus

    cos = unit(corpus.queries) @ unit(corpus.docs).T
    pair = {"image": "image-text", "text": "text-text", "fused": "text-fused"}
    want = np.column_stack([cal.probability(cos[:, r], pair[corpus.doc_roles[r]]) for r in range(cos.shape[1])])
    np.testing.assert_array_equal(rank_corpus(corpus, cal, 5), np.argsort(-want, axis=1, kind="stable")[:, :5])


def test_retrieval_and_mixed_invariant_to_rigid_rotation():
    rng = np.random.default_rng(6)
    img = unit(rng.standard_normal((60, 10)) + 2 * np.eye(10)[0])
    m = rng.integers(0, 60, 90)
    txt = unit(img[m] - 4 * np.eye(10)[0] + 0.8 * rng.standard_normal((90, 10)))
    q, r = np.linalg.qr(rng.standard_normal((10, 10)))
    rot = q * np.sign(np.diag(r))
    a, b = retrieval(img, txt, m), retrieval(img @ rot, txt @ rot, m)
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a)
    from gapkit.embeddings import PairedEmbeddings

    ca = corpus_from_pairs(PairedEmbeddings(img, txt, m), seed=1)
    cb = corpus_from_pairs(PairedEmbeddings(img @ rot, txt @ rot, m), seed=1)
    assert mixed_retrieval(ca) == pytest.approx(mixed_retrieval(cb))


def test_protocol_fit_of_role_center_includes_the_fused_role():
    """fit_fixer (the evaluation protocol) fits doc_fused as the mean of the calibration pairs'
    fused documents, so a role fixer evaluates on corpora with fused documents."""
    from gapkit.embeddings import PairedEmbeddings
    from gapkit.evaluate.protocol import fit_fixer
    from gapkit.fixers import fuse

    rng = np.random.default_rng(2)
    img = unit(rng.standard_normal((30, 8)) + 3 * np.eye(8)[0])
    m = np.repeat(np.arange(30), 2)
    txt = unit(img[m] - 6 * np.eye(8)[0] + 0.3 * rng.standard_normal((60, 8)))
    role = fit_fixer(create_fixer("role-center", fuse_weight=0.3), PairedEmbeddings(img, txt, m), seed=1)
    corpus = corpus_from_pairs(PairedEmbeddings(img, txt, m), seed=1, fused=True, alpha=0.3)
    want = unit(corpus.docs[corpus.role_rows("fused")]).mean(axis=0)
    got = role.role_means_[role.roles_.index("doc_fused")]
    np.testing.assert_allclose(got, want, atol=1e-12)
    p = corpus.fused_parts  # each fused document fuses an image with one of its document captions
    np.testing.assert_allclose(corpus.docs[corpus.role_rows("fused")], fuse(p[:, 0], p[:, 1], 0.3), atol=1e-12)
    assert mixed_retrieval(corpus, role)["ndcg@10"] >= 0
