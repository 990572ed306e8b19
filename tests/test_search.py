"""gapkit.search: backends vs exact NumPy, calibrated per-role merge vs brute force, round trips,
refusals (issue 10). Data: CLIP-shaped synthetic pairs (gapkit.search.synthetic)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.search import build_index, create_backend, open_backend, open_index, score
from gapkit.search.synthetic import GappedGenerator

N_ITEMS, CAPS = 300, 2


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pe():
    return GappedGenerator(seed=0).pairs(N_ITEMS, CAPS)


@pytest.fixture(scope="module")
def queries():
    """Held-out caption queries from other items (never in the index), and one of their images."""
    q = GappedGenerator(seed=7).pairs(40, 1)
    return q.text, q.image


def _raw_docs(pe, n_items=N_ITEMS, caps=CAPS):
    """The documents rebuilt in the test, independently of gapkit.search: role -> (ids, unit rows)."""
    img, txt = unit(pe.image), unit(pe.text)
    first = np.arange(n_items) * caps  # caption rows are item-major
    fused = unit(0.5 * img + 0.5 * txt[first])
    return {"image": ([f"image:{i}" for i in range(n_items)], img),
            "text": ([f"text:{j}" for j in range(n_items * caps)], txt),
            "fused": ([f"fused:{i}" for i in range(n_items)], fused)}


@pytest.fixture(scope="module")
def raw_docs(pe):
    return _raw_docs(pe)


@pytest.fixture(scope="module")
def indexes(pe, tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    out = {}
    for corr in ("none", "role-center", "calibrated"):
        for be in ("exact", "lancedb"):
            out[corr, be] = build_index(pe, out=root / f"{corr}-{be}", correction=corr, backend=be)
    out["calibrated", "faiss"] = build_index(pe, out=root / "calibrated-faiss", correction="calibrated", backend="faiss")
    return out


def ids_of(hits):
    return [h.id for h in hits]


def assert_same_ranking(got_ids, got_scores, want_ids, want_scores, tol=1e-5):
    """Identical ids, except that documents whose scores tie within tol may swap."""
    assert len(got_ids) == len(want_ids)
    np.testing.assert_allclose(got_scores, want_scores, atol=tol)
    for g, w, s in zip(got_ids, want_ids, want_scores):
        if g != w:
            near = np.abs(np.asarray(want_scores) - s) < tol
            assert g in set(np.asarray(want_ids)[near]), (g, w)


# ------------------------------------------------------------------------------------ backends
def _fill(backend_name, path, rows_by_role, **params):
    b = create_backend(backend_name, path, rows_by_role["image"].shape[1], **params)
    for role, rows in rows_by_role.items():
        for s in range(0, len(rows), 500):  # several add() calls, as a streamed build makes
            b.add(rows[s:s + 500].astype(np.float32), role)
    b.finish()
    return open_backend(path, b.meta())


@pytest.mark.parametrize("name,params", [("exact", {}), ("faiss", {"kind": "flat"}), ("lancedb", {})])
def test_flat_backends_return_the_exact_top_k(name, params, raw_docs, queries, tmp_path):
    rows = {r: raw_docs[r][1] for r in ("image", "text")}
    b = _fill(name, tmp_path / name, rows, **params)
    q = unit(queries[0][:4]).astype(np.float32)
    for role, v in rows.items():
        s, got = b.search(q, 10, role)
        full = q.astype(np.float64) @ v.T
        want = np.argsort(-full, axis=1, kind="stable")[:, :10]
        for i in range(len(q)):
            assert_same_ranking(got[i], s[i], want[i], full[i, want[i]])
    s, got = b.search(q, len(rows["image"]) + 5, "image")  # k above the partition size pads with -1
    assert (got[:, -5:] == -1).all() and np.isneginf(s[:, -5:]).all()


@pytest.mark.parametrize("name,params", [
    ("faiss", {"kind": "hnsw", "ef_search": 64}),
    ("faiss", {"kind": "ivf", "nlist": 32, "nprobe": 16}),  # memory-mapped inverted lists
    ("lancedb", {"flat_max": 1000, "index_type": "IVF_HNSW_SQ", "num_partitions": 8, "nprobes": 6, "refine_factor": 4}),
])
def test_ann_backends_recall_at_least_095(name, params, tmp_path):
    """ANN mode on a seeded CLIP-shaped set: recall@10 against exact search >= 0.95."""
    pe = GappedGenerator(seed=3).pairs(4000, 1)
    docs = unit(pe.text)
    b = _fill(name, tmp_path / name, {"image": unit(pe.image[:50]), "text": docs}, **params)
    q = unit(GappedGenerator(seed=4).pairs(50, 1).text).astype(np.float32)
    _, got = b.search(q, 10, "text")
    want = np.argsort(-(q.astype(np.float64) @ docs.T), axis=1)[:, :10]
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.95, recall


def test_faiss_small_hnsw_builds_on_one_thread_and_restores_the_setting(tmp_path):
    """A graph under HNSW_SERIAL_MAX rows is built with one OpenMP thread (parallel insertion of a
    small graph mostly waits on locks); faiss's thread setting is the caller's again afterwards."""
    faiss = pytest.importorskip("faiss")
    from gapkit.search.backends import faiss_backend

    seen = []
    real_set = faiss.omp_set_num_threads
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        faiss_backend._faiss().omp_set_num_threads = lambda n: (seen.append(n), real_set(n))[1]
        pe = GappedGenerator(seed=3).pairs(300, 1)
        _fill("faiss", tmp_path / "h", {"image": unit(pe.image[:50]), "text": unit(pe.text)}, kind="hnsw")
        assert seen == [1, 2, 1, 2] and faiss.omp_get_max_threads() == 2  # per role: 1 thread, then back
    finally:
        faiss.omp_set_num_threads = real_set
        real_set(before)


# ------------------------------------------------------------------------------------ rankings
def _brute_force(score_fn, raw_docs, q, k, roles=("image", "text", "fused")):
    ids = sum((raw_docs[r][0] for r in roles), [])
    s = np.concatenate([score_fn(r, raw_docs[r][1]) for r in roles], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order], np.take_along_axis(s, order, 1)


@pytest.mark.parametrize("backend", ["exact", "lancedb", "faiss"])
def test_calibrated_per_role_merge_equals_brute_force_ranking(indexes, raw_docs, queries, backend):
    """Fetching the top k per role and merging by P(match) == calibrating every document's raw
    cosine and ranking the whole corpus (flat mode)."""
    idx = indexes["calibrated", backend]
    fx = idx.correction.fixer
    pairs = {"image": "image-text", "text": "text-text", "fused": "text-fused"}
    q = unit(queries[0])
    want_ids, want_p = _brute_force(lambda r, d: fx.probability(q @ d.T, pairs[r]), raw_docs, q, 10)
    for i, hits in enumerate(idx.search_vectors(q, "text", k=10)):
        assert_same_ranking(ids_of(hits), [h.score for h in hits], want_ids[i], want_p[i], tol=1e-6)
        for h in hits:
            assert h.probability == h.score and h.role == h.id.split(":")[0]
            row = raw_docs[h.role][0].index(h.id)
            assert h.raw_cosine == pytest.approx(float(q[i] @ raw_docs[h.role][1][row]), abs=1e-6)


@pytest.mark.parametrize("backend", ["exact", "lancedb"])
def test_fixer_index_equals_brute_force_of_the_fixed_vectors(indexes, raw_docs, queries, backend):
    idx = indexes["role-center", backend]
    fx = idx.correction.fixer
    q = unit(queries[0])
    qf = unit(fx.transform(q, "query_text"))
    doc_role = {"image": "doc_image", "text": "doc_text", "fused": "doc_fused"}
    want_ids, want_s = _brute_force(lambda r, d: qf @ unit(fx.transform(d, doc_role[r])).T, raw_docs, q, 10)
    for i, hits in enumerate(idx.search_vectors(q, "text", k=10)):
        assert_same_ranking(ids_of(hits), [h.score for h in hits], want_ids[i], want_s[i])
        assert all(h.probability is None for h in hits)
    raw_ids, _ = _brute_force(lambda r, d: q @ d.T, raw_docs, q, 10)
    assert [ids_of(h) for h in idx.search_vectors(q, "text", k=10, raw=True)] == raw_ids


def test_role_filter_and_raw_ranking(indexes, queries):
    idx = indexes["calibrated", "exact"]
    q = queries[0][0]
    for role in ("image", "text", "fused"):
        hits = idx.search(vector=q, k=7, role=role)
        assert len(hits) == 7 and {h.role for h in hits} == {role}
    raw = idx.search(vector=q, k=10, raw=True)
    assert [h.score for h in raw] == sorted((h.score for h in raw), reverse=True)
    assert all(h.score == h.raw_cosine and h.probability is not None for h in raw)


def test_calibration_brings_the_matching_images_back(tmp_path):
    """The gap buries images under texts in a raw ranking; the calibrated ranking finds the
    query item's image far more often (queries: a held-out caption of each indexed item)."""
    full = GappedGenerator(seed=5).pairs(200, 3)
    keep = np.arange(600) % 3 != 2
    from gapkit.embeddings import PairedEmbeddings

    idx = build_index(PairedEmbeddings(full.image, full.text[keep], full.mapping[keep]), out=tmp_path / "i",
                      correction="calibrated", backend="exact")
    q = unit(full.text[2::3])
    found = {}
    for mode in ("raw", "calibrated"):
        res = idx.search_vectors(q, "text", k=10, raw=mode == "raw")
        found[mode] = np.mean([f"image:{i}" in ids_of(h) for i, h in enumerate(res)])
    assert found["raw"] < 0.1 and found["calibrated"] > found["raw"] + 0.3, found


