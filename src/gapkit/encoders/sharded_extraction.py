"""Extraction into a resumable clip-retrieval shard folder, on any engine (in process or Ray).

    embed_to_shards(make_encoder, spec, ds, "out/", engine="ray", batch_size=256, actors=4)

Output (the layout clip-retrieval's inference writes, one row per (image, caption) pair, in the
dataset's caption order, so a multi-caption image appears once per caption):
    OUT/img_emb/img_emb_{k}.npy          (S_k, D) float32 image embeddings
    OUT/text_emb/text_emb_{k}.npy        (S_k, D) float32 caption embeddings
    OUT/metadata/metadata_{k}.parquet    text_index, image_index (global rows), image_id, caption
    OUT/manifest.json                    gapkit's embedding manifest + the shard plan (written last)
    OUT/embed-job.json                   the plan a rerun must match to resume (written first)
Shard k holds caption rows [k S, (k + 1) S), S = `shard_rows`. Pair row j of the concatenated
shards is (image[text_to_image[j]], text[j]) of the sequential `extract`: same ids, same order.

Work: items of `batch_size` caption rows flow through `engine.pipeline`: `decode_rows` (CPU tasks:
read and preprocess each distinct image of the batch once) -> `encode_rows` (encoder actors, one
model load per actor; an image with several captions in the batch is encoded once). The driver
receives the batches in order and writes each shard as soon as its rows are complete, every file
atomically; a shard is complete when its three files exist with the planned row count.
Resume: a rerun with the same plan skips complete shards (after a killed worker or driver).
Safety: OUT must be absent, empty or a gapkit output; a second job writing into the same OUT at
the same time is refused (gapkit.outputs.lock_directory: an flock the OS releases when a job dies).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..atomic import atomic_path, check_replaceable_dir, read_json_object, write_json_atomic
from ..errors import GapkitError

DEFAULT_SHARD_ROWS = 100_000
JOB_FILE = "embed-job.json"


# ------------------------------------------------------------------------------ the output folder
@contextmanager
def hold_output(out: Path) -> Iterator[None]:
    """Create OUT (absent, empty or a gapkit output only) and hold its lock for the job's lifetime.
    Unlike a run directory, OUT is kept when the job fails: its complete shards are the resume point."""
    from ..outputs import lock_directory, prepare_run_directory

    prepare_run_directory(out)
    with lock_directory(out):
        yield


def shard_paths(out: Path, k: int) -> tuple[Path, Path, Path]:
    return (out / "img_emb" / f"img_emb_{k}.npy", out / "text_emb" / f"text_emb_{k}.npy",
            out / "metadata" / f"metadata_{k}.parquet")


def _npy_rows(p: Path) -> int | None:
    try:
        return int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0])  # reads the header only
    except (OSError, ValueError, IndexError):
        return None


def shard_complete(out: Path, k: int, rows: int) -> bool:
    """All three files of shard k exist with `rows` rows (files are written atomically, so a file
    that exists is whole; a shard interrupted between files is redone)."""
    img, txt, meta = shard_paths(out, k)
    if not meta.is_file() or _npy_rows(img) != rows or _npy_rows(txt) != rows:
        return False
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(meta).metadata.num_rows == rows
    except Exception:  # a damaged file: redo the shard
        return False


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    """Write the plan, or check that the one already there (an earlier run) is the same job."""
    f = out / JOB_FILE
    if f.is_file():
        old = read_json_object(f, "embed job file")
        diff = [k for k in plan if old.get(k) != plan[k]]
        if diff:
            raise GapkitError(f"{out} holds another embedding job (different {', '.join(diff)}); choose another "
                              "--out or remove it")
    else:
        write_json_atomic(f, plan)


def write_shard(out: Path, k: int, rows: dict[str, np.ndarray], ds: Any) -> None:
    """Write shard k: image and text embeddings, then the metadata (its presence marks the shard done)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    img_f, txt_f, meta_f = shard_paths(out, k)
    for f, a in ((img_f, rows["img_emb"]), (txt_f, rows["text_emb"])):
        with atomic_path(f) as tmp:
            np.save(tmp, np.ascontiguousarray(a, dtype=np.float32))
    ti, ii = rows["text_index"].astype(np.int64), rows["image_index"].astype(np.int64)
    table = pa.table({"text_index": ti, "image_index": ii, "image_id": [str(ds.image_ids[i]) for i in ii],
                      "caption": [ds.captions[j] for j in ti]})
    with atomic_path(meta_f) as tmp:
        pq.write_table(table, tmp)


