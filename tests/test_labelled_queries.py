"""Labelled queries against a real search index (`gapkit evaluate --task mixed-retrieval --index`):
metrics against a brute-force ranking and naive NDCG written here; bad query files are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.embeddings import PairedEmbeddings
from gapkit.errors import GapkitError
from gapkit.evaluate.labelled import evaluate_index, read_queries
from gapkit.search import build_index

from .test_mixbench import gapped_multi_caption, naive_ndcg


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """An index over 40 items (3 captions each; the first caption of items 0..19 held back as
    queries), corrected by role-center fitted on 40 other items; and the held-back query rows."""
    pe = gapped_multi_caption(80, 3, seed=7)
    fit = PairedEmbeddings(pe.image[40:], pe.text[120:], pe.mapping[120:] - 40)
    keep = np.array([j for j in range(120) if not (j % 3 == 0 and j < 60)])
    docs = PairedEmbeddings(pe.image[:40], pe.text[keep], pe.mapping[keep])
    out = tmp_path_factory.mktemp("labelled") / "idx"
    idx = build_index(docs, out=out, correction="role-center", fit=fit, backend="exact")
    queries = pe.text[0:60:3]                 # the first caption of items 0..19
    return idx, out, queries


def write_queries(path, queries, items=None, ids=None):
    with open(path, "w") as f:
        for i, q in enumerate(queries):
            obj = {"id": f"q{i}", "vector": [float(v) for v in q]}
            obj["relevant_items" if ids is None else "relevant"] = [str(i)] if ids is None else ids[i]
            f.write(json.dumps(obj) + "\n")
    return path


def test_raw_metrics_match_a_brute_force_ranking(indexed, tmp_path):
    idx, _, queries = indexed
    qs = read_queries(write_queries(tmp_path / "q.jsonl", queries))
    res = evaluate_index(idx, qs, n_boot=200)
    v = np.asarray(idx.vectors, np.float64)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    items = np.array([str(i) for i in idx.items])
    ndcg, share = [], []
    for i, q in enumerate(qn):
        order = np.argsort(-(v @ q), kind="stable")[:10]
        rel = items == str(i)
        ndcg.append(naive_ndcg(list(rel[order]), int(rel.sum())))
        share.append(np.mean([idx.role_of_row(r) == "image" for r in order]))
    assert res["raw"]["ndcg@10"] == pytest.approx(np.mean(ndcg))
    assert res["raw"]["image_share@10"] == pytest.approx(np.mean(share))
    assert res["corpus"]["relevant_per_query_mean"] == 4          # image + 2 captions + fused
    g = res["corrected"]
    assert g["ndcg@10_diff"] == pytest.approx(res["corrected"]["ndcg@10"] - res["raw"]["ndcg@10"])
    assert g["ndcg@10_diff_ci_low"] <= g["ndcg@10_diff"] <= g["ndcg@10_diff_ci_high"]
    assert res["corrected"]["image_share@10"] > res["raw"]["image_share@10"]   # the gap buried images


def test_relevant_ids_and_items_agree(indexed, tmp_path):
    idx, _, queries = indexed
    ids = [[str(d) for d, it in zip(idx.ids, idx.items) if str(it) == str(i)] for i in range(len(queries))]
    a = evaluate_index(idx, read_queries(write_queries(tmp_path / "a.jsonl", queries)), n_boot=50)
    b = evaluate_index(idx, read_queries(write_queries(tmp_path / "b.jsonl", queries, ids=ids)), n_boot=50)
    assert a["raw"] == b["raw"] and a["corrected"] == b["corrected"]


@pytest.mark.parametrize("line,msg", [
    ("{not json", "invalid JSON"),
    ('{"text": "a", "vector": [1], "relevant": ["image:0"]}', "exactly one"),
    ('{"text": "  ", "relevant": ["image:0"]}', "empty"),
    ('{"vector": [1, 2]}', "no relevant"),
    ('{"vector": [0, 0], "relevant": ["x"]}', "zero"),
    ('{"vector": [1], "relevant": ["x"], "colour": 1}', "unknown field"),
])
def test_bad_query_lines_name_the_line(tmp_path, line, msg):
    p = tmp_path / "q.jsonl"
    p.write_text('{"vector": [1, 0], "relevant": ["image:0"]}\n' + line + "\n")
    with pytest.raises(GapkitError, match=msg) as e:
        read_queries(p)
    assert "q.jsonl:2" in str(e.value)


def test_cli_writes_a_record_and_refuses_unknown_ids(indexed, tmp_path, capsys):
    _, out, queries = indexed
    q = write_queries(tmp_path / "q.jsonl", queries)
    rec_path = tmp_path / "rec.json"
    assert main(["evaluate", "--task", "mixed-retrieval", "--index", str(out), "--queries", str(q),
                 "--n-boot", "100", "--out", str(rec_path)]) == 0
    rec = json.loads(rec_path.read_text())
    assert rec["kind"] == "evaluate" and rec["task"] == "mixed-retrieval"
    assert rec["results"]["correction"] == "role-center" and "ndcg@10_diff" in rec["results"]["corrected"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"vector": [float(v) for v in queries[0]], "relevant": ["image:nope"]}) + "\n")
    capsys.readouterr()
    assert main(["evaluate", "--task", "mixed-retrieval", "--index", str(out), "--queries", str(bad),
                 "--out", str(tmp_path / "never.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image:nope" in err[0]
    assert not (tmp_path / "never.json").exists()