def test_min_probability_keeps_only_likely_hits(indexes, queries):
    idx = indexes["calibrated", "exact"]
    hits = idx.search(vector=queries[0][1], k=50, min_probability=0.05)
    assert hits and all(h.probability >= 0.05 for h in hits)
    assert [h.probability for h in hits] == sorted((h.probability for h in hits), reverse=True)
    assert len(hits) < 50


def test_score_of_a_pair(indexes, queries):
    txt, img = queries
    for corr in ("none", "role-center", "calibrated"):
        s = score(indexes[corr, "exact"], image=img[0], text=txt[0])
        assert s["raw_cosine"] == pytest.approx(float(unit(img[:1])[0] @ unit(txt[:1])[0]), abs=1e-6)
        if corr == "calibrated":
            fx = indexes[corr, "exact"].correction.fixer
            assert s["probability"] == pytest.approx(float(fx.probability(s["raw_cosine"], "image-text")))
        else:
            assert s["probability"] is None


# ------------------------------------------------------------------------------------ persistence
@pytest.mark.parametrize("key", [("calibrated", "lancedb"), ("role-center", "exact"), ("calibrated", "faiss")])
def test_save_open_round_trip_is_identical(indexes, queries, key):
    idx = indexes[key]
    back = open_index(idx.path, verify=True)
    assert back.info() == idx.info()
    for role in ("any", "image"):
        a = [[h.to_dict() for h in hs] for hs in idx.search_vectors(queries[0][:5], k=8, role=role)]
        b = [[h.to_dict() for h in hs] for hs in back.search_vectors(queries[0][:5], k=8, role=role)]
        assert a == b


