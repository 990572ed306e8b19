"""build_index: documents + correction + backend -> an index directory, written atomically.

    idx = build_index("runs/emoji-emb", correction="calibrated", backend="lancedb", out="runs/idx")
    idx = build_index(pe, correction="role-center", fit=calib_pe, backend="faiss", out="idx")
    idx = build_index_from_dataset("emoji", "towers:pca", correction="calibrated", out="idx")

The correction is fitted on calibration data that is never a query being evaluated: `fit`
(PairedEmbeddings or a path) when given, else a seeded held-out share (`fit_fraction`, at most
`max_fit_images` images) of the indexed items. Those items stay searchable documents; their ids
are listed in IDX/fit_items.json so a labelled evaluation can keep them out of its queries.
Vectors stream chunk by chunk from (memory-mapped) inputs into vectors.f32 and the backend(s),
so building needs memory for one chunk plus what the backend itself holds.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..embeddings import PairedEmbeddings, as_paired, load_embeddings
from ..errors import GapkitError
from .backends.base import DEFAULT_BACKEND, create_backend
from .correction import Correction, check_kind, check_prior, pair_name
from .documents import ROLES, ClipRetrievalSource, RoleDocs, docs_from_pairs, raw_rows
from .index import FORMAT, FORMAT_VERSION, MixedIndex, content_hash, index_version, open_index


def _as_pairs(source: Any, text: Any = None, text_to_image: Any = None) -> PairedEmbeddings:
    if isinstance(source, (str, Path)):
        return load_embeddings(source, text_to_image=text_to_image)
    if source is None:
        raise GapkitError("build_index needs embeddings (PairedEmbeddings, a path, or image and text arrays)")
    return as_paired(source, text, text_to_image)


def subset_pairs(pe: PairedEmbeddings, images: np.ndarray) -> PairedEmbeddings:
    """The items `images` (sorted image rows) with all their captions, remapped."""
    images = np.sort(np.asarray(images, np.int64))
    pos = np.full(pe.n_image, -1, np.int64)
    pos[images] = np.arange(images.size)
    texts = np.flatnonzero(pos[pe.mapping] >= 0)
    if texts.size == 0:
        raise GapkitError("the calibration items have no captions")
    return PairedEmbeddings(np.asarray(pe.image[images]), np.asarray(pe.text[texts]), pos[pe.mapping[texts]])


def _is_clip_retrieval(source: Any) -> bool:
    return isinstance(source, (str, Path)) and Path(source).is_dir() and (Path(source) / "img_emb").is_dir()


def _fit_data(pe: Any, fit: Any, fraction: float, max_images: int, seed: int) -> tuple[PairedEmbeddings, dict[str, Any], list[str]]:
    if fit is not None:
        fpe = _as_pairs(fit)
        return fpe, {"source": str(fit) if isinstance(fit, (str, Path)) else "given", "n_images": fpe.n_image,
                     "n_texts": fpe.n_text}, []
    if not 0 < fraction < 1:
        raise GapkitError(f"fit_fraction must be in (0, 1), got {fraction}")
    n_items = pe.n if isinstance(pe, ClipRetrievalSource) else pe.n_image
    n = max(2, min(int(round(fraction * n_items)), int(max_images)))
    if n > n_items:
        raise GapkitError("too few items to hold out calibration data; give fit data")
    pick = np.sort(np.random.default_rng(seed).choice(n_items, n, replace=False))
    if isinstance(pe, ClipRetrievalSource):
        fpe, ids = pe.subset(pick), [str(i) for i in range(n_items)]
    else:
        fpe, ids = subset_pairs(pe, pick), [str(i) for i in (pe.image_ids or range(n_items))]
    return fpe, {"source": "held-out share of the indexed items", "fraction": fraction, "seed": seed,
                 "n_images": fpe.n_image, "n_texts": fpe.n_text}, [ids[i] for i in pick]


def fit_correction(correction: str, fit_pe: PairedEmbeddings, roles: Sequence[str], params: dict[str, Any] | None,
                   fuse_weight: float) -> Correction:
    """Fit the named fixer on calibration pairs; calibrated checks every text-query pair it needs."""
    from ..fixers import create_fixer

    params = dict(params or {})
    if correction == "calibrated":
        params.setdefault("fuse_weight", fuse_weight)
    fx = create_fixer(correction, **params)
    fx.fit(fit_pe.image, fit_pe.text, None if fit_pe.one_to_one else fit_pe.mapping)
    corr = Correction(fx)
    if corr.kind == "calibrated":
        missing = [r for r in roles if pair_name("text", r) not in fx.prob_pairs_]
        if missing:
            raise GapkitError(f"correction 'calibrated' has no matching pairs to calibrate text queries against "
                              f"{' and '.join(missing)} documents: the calibration data needs several captions per "
                              "image (give --fit DATA with them, or leave those roles out)")
    return corr


def build_index(source: Any = None, *, out: str | Path, text: Any = None, text_to_image: Any = None,
                roles: Sequence[str] = ROLES, correction: str = "none", fit: Any = None, fit_fraction: float = 0.2,
                max_fit_images: int = 50_000, fixer_params: dict[str, Any] | None = None, prior: Any = None,
                backend: str = DEFAULT_BACKEND, backend_params: dict[str, Any] | None = None,
                encoder: str | None = None, encoder_checkpoint: str | Path | None = None,
                encoder_kwargs: dict[str, Any] | None = None, encoder_obj: Any = None,
                image_paths: Sequence[str | None] | None = None, fields: Sequence[dict[str, Any]] | None = None,
                image_loader: Any = None, fuse_weight: float = 0.5, seed: int = 0,
                progress: bool = False) -> MixedIndex:
    """Build a MixedIndex over the documents of `source` and write it to `out` (see module docstring).

    source: PairedEmbeddings, a path gapkit reads embeddings from (embed dir, clip-retrieval dir,
    .npy/.npz/.safetensors/...), or image rows with text=text rows. correction: "none", a fixer name
    ("center", "role-center", ...) or "calibrated". prior: override of the calibrated priors (a
    number or {pair: number}). encoder: registry name of the model that embedded the documents, so
    the index can embed text / image queries itself. image_loader: a function image row -> PIL
    image for images that are not files (e.g. rendered datasets): they are written into
    IDX/images/ as PNG thumbnails (longest side THUMB px) and registered as the documents' files.
    """
    from ..atomic import atomic_dir, check_replaceable_dir, dumps_json

    check_kind(correction)
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise GapkitError(f"unknown document roles {bad}; known: {', '.join(ROLES)}" if bad else "no document roles")
    roles = tuple(r for r in ROLES if r in roles)
    check_prior(prior)
    if _is_clip_retrieval(source) and text is None and text_to_image is None:
        if image_paths is not None or fields is not None:
            raise GapkitError("image_paths / fields apply to paired embeddings, not to a clip-retrieval folder")
        pe: Any = ClipRetrievalSource(source)  # streamed shard by shard, never concatenated
        docs = pe.docs(roles)
    else:
        pe = _as_pairs(source, text, text_to_image)
        if image_loader is not None:
            if image_paths is not None:
                raise GapkitError("give image_paths or image_loader, not both")
            image_paths = [f"{IMAGES_DIR}/{i:07d}.png" for i in range(pe.n_image)]  # relative to the index
        docs = docs_from_pairs(pe, roles, image_paths, fields)
    check_replaceable_dir(out)  # before any work: never replace a user's folder
    corr, fit_info, fit_items = Correction(None), None, []
    if correction != "none":
        fit_pe, fit_info, fit_items = _fit_data(pe, fit, fit_fraction, max_fit_images, seed)
        corr = fit_correction(correction, fit_pe, roles, fixer_params, fuse_weight)
        if corr.kind == "calibrated":
            fit_info["priors"] = corr.set_corpus_priors({d.role: d.n for d in docs}, prior)
    enc = encoder_obj
    if encoder is not None and enc is None:
        from ..encoders import get_encoder

        enc = get_encoder(encoder, checkpoint=encoder_checkpoint, **dict(encoder_kwargs or {}))
    if enc is not None:
        _check_encoder(enc, pe.dim, getattr(pe, "metadata", {}))
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        backends = {"raw": create_backend(backend, tmp / "backend-raw", pe.dim, **dict(backend_params or {}))}
        if corr.moves_vectors:
            backends["corrected"] = create_backend(backend, tmp / "backend-corrected", pe.dim, **dict(backend_params or {}))
        _write_vectors(tmp, docs, corr, backends, fuse_weight, progress)
        for b in backends.values():
            b.finish()
        _write_docs(tmp / "docs.parquet", docs)
        if image_loader is not None:
            _export_images(tmp / IMAGES_DIR, image_loader, pe.n_image, progress)
        if corr.fixer is not None:
            corr.fixer.save(tmp / "correction")
        if fit_items:
            (tmp / "fit_items.json").write_text(json.dumps(fit_items), encoding="utf-8")
        spec = None
        if enc is not None:
            from .encoding import encoder_spec

            spec = encoder_spec(enc, encoder or getattr(enc, "name", "?"), encoder_checkpoint, encoder_kwargs, tmp)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "gapkit_version": index_version(),
            "dim": pe.dim, "roles": {d.role: d.n for d in docs}, "fuse_weight": fuse_weight, "encoder": spec,
            "correction": {"kind": corr.kind, "name": corr.name,
                           "priors": (fit_info or {}).get("priors", {}) if corr.kind == "calibrated" else {},
                           "params": dict(fixer_params or {})},
            "fit": fit_info, "backends": {k: b.meta() for k, b in backends.items()},
            "source": _source_text(source), "build_seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        meta["content_hash"] = content_hash(tmp)
        (tmp / "index.json").write_text(dumps_json(meta) + "\n", encoding="utf-8")
    return open_index(out)


def _source_text(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__


def _check_encoder(enc: Any, dim: int, metadata: dict[str, Any]) -> None:
    """The encoder must produce vectors of the documents' dimension and, when the embeddings
    record which weights made them, those weights."""
    if int(getattr(enc, "embed_dim", 0) or 0) != dim:
        raise GapkitError(f"encoder {getattr(enc, 'name', '?')} embeds into {getattr(enc, 'embed_dim', 0)} "
                          f"dimensions, the documents have {dim}")
    manifest = metadata.get("manifest") or metadata
    want = manifest.get("weights_hash") if isinstance(manifest, dict) else None
    if want and hasattr(enc, "weights_hash") and enc.weights_hash() != want:
        raise GapkitError(f"encoder {enc.name} is not the model these embeddings were made with (weights hash "
                          f"{enc.weights_hash()} vs {want})")


def _write_vectors(tmp: Path, docs: list[RoleDocs], corr: Correction, backends: dict[str, Any],
                   fuse_weight: float, progress: bool) -> None:
    from tqdm.auto import tqdm

    total = sum(d.n for d in docs)
    bar = tqdm(total=total, unit="doc", desc="index", disable=not progress, file=sys.stderr)
    with open(tmp / "vectors.f32", "wb") as f:
        for d in sorted(docs, key=lambda d: ROLES.index(d.role)):  # storage order: grouped by role
            for parts in d.chunks():
                raw = raw_rows(d.role, parts, fuse_weight)
                f.write(np.ascontiguousarray(raw, dtype="<f4").tobytes())
                backends["raw"].add(raw, d.role)
                if "corrected" in backends:
                    backends["corrected"].add(corr.doc_rows(d.role, parts, fuse_weight), d.role)
                bar.update(raw.shape[0])
    bar.close()


IMAGES_DIR = "images"
THUMB = 256


def _export_images(folder: Path, loader: Any, n: int, progress: bool) -> None:
    """PNG thumbnails of images 0..n-1 (longest side <= THUMB) as folder/NNNNNNN.png."""
    from tqdm.auto import tqdm

    folder.mkdir()
    for i in tqdm(range(n), desc="thumbnails", unit="img", disable=not progress, file=sys.stderr):
        im = loader(i).convert("RGB")
        im.thumbnail((THUMB, THUMB))
        im.save(folder / f"{i:07d}.png", compress_level=1)  # zlib level 1: half the time of 6, a few % larger


def _write_docs(path: Path, docs: list[RoleDocs]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ordered = sorted(docs, key=lambda d: ROLES.index(d.role))
    cols: dict[str, list[str]] = {"id": [], "role": [], "item": [], "payload": []}
    for d in ordered:
        cols["id"].extend(d.ids)
        cols["role"].extend([d.role] * d.n)
        cols["item"].extend(d.items)
        cols["payload"].extend(json.dumps(p, ensure_ascii=False, allow_nan=False) for p in d.payloads)
    if len(set(cols["id"])) != len(cols["id"]):
        raise GapkitError("document ids are not unique")
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()}), path)


def build_index_from_dataset(dataset: Any, encoder: str, *, out: str | Path, split: str = "test", limit: int | None = None,
                             split_seed: int = 0, checkpoint: str | Path | None = None,
                             encoder_kwargs: dict[str, Any] | None = None, batch_size: int = 64,
                             cache_dir: Any = None, progress: bool = False, max_thumbnails: int = 50_000,
                             **kw: Any) -> MixedIndex:
    """Embed a dataset (name or path; through the embedding cache) with `encoder`, then build_index.
    Image files of the dataset are registered in the payloads (image_path); images that are not
    files (rendered or array datasets, up to max_thumbnails) are saved as thumbnails in the index."""
    from ..data import load_dataset
    from ..data.dataset import FileImages
    from ..encoders import extract, get_encoder

    ds = load_dataset(dataset, split, split_seed, limit=limit, cache_dir=cache_dir) if isinstance(dataset, (str, Path)) \
        else dataset
    enc = get_encoder(encoder, checkpoint=checkpoint, **dict(encoder_kwargs or {}))
    pe = extract(enc, ds, batch_size=batch_size, cache_dir=cache_dir, progress=progress)
    files = isinstance(ds.images, FileImages)
    paths = list(ds.images.paths) if files else None
    loader = ds.image if not files and ds.n_images <= max_thumbnails else None  # rendered images: thumbnails
    return build_index(pe, out=out, encoder=encoder, encoder_checkpoint=checkpoint, encoder_kwargs=encoder_kwargs,
                       encoder_obj=enc, image_paths=paths, image_loader=loader, progress=progress, **kw)
