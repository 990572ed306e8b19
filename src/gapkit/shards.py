"""Shard folders: list the shards of a large embedding set, read one, write its fixed twin.

A shard folder is one of
  clip-retrieval   ROOT/img_emb/img_emb_{k}.npy + ROOT/text_emb/text_emb_{k}.npy (+ metadata/metadata_{k}.parquet)
  embed dirs       ROOT/*/embeddings.safetensors (e.g. `gapkit embed --shard auto` output), or ROOT itself
  parquet          ROOT/*.parquet, each with an image and a text vector column (image_emb / text_emb, ...)
  npy stacks       ROOT/*.npy, each a (2, N, D) stack
Every shard holds 1:1 pairs. `list_shards` reads only headers (row counts and dimensions), so a
driver can plan 10,000 shards without touching their data; `Shard.first_row` is the global row of
the shard's first pair (shards in natural order), which keeps reservoir keys and seeded fixers
identical to a single pass. Mixed dimensions are refused up front (one line naming both shards).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GapkitError

LAYOUTS = ("clip-retrieval", "embed-dirs", "parquet", "npy-stacks")


@dataclass(frozen=True)
class Shard:
    """One shard: its layout, its name (k for clip-retrieval, a file or folder name otherwise), the
    files that hold it, its row count, dimension and the global row of its first pair."""

    layout: str
    name: str
    files: tuple[str, ...]
    rows: int
    dim: int | None
    first_row: int = 0


def _natural(p: Path) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


def _npy_shape(p: Path) -> tuple[int, ...]:
    from .embeddings import load_array

    return tuple(load_array(p, mmap=True).shape)


def _clip_retrieval(root: Path) -> list[Shard]:
    from .embeddings import _shard_files

    imgs, txts = _shard_files(root / "img_emb", "img_emb"), _shard_files(root / "text_emb", "text_emb")
    if [f.name.split("_")[-1] for f in imgs] != [f.name.split("_")[-1] for f in txts]:
        raise GapkitError(f"{root}: image and text shards do not match ({len(imgs)} vs {len(txts)} files)")
    out = []
    for fi, ft in zip(imgs, txts):
        si, st = _npy_shape(fi), _npy_shape(ft)
        if len(si) != 2 or len(st) != 2 or si[0] != st[0]:
            raise GapkitError(f"{fi.name} has shape {si} but {ft.name} has shape {st}; expected (N, D) each, same N")
        k = fi.stem.split("_")[-1]
        meta = root / "metadata" / f"metadata_{k}.parquet"
        files = (str(fi), str(ft)) + ((str(meta),) if meta.is_file() else ())
        out.append(Shard("clip-retrieval", k, files, si[0], si[1] if si[1] == st[1] else -1))
    return out


def _embed_dir_shard(d: Path) -> Shard:
    from safetensors import safe_open

    f = d / "embeddings.safetensors"
    try:
        with safe_open(str(f), "np") as st:
            img, txt = st.get_slice("image").get_shape(), st.get_slice("text").get_shape()
            one_to_one = "text_to_image" not in st.keys() or img[0] == txt[0]
    except Exception as exc:  # header errors of safetensors
        raise GapkitError(f"{f}: unreadable embed directory ({exc})") from None
    if not one_to_one or img[0] != txt[0]:
        raise GapkitError(f"{d}: sharded commands need 1:1 pairs (this shard has {img[0]} images, {txt[0]} texts)")
    return Shard("embed-dirs", d.name, (str(d),), int(img[0]), int(img[1]) if img[1] == txt[1] else -1)


def _parquet_shard(f: Path) -> Shard:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .embeddings import IMAGE_KEYS, TEXT_KEYS

    try:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
    except Exception as exc:
        raise GapkitError(f"{f}: unreadable parquet file ({type(exc).__name__}: {exc})") from None
    dims = {}
    for keys in (IMAGE_KEYS, TEXT_KEYS):
        name = next((n for n in schema.names if n.lower() in keys), None)
        if name is None:
            raise GapkitError(f"{f}: no image/text vector columns (found: {', '.join(schema.names)})")
        t = schema.field(name).type
        dims[name] = t.list_size if pa.types.is_fixed_size_list(t) else None
    d = set(dims.values())
    dim = None if None in d else (d.pop() if len(d) == 1 else -1)
    return Shard("parquet", f.name, (str(f),), int(pf.metadata.num_rows), dim)


def _stack_shard(f: Path) -> Shard:
    shape = _npy_shape(f)
    if len(shape) != 3 or shape[0] != 2:
        raise GapkitError(f"{f}: expected a (2, N, D) stack of image and text embeddings, got shape {shape}")
    return Shard("npy-stacks", f.name, (str(f),), shape[1], shape[2])


def detect_layout(root: Path) -> str:
    """Which of LAYOUTS the folder `root` uses (GapkitError when none)."""
    if not root.is_dir():
        raise GapkitError(f"{root}: not a folder of shards (a sharded run reads a folder)")
    if (root / "img_emb").is_dir():
        return "clip-retrieval"
    if (root / "embeddings.safetensors").is_file() or any(root.glob("*/embeddings.safetensors")):
        return "embed-dirs"
    if any(root.glob("*.parquet")):
        return "parquet"
    if any(root.glob("*.npy")):
        return "npy-stacks"
    raise GapkitError(f"{root}: no shards found (expected img_emb/ + text_emb/, embed directories, *.parquet "
                      "or (2, N, D) *.npy stacks)")


def list_shards(path: str | Path) -> list[Shard]:
    """Every shard of the folder `path`, in natural order, with global first rows; headers only."""
    root = Path(path)
    if not root.exists():
        raise GapkitError(f"file not found: {root}")
    layout = detect_layout(root)
    if layout == "clip-retrieval":
        shards = _clip_retrieval(root)
    elif layout == "embed-dirs":
        dirs = [root] if (root / "embeddings.safetensors").is_file() else \
            sorted((d.parent for d in root.glob("*/embeddings.safetensors")), key=_natural)
        shards = [_embed_dir_shard(d) for d in dirs]
    elif layout == "parquet":
        shards = [_parquet_shard(f) for f in sorted(root.glob("*.parquet"), key=_natural)]
    else:
        shards = [_stack_shard(f) for f in sorted(root.glob("*.npy"), key=_natural)]
    if not shards:
        raise GapkitError(f"{root}: no shards found")
    _check_dims(shards, root)
    out, row = [], 0
    for s in shards:
        out.append(replace(s, first_row=row))
        row += s.rows
    return out


def _check_dims(shards: list[Shard], root: Path) -> None:
    for s in shards:
        if s.dim == -1:
            raise GapkitError(f"{root}: shard {s.name} has image and text rows of different dimensions")
    known = [s for s in shards if s.dim is not None]
    for s in known[1:]:
        if s.dim != known[0].dim:
            raise GapkitError(f"{root}: mixed dimensions: shard {known[0].name} has dim {known[0].dim}, "
                              f"shard {s.name} has dim {s.dim}")


def read_shard(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) of one shard, (n, D) each; memory-mapped for .npy layouts."""
    from .embeddings import _read_npy, load_embeddings

    if shard.layout == "clip-retrieval":
        image, text = (_read_npy(Path(f), True) for f in shard.files[:2])
    else:
        pe = load_embeddings(shard.files[0], mmap=True)
        if not pe.one_to_one:
            raise GapkitError(f"{shard.files[0]}: sharded commands need 1:1 pairs (this shard has a text_to_image map)")
        image, text = pe.image, pe.text
    if image.shape[0] != shard.rows:
        raise GapkitError(f"shard {shard.name} changed while running ({image.shape[0]} rows, listed {shard.rows})")
    return image, text


