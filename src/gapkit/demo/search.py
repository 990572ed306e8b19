"""The demo's search stage: a served index over its own data, and the labelled-query benchmark.

    RUN/index/               a gapkit search index over the emoji + openclipart TEST images, their
                             captions and fused image+caption documents, embedded by the demo's
                             pretrained towers with the CLIP-tuned LiT heads, with the correction that
                             scored the best mean NDCG@10 in the benchmark below (fitted on the
                             TRAINING split); `gapkit serve RUN/index` serves it
                             (its images are copied into it as thumbnails: the index is self-contained)
    RUN/search/<dataset>/record.json   the MixBench-style benchmark per dataset (gapkit.evaluate.mixbench):
                             corrections fitted on the training split, queries = one caption of half the
                             test images, raw vs role-center / center / calibrated, exact and through
                             a FAISS HNSW index (ANN), with paired 95 % intervals

The stage reads what the `features` and `tuning` stages left (the datasets are reloaded from the
data cache for their captions and image files) and prints the one command that serves the index.
The served correction is chosen on the benchmark's queries, which are captions of the indexed
test images: the index is for exploring, the records are the evaluation (each correction there is
scored on the same held-out queries, none is chosen by them).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..embeddings import PairedEmbeddings
from ..records import new_record, save_record
from .pipeline import StageSkipped, require

BENCH_CORRECTIONS = ("role-center", "center", "calibrated")
BACKEND = "lancedb"  # the served index: LanceDB, flat (exact) at the demo's size (flat_max 100k)
# The benchmark's ANN check: FAISS HNSW. LanceDB's indexed query costs ~3 ms per query whatever
# the corpus size (150 queries over 700 vectors: 0.42-0.60 s indexed vs 0.05 s flat), which made
# its ANN check 14 of the stage's ~21 s; FAISS HNSW runs the same check in ~1 s.
# `gapkit evaluate --task mixed-retrieval --index IDX` runs the benchmark through any built index.
ANN_BACKEND = "faiss"


def search(ctx: dict[str, Any]) -> tuple[Any, str]:
    """Build RUN/index and the benchmark records; the detail line names the serve command."""
    from . import towers as tw

    require("gapkit.search", "build_index")
    arms = ctx.get("arms") or {}
    if "CLIP" not in arms or "features" not in ctx:
        raise StageSkipped("needs the CLIP-tuned heads of the 'tuning' stage")
    heads, out = arms["CLIP"], Path(ctx["out"])
    train = tw._project(heads, ctx["train"])
    tests = {name: documents(ctx, name, tw._project(heads, f)) for name, f in ctx["features"]["test"].items()}
    bench = {name: benchmark(ctx, train, pe, out / "search" / name) for name, (pe, _) in tests.items()}
    index_dir = out / "index"
    best = best_correction(bench)
    docs, images = _concat(list(tests.values()))
    build(ctx, heads, docs, images, train, index_dir, best)
    gains = "; ".join(f"{n} NDCG@10 raw {b['exact']['none']['ndcg@10']:.2f}, "
                      + ", ".join(f"{c} {b['exact'][c]['ndcg@10_diff']:+.2f}" for c in BENCH_CORRECTIONS if c in b["exact"])
                      for n, b in bench.items())
    return ({"index": str(index_dir), "correction": best, "benchmark": bench},
            f"{gains}; index corrected by {best}; serve it: gapkit serve {index_dir}")


def best_correction(bench: dict[str, dict[str, Any]]) -> str:
    """The correction with the highest exact NDCG@10 averaged over the datasets (first on ties)."""
    ok = [c for c in BENCH_CORRECTIONS if all(c in b["exact"] for b in bench.values())]
    if not ok:
        raise StageSkipped("no correction could be fitted on the demo's data")
    return max(ok, key=lambda c: float(np.mean([b["exact"][c]["ndcg@10"] for b in bench.values()])))


def documents(ctx: dict[str, Any], name: str, pe: PairedEmbeddings) -> tuple[PairedEmbeddings, Any]:
    """Test embeddings with the dataset's captions and image ids (dataset-prefixed), and a
    function image row -> PIL image (the index stores thumbnails of them)."""
    from ..data import load_dataset
    from .towers import SIZES

    limit = SIZES[ctx["quick"]]["test"] if (ctx["quick"] or name != "emoji") else None
    ds = load_dataset(name, split="test", seed=ctx["seed"], limit=limit)
    if ds.n_images != pe.n_image or len(ds.captions) != pe.n_text:
        raise StageSkipped(f"{name}: the reloaded test split does not match the embedded one")
    ids = [f"{name}/{s}" for s in (ds.image_ids or range(ds.n_images))]
    return PairedEmbeddings(pe.image, pe.text, pe.text_to_image, image_ids=ids, captions=list(ds.captions),
                            metadata={"dataset": name}), ds.image


def _concat(parts: list[tuple[PairedEmbeddings, Any]]) -> tuple[PairedEmbeddings, Any]:
    """Several datasets as one document set, and one image loader over all of them."""
    pes = [p for p, _ in parts]
    offsets = np.cumsum([0] + [p.n_image for p in pes])
    pe = PairedEmbeddings(np.vstack([p.image for p in pes]), np.vstack([p.text for p in pes]),
                          np.concatenate([p.mapping + o for p, o in zip(pes, offsets)]),
                          image_ids=[i for p in pes for i in p.image_ids], captions=[c for p in pes for c in p.captions])

    def image(i: int) -> Any:
        k = int(np.searchsorted(offsets, i, side="right")) - 1
        return parts[k][1](i - int(offsets[k]))

    return pe, image


def build(ctx: dict[str, Any], heads: Any, docs: PairedEmbeddings, images: Any, fit: PairedEmbeddings, out: Path,
          correction: str) -> Any:
    """The served index: the towers with the CLIP heads as its query encoder (no reload of the towers)."""
    from ..encoders.towers import save_heads, tower_text_features
    from ..search import build_index
    from ..search.encoding import PROBE_TEXT

    towers = ctx["towers_encoder"]
    # the index stores the query encoder's embedding of a probe text: read its raw features from
    # the cache so that a warm run never loads MiniLM
    tower_text_features([PROBE_TEXT], encoder=towers, source="gapkit search probe")
    with tempfile.TemporaryDirectory(prefix="gapkit-heads-") as tmp:
        path = Path(tmp) / "heads.safetensors"
        save_heads(heads, path)
        enc = towers.with_heads(path)
        return build_index(docs, out=out, correction=correction, fit=fit, backend=BACKEND, encoder="towers",
                           encoder_checkpoint=path, encoder_obj=enc, image_loader=images,
                           seed=ctx["seed"], progress=ctx.get("verbose", True))


def benchmark(ctx: dict[str, Any], fit: PairedEmbeddings, test: PairedEmbeddings, out: Path) -> dict[str, Any]:
    """mixbench on one dataset's test split (corrections fitted on the training split); writes a record."""
    from ..evaluate.mixbench import ANN_PARAMS, IndexRanker, exact_ranker, mixbench

    with tempfile.TemporaryDirectory(prefix="gapkit-mixbench-") as tmp:
        rankers = {"exact": exact_ranker, f"{ANN_BACKEND} (ANN)": IndexRanker(tmp, ANN_BACKEND, ANN_PARAMS[ANN_BACKEND],
                                                                               seed=ctx["seed"])}
        res = mixbench(fit, test, BENCH_CORRECTIONS, rankers=rankers, seed=ctx["seed"],
                       n_boot=200 if ctx["quick"] else 1000, progress=ctx.get("verbose", True))
    name = test.metadata.get("dataset", "data")
    rec = new_record("evaluate", title=f"Mixed-modality search with labelled queries ({name})", seed=ctx["seed"],
                     params={"corrections": list(BENCH_CORRECTIONS), "backend": ANN_BACKEND, "ann": ANN_PARAMS[ANN_BACKEND],
                             "fit": "training split", "queries": "one caption of half the test images"},
                     results=res, task="mixbench", dataset=name, model="towers + CLIP-tuned LiT heads")
    save_record(rec, out / "record.json")
    return res