# ------------------------------------------------------------------------------ the two stages
@dataclass(frozen=True)
class EmbedContext:
    """What the workers need: the dataset and the encoder's preprocess (decode stage), the spec to
    build the encoder (actor stage) and its weights hash (checked once per actor)."""

    ds: Any
    preprocess: Callable[[Any], Any]
    make_encoder: Callable[[str], Any]  # device -> Encoder
    weights_hash: str


def decode_rows(ctx: EmbedContext, item: dict[str, int]) -> dict[str, np.ndarray]:
    """CPU stage: caption rows [start, stop) -> their indices and the preprocessed pixels of their
    images, (B, 3, H, W) float32 (each distinct image decoded once)."""
    import torch

    ti = np.arange(item["start"], item["stop"], dtype=np.int64)
    ii = np.asarray(ctx.ds.text_to_image, dtype=np.int64)[ti]
    uniq, inv = np.unique(ii, return_inverse=True)
    pix = torch.stack([ctx.preprocess(ctx.ds.image(int(i))) for i in uniq]).numpy()
    return {"text_index": ti, "image_index": ii, "pixels": pix[inv].astype(np.float32, copy=False)}


def load_encoder(ctx: EmbedContext, device: str) -> Any:
    """Actor set-up: build the encoder once and check that its weights are the driver's."""
    enc = ctx.make_encoder(device)
    if hasattr(enc, "prepare"):
        enc.prepare(ctx.ds, progress=False)
    if enc.weights_hash() != ctx.weights_hash:
        raise GapkitError(f"encoder {enc.name} on a worker has other weights than on the driver (a random-init "
                          "model needs a fixed --seed; a checkpoint must exist at the same path on every node)")
    return enc