# ----------------------------------------------------------------------------------- writing
def write_like(shard: Shard, src_root: str | Path, out_root: str | Path, image: np.ndarray, text: np.ndarray) -> None:
    """Write fixed rows of `shard` under `out_root` in the layout it came in (each file atomically);
    metadata parquet files, captions and ids travel with it unchanged."""
    from .atomic import atomic_path

    out_root = Path(out_root)
    if shard.layout == "clip-retrieval":
        img_f, txt_f = (Path(f) for f in shard.files[:2])
        for sub, f, a in (("img_emb", img_f, image), ("text_emb", txt_f, text)):
            _save_npy(out_root / sub / f.name, a)
        if len(shard.files) > 2:
            meta = Path(shard.files[2])
            with atomic_path(out_root / "metadata" / meta.name) as tmp:
                shutil.copyfile(meta, tmp)
    elif shard.layout == "npy-stacks":
        with atomic_path(out_root / shard.name) as tmp:
            stack = np.lib.format.open_memmap(tmp, mode="w+", dtype=_float_dtype(image), shape=(2, *image.shape))
            stack[0], stack[1] = image, text
            stack.flush()
            del stack
    elif shard.layout == "parquet":
        _write_parquet_like(Path(shard.files[0]), out_root / shard.name, image, text)
    else:
        from .encoders.extraction import load_embed_dir, save_embed_dir

        src = Path(shard.files[0])
        pe = load_embed_dir(src)
        dst = out_root if src.resolve() == Path(src_root).resolve() else out_root / src.name
        save_embed_dir(pe.with_arrays(image, text), dst)


def _float_dtype(a: np.ndarray) -> Any:
    return np.float64 if a.dtype == np.float64 else np.float32


def _save_npy(path: Path, a: np.ndarray) -> None:
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(a, dtype=_float_dtype(a)))


def _write_parquet_like(src: Path, dst: Path, image: np.ndarray, text: np.ndarray) -> None:
    """A copy of parquet `src` whose image/text vector columns hold the new rows (others kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .atomic import atomic_path
    from .embeddings import IMAGE_KEYS, TEXT_KEYS

    table = pq.read_table(src)
    for keys, a in ((IMAGE_KEYS, image), (TEXT_KEYS, text)):
        name = next(n for n in table.column_names if n.lower() in keys)
        a = np.ascontiguousarray(a, dtype=np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
        table = table.set_column(table.column_names.index(name), name, col)
    with atomic_path(dst) as tmp:
        pq.write_table(table, tmp)


__all__ = ["Shard", "LAYOUTS", "list_shards", "read_shard", "write_like", "detect_layout"]