def test_info_describes_the_index(indexes):
    info = indexes["calibrated", "lancedb"].info()
    assert info["roles"] == {"image": N_ITEMS, "text": N_ITEMS * CAPS, "fused": N_ITEMS}
    assert info["dim"] == 512 and info["encoder"] is None and info["query_roles"] == []
    assert info["correction"]["kind"] == "calibrated" and set(info["calibrated_pairs"]) == {"image-text", "text-text", "text-fused"}
    assert info["correction"]["priors"]["image-text"] == pytest.approx(1 / N_ITEMS)
    assert info["fit"]["n_images"] == round(0.2 * N_ITEMS) and len(info["content_hash"]) == 32
    fit_items = indexes["calibrated", "lancedb"].fit_items()
    assert len(fit_items) == info["fit"]["n_images"] and set(fit_items) <= {str(i) for i in range(N_ITEMS)}
    assert indexes["none", "exact"].fit_items() == []


def _copy(idx, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(idx.path, dst)
    return dst


def test_open_refuses_missing_corrupt_and_foreign_indexes(indexes, tmp_path):
    with pytest.raises(GapkitError, match="no search index"):
        open_index(tmp_path / "nope")
    src = indexes["calibrated", "exact"]
    d = _copy(src, tmp_path)
    meta = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**meta, "gapkit_version": "0.0.1"}))
    with pytest.raises(GapkitError, match="rebuild the index"):
        open_index(d)
    (d / "index.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(GapkitError, match="rebuild the index"):
        open_index(d)
    (d / "index.json").write_text("{not json")
    with pytest.raises(GapkitError, match="invalid JSON"):
        open_index(d)
    (d / "index.json").write_text(json.dumps(meta))
    with open(d / "vectors.f32", "r+b") as f:
        f.truncate(100)
    with pytest.raises(GapkitError, match="wrong size"):
        open_index(d)
    d2 = tmp_path / "copy2"
    import shutil

    shutil.copytree(src.path, d2)
    with open(d2 / "vectors.f32", "r+b") as f:  # same size, other bytes: only the hash notices
        f.seek(0)
        f.write(b"\0\0\0\0")
    open_index(d2)
    with pytest.raises(GapkitError, match="content hash mismatch"):
        open_index(d2, verify=True)
    (d2 / "docs.parquet").unlink()
    with pytest.raises(GapkitError, match="docs.parquet: missing"):
        open_index(d2)


def test_search_refuses_bad_queries(indexes):
    idx = indexes["none", "exact"]
    v = np.ones(512, np.float32)
    for kw, msg in [
        ({"vector": np.ones(64)}, "dimension 64, the index has 512"),
        ({"vector": v, "k": 0}, "k must be a positive integer"),
        ({"vector": v, "k": -3}, "k must be a positive integer"),
        ({"vector": v, "role": "audio"}, "unknown role 'audio'"),
        ({"text": "   "}, "query text is empty"),
        ({"text": "a red apple"}, "has no encoder"),
        ({"image": "x.png"}, "has no encoder"),
        ({}, "exactly one query"),
        ({"vector": v, "min_probability": 0.5}, "needs a calibrated index"),
        ({"vector": np.ones((2, 512))}, "must be 1-D"),
        ({"vector": np.zeros(512)}, "all zeros"),
    ]:
        with pytest.raises(GapkitError, match=msg):
            idx.search(**kw)
    with pytest.raises(GapkitError, match=r"min_probability must be in \[0, 1\]"):
        indexes["calibrated", "exact"].search(vector=v, min_probability=1.5)


def test_calibrated_needs_calibration_data_for_every_role(tmp_path):
    one_to_one = GappedGenerator(seed=2).pairs(200, 1)
    with pytest.raises(GapkitError, match="several captions per image"):
        build_index(one_to_one, out=tmp_path / "a", correction="calibrated", backend="exact")
    assert not (tmp_path / "a").exists()
    idx = build_index(one_to_one, out=tmp_path / "b", correction="calibrated", backend="exact", roles=("image",))
    assert idx.info()["roles"] == {"image": 200}
    fit = GappedGenerator(seed=9).pairs(200, 3)  # calibration data given separately (--fit)
    idx = build_index(one_to_one, out=tmp_path / "c", correction="calibrated", backend="exact", fit=fit)
    assert idx.info()["fit"]["n_texts"] == 600 and not (tmp_path / "c" / "fit_items.json").exists()
    with pytest.raises(GapkitError, match="no calibration for image queries against image"):
        idx.search(vector=one_to_one.image[0], query_role="image")


def test_build_never_replaces_a_users_directory(pe, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(GapkitError, match="refusing to replace"):
        build_index(pe, out=mine, backend="exact")
    assert (mine / "thesis.tex").read_text() == "precious"
    with pytest.raises(GapkitError, match="unknown search backend 'qdrant'"):
        build_index(pe, out=tmp_path / "x", backend="qdrant")
    with pytest.raises(GapkitError, match="unknown correction 'magic'"):
        build_index(pe, out=tmp_path / "x", correction="magic")
    assert not (tmp_path / "x").exists()


def test_clip_retrieval_folder_streams_shard_by_shard(tmp_path):
    """A 3-shard clip-retrieval folder is indexed shard by shard (never concatenated) and gives
    the same index as the same pairs loaded in memory."""
    from gapkit.embeddings import load_embeddings

    gen = GappedGenerator(seed=11)
    folder = gen.write_clip_retrieval(tmp_path / "cr", 700, shard_rows=300)
    assert len(list((folder / "img_emb").glob("*.npy"))) == 3
    pe = load_embeddings(folder)
    np.testing.assert_allclose(pe.image, gen.pairs(700).image, atol=1e-6)  # BLAS may round differently
    a = build_index(folder, out=tmp_path / "a", roles=("image", "text"), correction="center", backend="exact")
    b = build_index(pe, out=tmp_path / "b", roles=("image", "text"), correction="center", backend="exact")
    assert a.meta["content_hash"] == b.meta["content_hash"]
    q = unit(GappedGenerator(seed=12).pairs(5, 1).text)
    assert [[h.to_dict() for h in hs] for hs in a.search_vectors(q, k=6)] == \
           [[h.to_dict() for h in hs] for hs in b.search_vectors(q, k=6)]


def test_rendered_images_become_registered_thumbnails(pe, tmp_path):
    """Images that are not files (rendered datasets) are written into the index as thumbnails;
    image_file returns only those, never a path from outside the index."""
    from PIL import Image

    colours = np.random.default_rng(0).integers(0, 255, (N_ITEMS, 3))
    loader = lambda i: Image.new("RGB", (300, 200), tuple(int(c) for c in colours[i]))  # noqa: E731
    idx = build_index(pe, out=tmp_path / "t", roles=("image", "text"), backend="exact", image_loader=loader)
    f = idx.image_file("image:7")
    assert f is not None and f.parent == (tmp_path / "t" / "images").resolve()
    with Image.open(f) as im:
        assert max(im.size) <= 256 and im.getpixel((5, 5)) == tuple(int(c) for c in colours[7])
    assert idx.image_file("text:0") is None and idx.image_file("image:nope") is None
    assert open_index(idx.path, verify=True).image_file("image:7") == f


# ----------------------------------------------------------------- FAISS IVF-SQ8 + exact re-rank
@pytest.mark.parametrize("kind", ["gaussian", "bootstrap"])
def test_faiss_ivfsq_recall_and_exact_scores(kind, tmp_path):
    """IVF over 8-bit codes, top k * refine re-ranked from the memory-mapped float32 rows: recall@10
    >= 0.95 against exact NumPy on both synthetic geometries, and every returned score is the exact
    float32 inner product (not the quantised one)."""
    pe = GappedGenerator(seed=3, kind=kind).pairs(4000, 1)
    docs = unit(pe.text).astype(np.float32)
    b = _fill("faiss", tmp_path / kind, {"image": unit(pe.image[:50]), "text": docs},
              kind="ivfsq", nlist=32, nprobe=16, refine=4)
    assert b.kinds == {"image": "ivfsq", "text": "ivfsq"}
    q = unit(GappedGenerator(seed=4, kind=kind).pairs(50, 1).text).astype(np.float32)
    s, got = b.search(q, 10, "text")
    full = q.astype(np.float64) @ docs.T.astype(np.float64)
    want = np.argsort(-full, axis=1)[:, :10]
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(s, np.take_along_axis(full, got, 1), rtol=0, atol=1e-5)
    assert (np.diff(s, axis=1) <= 0).all()


def test_rerank_exact_matches_naive_top_k():
    from gapkit.search.backends.faiss_backend import rerank_exact

    rng = np.random.default_rng(0)
    v = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    cand = np.stack([rng.choice(300, 40, replace=False) for _ in range(5)])
    cand[0, 30:] = -1  # padding from the ANN index
    cand[1, :] = -1
    cand[1, :3] = [7, 8, 9]  # fewer candidates than k: pads with -1 / -inf
    s, rows = rerank_exact(v, q, cand, 10)
    for i in range(5):
        c = cand[i][cand[i] >= 0]
        sc = v[c] @ q[i]
        order = np.argsort(-sc)[:10]
        m = min(10, c.size)
        np.testing.assert_array_equal(rows[i, :m], c[order][:m])
        np.testing.assert_allclose(s[i, :m], sc[order][:m], rtol=1e-6)
        assert (rows[i, m:] == -1).all() and np.isneginf(s[i, m:]).all()


def test_faiss_auto_uses_ivfsq_above_flat_max_and_checks_params(tmp_path):
    pe = GappedGenerator(seed=5).pairs(600, 1)
    b = _fill("faiss", tmp_path / "auto", {"image": unit(pe.image[:100]), "text": unit(pe.text)},
              flat_max=200, nlist=8, nprobe=8, refine=2)
    assert b.kinds == {"image": "flat", "text": "ivfsq"}
    assert (tmp_path / "auto" / "text.f32").is_file() and not (tmp_path / "auto" / "image.f32").exists()
    b.set_search_params(refine=6, nprobe=4)
    assert b._index["text"].nprobe == 4 and b.params["refine"] == 6
    for bad, msg in [({"refine": 0}, "between values > 0"), ({"nprobe": 0}, "integer >= 1"),
                     ({"m": 3}, "only ef_search")]:
        with pytest.raises(GapkitError, match=msg):
            b.set_search_params(**bad)
    with pytest.raises(GapkitError, match="refine must be an integer"):
        create_backend("faiss", tmp_path / "bad", 8, refine=-1)
    (tmp_path / "auto" / "text.f32").write_bytes(b"\0" * 16)  # truncated re-rank store
    with pytest.raises(GapkitError, match="truncated float32 re-rank"):
        open_backend(tmp_path / "auto", b.meta())


def test_calibration_scores_in_blocks_equal_one_block(monkeypatch):
    """The calibrated fit computes its sampled pair cosines block by block (bounded build memory at
    1M documents): the same numbers, bit for bit, as one block over all pairs."""
    import gapkit.fixers.calibrate as cal

    pe = GappedGenerator(seed=1).pairs(400, 3)
    kw = dict(n_pos=1200, n_neg=4800, seed=3)
    monkeypatch.setattr(cal, "PAIR_CHUNK", 10**9)
    one = cal.labelled_scores(pe.image, pe.text, pe.mapping, **kw)
    monkeypatch.setattr(cal, "PAIR_CHUNK", 500)
    blocks = cal.labelled_scores(pe.image, pe.text, pe.mapping, **kw)
    for pair, d in one.items():
        for part in ("pos", "neg"):
            if d[part] is None:
                assert blocks[pair][part] is None
            else:
                np.testing.assert_array_equal(blocks[pair][part], d[part])


def test_calibrated_ivfsq_index_recall_against_brute_force(tmp_path):
    """The whole path at ANN level: a calibrated index on FAISS ivfsq (per-role IVF-SQ8 candidates,
    exact re-rank, P(match), merge) against calibrating every document and ranking the corpus:
    recall@10 >= 0.95 on the bootstrap geometry with 5 of 8 cells probed, and every
    hit's raw cosine and P(match) are the exact ones. (A 300-item set has fewer items than the
    bootstrap has real centres, so it is not clustered yet: at 1M, 32 of 2,828 cells reach 0.98.)"""
    pe = GappedGenerator(seed=0, kind="bootstrap").pairs(N_ITEMS, CAPS)
    raw_docs = _raw_docs(pe)
    queries = GappedGenerator(seed=7, kind="bootstrap").pairs(40, 1).text, None
    idx = build_index(pe, out=tmp_path / "ivfsq", correction="calibrated", backend="faiss",
                      backend_params={"kind": "ivfsq", "nlist": 8, "nprobe": 5, "refine": 4})
    assert idx.info()["backend"]["raw"]["kinds"] == {"image": "ivfsq", "text": "ivfsq", "fused": "ivfsq"}
    fx = idx.correction.fixer
    pairs = {"image": "image-text", "text": "text-text", "fused": "text-fused"}
    q = unit(queries[0])
    want_ids, _ = _brute_force(lambda r, d: fx.probability(q @ d.T, pairs[r]), raw_docs, q, 10)
    got = idx.search_vectors(q, "text", k=10)
    recall = np.mean([len(set(ids_of(h)) & set(w)) / 10 for h, w in zip(got, want_ids)])
    assert recall >= 0.95, recall
    for i, hits in enumerate(got):
        for h in hits:
            cos = float(q[i] @ raw_docs[h.role][1][raw_docs[h.role][0].index(h.id)])
            assert h.raw_cosine == pytest.approx(cos, abs=1e-6)
            assert h.probability == pytest.approx(float(fx.probability(np.array([cos]), pairs[h.role])[0]), abs=1e-6)