def encode_rows(enc: Any, ctx: EmbedContext, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Actor stage: encode each distinct image of the batch once, every caption; pair rows out."""
    import torch

    ii = batch["image_index"]
    _, first, inv = np.unique(ii, return_index=True, return_inverse=True)
    with torch.inference_mode():
        img = enc.encode_image(torch.from_numpy(np.ascontiguousarray(batch["pixels"][first]))).numpy()
        txt = enc.encode_text([ctx.ds.captions[int(j)] for j in batch["text_index"]]).numpy()
    return {"text_index": batch["text_index"], "image_index": ii,
            "img_emb": img[inv].astype(np.float32, copy=False), "text_emb": txt.astype(np.float32, copy=False)}


# ------------------------------------------------------------------------------ the driver
def _items(todo: list[int], n_rows: int, shard_rows: int, batch_size: int) -> list[dict[str, int]]:
    items = []
    for k in todo:
        lo, hi = k * shard_rows, min((k + 1) * shard_rows, n_rows)
        items += [{"shard": k, "start": s, "stop": min(s + batch_size, hi)} for s in range(lo, hi, batch_size)]
    return items


def embed_to_shards(make_encoder: Callable[[str], Any], ds: Any, out: str | os.PathLike, *, engine: Any = "local",
                    address: str | None = None, batch_size: int = 256, shard_rows: int = DEFAULT_SHARD_ROWS,
                    actors: int = 1, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0,
                    progress: bool = True, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Embed every (image, caption) pair of `ds` into the shard folder `out` (see module doc).

    make_encoder(device) -> Encoder builds the model (on the driver once, for its hash and
    manifest, and once in every actor). Returns the manifest. `engine`: "local", "ray" or an Engine.
    """
    from ..engines import get_engine
    from .extraction import build_manifest, check_batching, dataset_fingerprint

    check_batching(batch_size, 0)
    if int(shard_rows) < 1 or int(actors) < 1 or float(gpus_per_actor) < 0:
        raise GapkitError("shard rows and actors must be >= 1 and GPUs per worker >= 0")
    out = Path(out)
    n_rows = len(ds.captions)
    n_shards = -(-n_rows // shard_rows)
    rows_of = [min(shard_rows, n_rows - k * shard_rows) for k in range(n_shards)]
    encoder = make_encoder("cpu")  # on the driver: hash, manifest, preprocess (before OUT is touched)
    if hasattr(encoder, "prepare"):
        encoder.prepare(ds, batch_size=batch_size, progress=progress)
    fp = dataset_fingerprint(ds)
    plan = {"format": "gapkit-embed-shards", "model": encoder.name, "weights_hash": encoder.weights_hash(),
            "dataset_fingerprint": fp, "n_rows": n_rows, "shard_rows": int(shard_rows), "spec": spec}
    check_replaceable_dir(out)

    def todo() -> list[int]:
        return [k for k in range(n_shards) if not shard_complete(out, k, rows_of[k])]

    # Connect before OUT is created, so an unreachable cluster leaves nothing behind.
    eng = get_engine(engine, address=address, progress=False) if todo() else None
    nodes: list[str] = []
    t0 = time.perf_counter()
    try:
        with hold_output(out):
            _check_plan(out, plan)
            left = todo()  # again, under the lock
            if left and eng is None:
                eng = get_engine(engine, address=address, progress=False)
            if left:
                ctx = EmbedContext(ds, encoder.preprocess, make_encoder, plan["weights_hash"])
                _run(eng, ctx, out, left, n_rows, int(shard_rows), batch_size, int(actors), float(gpus_per_actor),
                     float(cpus_per_actor), progress)
                nodes = sorted(getattr(eng, "nodes_used", ()))
            manifest = build_manifest(encoder, ds, None, None, fp)
            manifest.update(layout="clip-retrieval", rows="one per (image, caption) pair, in caption order",
                            n_rows=n_rows, n_shards=n_shards, shard_rows=int(shard_rows), dim=int(encoder.embed_dim),
                            engine=str(getattr(engine, "name", engine)), resumed_shards=n_shards - len(left), nodes=nodes,
                            seconds=round(time.perf_counter() - t0, 3))
            write_json_atomic(out / "manifest.json", manifest)
    finally:
        if eng is not None and eng is not engine:
            eng.close()
    return manifest


def _run(eng: Any, ctx: EmbedContext, out: Path, todo: list[int], n_rows: int, shard_rows: int, batch_size: int,
         actors: int, gpus: float, cpus: float, progress: bool) -> None:
    """Feed the pipeline and write every shard once its rows have all come back (in order)."""
    from tqdm.auto import tqdm

    items = _items(todo, n_rows, shard_rows, batch_size)
    for sub in ("img_emb", "text_emb", "metadata"):
        (out / sub).mkdir(exist_ok=True)
    bar = tqdm(total=sum(i["stop"] - i["start"] for i in items), desc="embed", unit="pair", disable=not progress)
    buf: dict[int, list[dict[str, np.ndarray]]] = {}
    got: dict[int, int] = {}
    for batch in eng.pipeline(items, decode_rows, load_encoder, encode_rows, context=ctx, actors=actors,
                              gpus_per_actor=gpus, cpus_per_actor=cpus, desc="embed"):
        bar.update(len(batch["text_index"]))
        shard_of = batch["text_index"] // shard_rows
        for k in np.unique(shard_of).tolist():  # an engine may merge or split blocks: group by shard
            sel = shard_of == k
            buf.setdefault(k, []).append({c: v[sel] for c, v in batch.items()})
            got[k] = got.get(k, 0) + int(sel.sum())
            if got[k] == min(shard_rows, n_rows - k * shard_rows):
                parts = buf.pop(k)
                rows = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
                order = np.argsort(rows["text_index"], kind="stable")  # robust to any arrival order
                write_shard(out, k, {c: v[order] for c, v in rows.items()}, ctx.ds)
    bar.close()
    if buf:
        raise GapkitError(f"the engine returned incomplete shards {sorted(buf)}; rerun to resume")


__all__ = ["embed_to_shards", "decode_rows", "encode_rows", "load_encoder", "shard_complete", "hold_output"]
