"""PairedEmbeddings: image rows, text rows and the map from each text to its image.

Shapes: image (N, D), text (M, D), text_to_image (M,) int64 with values in [0, N). When
text_to_image is None the pairs are 1:1 (M == N, text i describes image i). COCO-style data with
several captions per image is first-class: M > N and the map says which image each caption
describes.

Formats read and written (chosen by suffix; see `load_embeddings` / `save_embeddings`):
  .npy            one 2-D array (one modality) or a (2, N, D) stack (image, text), memory-mapped
  .npz            arrays "image", "text", optional "text_to_image" (or one array)
  .pt / .pth      a tensor or a dict of tensors, read with torch.load(weights_only=True)
  .safetensors    tensors "image", "text", optional "text_to_image" (or one tensor)
  .parquet        one vector column per modality (list / fixed-size list of floats)
  directory       a `gapkit embed` output directory: embeddings.safetensors (+ manifest.json,
                  captions.json with captions and image ids; one side only after `gapkit embed
                  --texts/--images`: read it with load_array), or clip-retrieval output:
                  img_emb/img_emb_*.npy, text_emb/text_emb_*.npy, metadata/metadata_*.parquet
Pickle files are never read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .atomic import atomic_dir, atomic_path
from .errors import GapkitError, GapkitTypeError, reading
from .validation import as_matrix, check_mapping, check_pairs, first_caption_rows, l2_normalize

IMAGE_KEYS = ("image", "images", "image_emb", "img_emb", "img", "image_embeddings", "image_features")
TEXT_KEYS = ("text", "texts", "text_emb", "txt_emb", "txt", "text_embeddings", "text_features")
MAP_KEYS = ("text_to_image",)
ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".parquet")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


@dataclass
class PairedEmbeddings:
    """Image embeddings (N, D), text embeddings (M, D) and the text -> image map (M,).

    Rows are validated on construction (finite, non-zero, same dim, map in range). Arrays are
    kept as given (possibly memory-mapped); call `normalized()` for L2-normalised float32 rows.
    """

    image: np.ndarray
    text: np.ndarray
    text_to_image: np.ndarray | None = None
    image_ids: list[str] | None = None
    text_ids: list[str] | None = None
    captions: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image, self.text, self.text_to_image = check_pairs(self.image, self.text, self.text_to_image)
        for name, seq, n in (("image_ids", self.image_ids, self.n_image), ("text_ids", self.text_ids, self.n_text),
                             ("captions", self.captions, self.n_text)):
            if seq is not None and len(seq) != n:
                raise GapkitError(f"{name}: {len(seq)} entries for {n} rows")

    @property
    def n_image(self) -> int:
        return int(self.image.shape[0])

    @property
    def n_text(self) -> int:
        return int(self.text.shape[0])

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])

    @property
    def one_to_one(self) -> bool:
        """True when text i describes image i for every i (M == N, identity map)."""
        if self.text_to_image is None:
            return True
        return self.n_text == self.n_image and bool(np.array_equal(self.text_to_image, np.arange(self.n_image)))

    @property
    def mapping(self) -> np.ndarray:
        """The (M,) text -> image map, the identity when pairs are 1:1."""
        return np.arange(self.n_text, dtype=np.int64) if self.text_to_image is None else self.text_to_image

    def normalized(self) -> "PairedEmbeddings":
        """A copy with L2-normalised float32 rows (metadata kept)."""
        return self._replace(l2_normalize(self.image, np.float32), l2_normalize(self.text, np.float32))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(image[text_to_image], text): one row pair per caption, shapes (M, D) and (M, D)."""
        if self.text_to_image is None:
            return self.image, self.text
        return np.asarray(self.image)[self.text_to_image], self.text

    def first_caption_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """1:1 pairs using the first caption of every image that has one: (K, D), (K, D).

        This is the convention for metrics defined on 1:1 pairs (docs/metrics.md).
        """
        if self.text_to_image is None:
            return self.image, self.text
        imgs, first = first_caption_rows(self.text_to_image)
        return np.asarray(self.image)[imgs], np.asarray(self.text)[first]

    def _replace(self, image: np.ndarray, text: np.ndarray) -> "PairedEmbeddings":
        return PairedEmbeddings(image, text, self.text_to_image, self.image_ids, self.text_ids,
                                self.captions, dict(self.metadata))

    def with_arrays(self, image: np.ndarray, text: np.ndarray) -> "PairedEmbeddings":
        """A copy holding new arrays of the same row counts (e.g. after a fixer)."""
        if image.shape[0] != self.n_image or text.shape[0] != self.n_text:
            raise GapkitError("with_arrays: row counts must not change")
        return self._replace(image, text)

    def __repr__(self) -> str:
        return (f"PairedEmbeddings(n_image={self.n_image}, n_text={self.n_text}, dim={self.dim}, "
                f"one_to_one={self.one_to_one})")


# ----------------------------------------------------------------------------------- reading
def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise GapkitError(f"file not found: {p}")
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise GapkitTypeError(
            f"{p}: pickle files are not read (unpickling untrusted data can run code); "
            "save the arrays as .npy, .npz or .safetensors"
        )
    if p.is_file() and p.suffix.lower() not in ARRAY_SUFFIXES:
        raise GapkitError(
            f"{p}: unknown format '{p.suffix or '(no suffix)'}'; expected one of "
            f"{', '.join(ARRAY_SUFFIXES)}, a gapkit embed directory or a clip-retrieval output directory"
        )
    return p


def _read_npy(p: Path, mmap: bool) -> np.ndarray:
    with open(p, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise GapkitError(f"{p}: unreadable .npy file (no NumPy header)")
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise GapkitTypeError(f"{p}: holds pickled Python objects; refusing to unpickle") from None
        raise GapkitError(f"{p}: unreadable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise GapkitError(f"{p}: unreadable .npy file ({exc})") from None


def _read_dict(p: Path) -> dict[str, np.ndarray]:
    """All arrays in a .npz / .pt / .safetensors file as a name -> array dict."""
    suffix = p.suffix.lower()
    try:
        if suffix == ".npz":
            _check_npz_sizes(p)
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(p)))
        if suffix in (".pt", ".pth"):
            return _read_torch(p)
    except GapkitError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise GapkitTypeError(f"{p}: holds pickled Python objects; refusing to unpickle") from None
        raise GapkitError(f"{p}: unreadable {suffix} file ({exc})") from None
    except Exception as exc:  # zip, header and I/O errors of the three libraries
        raise GapkitError(f"{p}: unreadable {suffix} file ({type(exc).__name__}: {exc})") from None
    raise GapkitError(f"{p}: not an array-dictionary format")


# An .npz whose members decompress to more than this many times their compressed size, and to
# more than NPZ_BOMB_BYTES in all, is refused before any member is read: embeddings (float data)
# compress by ~1.1x, a zip bomb by 1000x.
NPZ_MAX_RATIO = 100
NPZ_BOMB_BYTES = 256 * 2**20


def _check_npz_sizes(p: Path) -> None:
    """Bound what reading the .npz `p` would allocate, from the zip directory, before reading it."""
    import zipfile

    from .validation import check_allocation

    with zipfile.ZipFile(p) as zf:
        infos = zf.infolist()
    raw = sum(i.file_size for i in infos)
    packed = max(sum(i.compress_size for i in infos), 1)
    if raw > NPZ_BOMB_BYTES and raw > NPZ_MAX_RATIO * packed:
        raise GapkitError(f"{p}: its arrays decompress to {raw / 2**30:.1f} GiB from {packed / 2**20:.1f} MiB "
                          f"(ratio {raw / packed:,.0f}); refusing a likely zip bomb (save real data as .npy or .safetensors)")
    check_allocation(raw, f"reading {p}")


def _read_torch(p: Path) -> dict[str, np.ndarray]:
    import pickle

    import torch

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GapkitTypeError(
            f"{p}: holds pickled Python objects other than tensors; refusing to unpickle "
            "(save a tensor or a dict of tensors)"
        ) from None
    if isinstance(obj, torch.Tensor):
        return {"arr_0": obj.float().numpy() if obj.is_floating_point() else obj.numpy()}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, torch.Tensor):
                out[str(k)] = v.float().numpy() if v.is_floating_point() else v.numpy()
        if not out:
            raise GapkitError(f"{p}: the dict holds no tensors")
        return out
    raise GapkitTypeError(f"{p}: expected a tensor or a dict of tensors, got {type(obj).__name__}")


def _pick(d: dict[str, np.ndarray], keys: tuple[str, ...]) -> str | None:
    lower = {k.lower(): k for k in d}
    for k in keys:
        if k in lower:
            return lower[k]
    return None


def _single_array(d: dict[str, np.ndarray], p: Path, key: str | None, side: str | None = None) -> np.ndarray:
    """The one array of `d` to read: `key` when given, else the only one, else the one named like
    `side` (image / text names), else a conventional single-array name; GapkitError listing the keys."""
    if key is not None:
        if key not in d:
            raise GapkitError(f"{p}: no array named '{key}' (found: {', '.join(sorted(d))}); pick one with --key NAME")
        return d[key]
    if len(d) == 1:
        return next(iter(d.values()))
    if side is not None and (k := _pick(d, IMAGE_KEYS if side == "image" else TEXT_KEYS)) is not None:
        return d[k]
    for k in ("embeddings", "embedding", "emb", "arr_0"):
        if k in d:
            return d[k]
    raise GapkitError(f"{p}: several arrays ({', '.join(sorted(d))}); say which one with --key NAME")


def _parquet_vectors(p: Path, column: str | None = None) -> dict[str, np.ndarray]:
    """Vector columns of a parquet file (list / fixed_size_list of numbers) as 2-D arrays."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p, columns=[column] if column else None)
    except Exception as exc:
        raise GapkitError(f"{p}: unreadable parquet file ({type(exc).__name__}: {exc})") from None
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                or pa.types.is_fixed_size_list(col.type)):
            continue
        if col.null_count:
            raise GapkitError(f"{p}: column '{name}' has {col.null_count} null rows")
        lengths = np.asarray(col.value_lengths()) if not pa.types.is_fixed_size_list(col.type) else None
        flat = col.flatten().to_numpy(zero_copy_only=False)
        n = len(col)
        if n == 0:
            raise GapkitError(f"{p}: column '{name}' is empty")
        if lengths is not None and (lengths != lengths[0]).any():
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            raise GapkitError(f"{p}: column '{name}' row {bad} has length {lengths[bad]}, expected {lengths[0]}")
        out[name] = flat.reshape(n, -1)
    if column and column not in out:
        raise GapkitError(f"{p}: column '{column}' is not a vector (list of numbers) column")
    if not out:
        raise GapkitError(f"{p}: no vector column (list of floats) found; columns: {', '.join(table.column_names)}")
    return out


def load_array(path: str | Path, key: str | None = None, mmap: bool = True, side: str | None = None) -> np.ndarray:
    """Read one array (a 2-D modality matrix, a (2, N, D) stack or a 1-D map) from any format.

    `key` names the array in a file (or embed directory) that holds several; without it the only
    array is read, or the one named for `side` ("image" / "text": e.g. an embed directory given as
    --image), and anything else ambiguous is a GapkitError listing the keys.
    """
    p = _check_path(path)
    if p.is_dir():
        if (p / EMBED_DIR_ARRAYS).is_file():
            return _embed_dir_side(p, key, side)
        raise GapkitError(f"{p}: is a directory but not a gapkit embed directory; a single-array file was expected")
    suffix = p.suffix.lower()
    if suffix == ".npy":  # one array: a --key meant for another input file is moot here
        return _read_npy(p, mmap)
    if suffix == ".parquet":
        return _single_array(_parquet_vectors(p, key), p, key, side)
    return _single_array(_read_dict(p), p, key, side)


def _embed_dir_side(root: Path, key: str | None, side: str | None) -> np.ndarray:
    """One array of an embed directory: `key`, else the `side` asked for, else its only side."""
    d = _read_dict(root / EMBED_DIR_ARRAYS)
    held = [s for s in ("image", "text") if s in d]
    if key is not None:
        return _single_array(d, root, key)
    if side is not None:
        if side not in d:
            raise GapkitError(f"{root}: holds {' and '.join(held) or 'no'} embeddings, not {side} embeddings")
        return d[side]
    if len(held) == 1:
        return d[held[0]]
    raise GapkitError(f"{root}: holds image and text embeddings; choose one with --key image or --key text")


def embed_dir_side(path: str | Path) -> str | None:
    """"image" or "text" when `path` is an embed directory holding one side only (gapkit embed
    --images / --texts), else None. Reads the manifest only."""
    p = Path(path)
    man = _read_json_object(p / "manifest.json") if p.is_dir() else None
    sides = man.get("sides") if man else None
    return sides[0] if isinstance(sides, list) and len(sides) == 1 and sides[0] in ("image", "text") else None


def _sides_manifest(image: str | Path, text: str | Path) -> dict[str, Any] | None:
    """Model and dataset names of two embed directories paired with --image A --text B, so that
    records name them (e.g. "towers", "photos + queries.txt"); None when neither is one."""
    mans = [_read_json_object(Path(p) / "manifest.json") if Path(p).is_dir() else None for p in (image, text)]
    if not any(mans):
        return None
    models = [str(m.get("model")) for m in mans if m and m.get("model")]
    data = [str(m.get("dataset") or Path(p).name) if m else Path(p).name for m, p in zip(mans, (image, text))]
    return {"model": " + ".join(dict.fromkeys(models)) or None, "dataset": " + ".join(dict.fromkeys(data))}


def split_keys(key: str | None) -> tuple[str | None, str | None]:
    """--key for a paired input: "IMAGE,TEXT" -> (IMAGE, TEXT); one name -> that name for both."""
    if key is None:
        return None, None
    parts = [k.strip() for k in key.split(",")]
    if len(parts) > 2 or not all(parts):
        raise GapkitError(f"--key {key!r}: give one array name, or IMAGE,TEXT for a file holding both")
    return (parts[0], parts[-1])


def _stack_to_pair(a: np.ndarray, p: Path) -> tuple[np.ndarray, np.ndarray]:
    if a.ndim != 3 or a.shape[0] != 2:
        raise GapkitError(
            f"{p}: expected a (2, N, D) stack of image and text embeddings, got shape {tuple(a.shape)}"
        )
    return a[0], a[1]


def load_embeddings(
    path: str | Path | None = None,
    *,
    image: str | Path | None = None,
    text: str | Path | None = None,
    text_to_image: str | Path | np.ndarray | None = None,
    mmap: bool = True,
    key: str | None = None,
) -> PairedEmbeddings:
    """Load PairedEmbeddings from one file holding both modalities, or from two files.

    `path`: a (2, N, D) .npy stack, an .npz/.safetensors/.pt with "image" and "text" arrays (and
    optional "text_to_image"), a parquet with two vector columns, a `gapkit embed` output
    directory (embeddings.safetensors + manifest.json + captions.json) or a clip-retrieval directory.
    `image` / `text`: two single-modality files in any format; `text_to_image`: an index file
    (.npy, .json list, or .txt with one integer per line) or an array.
    `key`: the array names when they are not image/text: "IMAGE,TEXT" (one file, or one name in
    each of two files), or one name (a (2, N, D) stack in `path`; the same name in both files).
    """
    if path is not None and (image is not None or text is not None):
        raise GapkitError("give either one embeddings file or --image and --text, not both")
    meta: dict[str, Any] = {}
    mapping: Any = None
    captions = None
    if path is not None:
        p = _check_path(path)
        meta["source"] = str(p)
        if p.is_dir() and (p / EMBED_DIR_ARRAYS).is_file():
            if key is not None:
                raise GapkitError(f"{p}: --key does not apply to a paired embed directory (its arrays are image and text)")
            return _read_embed_dir(p, text_to_image)
        if p.is_dir():
            img, txt, captions = _read_clip_retrieval(p)
            meta["layout"] = "clip-retrieval"
        elif p.suffix.lower() == ".npy":
            img, txt = _stack_to_pair(_read_npy(p, mmap), p)
            meta["layout"] = "stack"
        elif key is not None:
            img, txt, mapping = _keyed_pair(p, key)
            meta.update(layout="keyed", format=p.suffix.lower())
        else:
            d = _parquet_vectors(p) if p.suffix.lower() == ".parquet" else _read_dict(p)
            ki, kt, km = _pick(d, IMAGE_KEYS), _pick(d, TEXT_KEYS), _pick(d, MAP_KEYS)
            if ki is None or kt is None:
                if len(d) == 1:
                    img, txt = _stack_to_pair(next(iter(d.values())), p)
                    meta["layout"] = "stack"
                else:
                    raise GapkitError(
                        f"{p}: cannot tell image from text arrays (found: {', '.join(sorted(d))}); "
                        "name them with --key IMAGE,TEXT"
                    )
            else:
                img, txt = d[ki], d[kt]
                mapping = d[km] if km else None
                meta["layout"] = "dict"
            meta["format"] = p.suffix.lower()
    else:
        if image is None or text is None:
            raise GapkitError("both image and text embeddings are needed (--image and --text)")
        ki, kt = split_keys(key)
        img, txt = load_array(image, ki, mmap=mmap, side="image"), load_array(text, kt, mmap=mmap, side="text")
        meta.update(layout="separate", image_source=str(image), text_source=str(text))
        if man := _sides_manifest(image, text):
            meta["manifest"] = man
    if text_to_image is not None:
        if mapping is not None:
            raise GapkitError("a text_to_image map was given twice (in the file and separately)")
        mapping = load_mapping(text_to_image) if isinstance(text_to_image, (str, Path)) else text_to_image
    return PairedEmbeddings(img, txt, mapping, captions=captions, metadata=meta)


EMBED_DIR_ARRAYS = "embeddings.safetensors"


def _keyed_pair(p: Path, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, text, map or None) of a several-array file named by --key IMAGE,TEXT (or one stack)."""
    d = _parquet_vectors(p) if p.suffix.lower() == ".parquet" else _read_dict(p)
    ki, kt = split_keys(key)
    if ki == kt:
        img, txt = _stack_to_pair(_single_array(d, p, ki), p)
    else:
        img, txt = _single_array(d, p, ki), _single_array(d, p, kt)
    km = _pick(d, MAP_KEYS)
    return img, txt, (d[km] if km else None)


def _read_json_object(p: Path) -> dict[str, Any] | None:
    """A JSON object from `p`, None when the file is absent; GapkitError when it is not valid JSON."""
    if not p.is_file():
        return None
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GapkitError(f"{p}: unreadable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise GapkitError(f"{p}: expected a JSON object")
    return obj


def _read_embed_dir(root: Path, text_to_image: Any = None) -> PairedEmbeddings:
    """A `gapkit embed` output directory: image/text/text_to_image from embeddings.safetensors, the
    manifest as metadata["manifest"], captions and image ids from captions.json when present."""
    d = _read_dict(root / EMBED_DIR_ARRAYS)
    held = [s for s in ("image", "text") if s in d]
    if len(held) == 1:
        other = "text" if held[0] == "image" else "image"
        raise GapkitError(f"{root}: holds {held[0]} embeddings only (gapkit embed --{held[0]}s); this needs image "
                          f"and text: pair it with {other} embeddings (--image A --text B) or embed a dataset")
    if "image" not in d or "text" not in d:
        raise GapkitError(f"{root / EMBED_DIR_ARRAYS}: no 'image' and 'text' tensors (found: {', '.join(sorted(d))})")
    if text_to_image is not None and "text_to_image" in d:
        raise GapkitError("a text_to_image map was given twice (in the embed directory and separately)")
    mapping = d.get("text_to_image")
    if text_to_image is not None:
        mapping = load_mapping(text_to_image) if isinstance(text_to_image, (str, Path)) else text_to_image
    manifest = _read_json_object(root / "manifest.json")
    caps = _read_json_object(root / "captions.json") or {}
    meta: dict[str, Any] = {"source": str(root), "layout": "embed-dir", "format": ".safetensors"}
    if manifest is not None:
        meta["manifest"] = manifest
    return PairedEmbeddings(d["image"], d["text"], mapping, image_ids=caps.get("image_ids"),
                            captions=caps.get("captions"), metadata=meta)


def load_mapping(path: str | Path) -> np.ndarray:
    """Read a text -> image index map from .npy, .json (a list) or .txt/.csv (one int per line)."""
    p = Path(path)
    if not p.is_file():
        raise GapkitError(f"file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return _read_npy(p, mmap=False)
        if suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in data):
                raise GapkitError(f"{p}: expected a JSON list of integers")
            return np.asarray(data, dtype=np.int64)
        if suffix in (".txt", ".csv", ".tsv", ""):
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            return np.asarray([int(ln) for ln in lines], dtype=np.int64)
    except (ValueError, OverflowError, RecursionError, json.JSONDecodeError) as exc:
        if isinstance(exc, GapkitError):
            raise
        raise GapkitError(f"{p}: unreadable text_to_image map ({type(exc).__name__}: {exc})") from None
    return load_array(p, mmap=False)


def _shard_files(folder: Path, prefix: str) -> list[Path]:
    files = list(folder.glob(f"{prefix}_*.npy")) if folder.is_dir() else []
    num = re.compile(rf"{prefix}_(\d+)\.npy$")
    keyed = [(int(m.group(1)), f) for f in files if (m := num.search(f.name))]
    return [f for _, f in sorted(keyed)]


def iter_clip_retrieval_shards(path: str | Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (image, text) memory-mapped arrays shard by shard from a clip-retrieval directory.

    Shards are matched by number: img_emb/img_emb_{k}.npy with text_emb/text_emb_{k}.npy.
    """
    root = Path(path)
    imgs, txts = _shard_files(root / "img_emb", "img_emb"), _shard_files(root / "text_emb", "text_emb")
    if not imgs or not txts:
        raise GapkitError(
            f"{root}: not a clip-retrieval output directory (need img_emb/img_emb_*.npy and "
            "text_emb/text_emb_*.npy)"
        )
    if [f.name.split("_")[-1] for f in imgs] != [f.name.split("_")[-1] for f in txts]:
        raise GapkitError(f"{root}: image and text shards do not match ({len(imgs)} vs {len(txts)} files)")
    dim = None
    for fi, ft in zip(imgs, txts):
        a, b = _read_npy(fi, True), _read_npy(ft, True)
        for arr, f in ((a, fi), (b, ft)):
            if arr.ndim != 2:
                raise GapkitError(f"{f}: a shard must be a 2-D (rows, dim) array, got shape {arr.shape}")
            dim = arr.shape[1] if dim is None else dim
            if arr.shape[1] != dim:
                raise GapkitError(f"{f}: dimension {arr.shape[1]} differs from the other shards ({dim})")
        if a.shape[0] != b.shape[0]:
            raise GapkitError(f"{fi.name} has {a.shape[0]} rows but {ft.name} has {b.shape[0]}")
        yield a, b


def _read_clip_retrieval(root: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    parts = list(iter_clip_retrieval_shards(root))
    img = parts[0][0] if len(parts) == 1 else np.concatenate([a for a, _ in parts])
    txt = parts[0][1] if len(parts) == 1 else np.concatenate([b for _, b in parts])
    captions = None
    metas = sorted((root / "metadata").glob("metadata_*.parquet"),
                   key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
    if metas:
        import pyarrow.parquet as pq

        caps: list[str] = []
        for f in metas:
            with reading(f, "clip-retrieval metadata parquet"):
                t = pq.read_table(f)
            if "caption" not in t.column_names:
                caps = []
                break
            caps.extend("" if c is None else str(c) for c in t.column("caption").to_pylist())
        captions = caps if len(caps) == txt.shape[0] else None
    return img, txt, captions


# ----------------------------------------------------------------------------------- writing
def save_embeddings(pe: PairedEmbeddings, path: str | Path, layout: str | None = None) -> Path:
    """Write PairedEmbeddings atomically; the format follows the suffix (or `layout`).

    .npy -> a (2, N, D) stack (needs 1:1 pairs); .npz/.safetensors/.pt -> "image", "text" and
    "text_to_image" arrays; .parquet -> columns image_emb/text_emb (1:1 pairs); a path without a
    suffix or layout="clip-retrieval" -> a clip-retrieval directory (1:1 pairs).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if layout == "clip-retrieval" or (layout is None and suffix == ""):
        return _write_clip_retrieval(pe, p)
    img = np.ascontiguousarray(pe.image, dtype=np.float32)
    txt = np.ascontiguousarray(pe.text, dtype=np.float32)
    if suffix == ".npy":
        _need_one_to_one(pe, ".npy stack")
        with atomic_path(p) as tmp:
            np.save(tmp, np.stack([img, txt]))
        return p
    arrays: dict[str, np.ndarray] = {"image": img, "text": txt}
    if not pe.one_to_one:
        arrays["text_to_image"] = pe.mapping.astype(np.int64)
    with atomic_path(p) as tmp:
        if suffix == ".npz":
            np.savez(tmp, **arrays)
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, str(tmp), metadata={"gapkit": json.dumps({"n_image": pe.n_image, "n_text": pe.n_text})})
        elif suffix in (".pt", ".pth"):
            import torch

            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp)
        elif suffix == ".parquet":
            _need_one_to_one(pe, "parquet")
            _write_parquet({"image_emb": img, "text_emb": txt}, tmp)
        else:
            raise GapkitError(f"{p}: unknown output format '{suffix}'; use one of {', '.join(ARRAY_SUFFIXES)}")
    return p


def save_array(a: np.ndarray, path: str | Path) -> Path:
    """Write one 2-D array atomically in the format of the suffix."""
    p = Path(path)
    suffix = p.suffix.lower()
    a = np.ascontiguousarray(a)
    with atomic_path(p) as tmp:
        if suffix == ".npy":
            np.save(tmp, a)
        elif suffix == ".npz":
            np.savez(tmp, embeddings=a)
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({"embeddings": a}, str(tmp))
        elif suffix in (".pt", ".pth"):
            import torch

            torch.save(torch.from_numpy(a), tmp)
        elif suffix == ".parquet":
            _write_parquet({"embedding": a}, tmp)
        else:
            raise GapkitError(f"{p}: unknown output format '{suffix}'")
    return p


def _need_one_to_one(pe: PairedEmbeddings, what: str) -> None:
    if not pe.one_to_one:
        raise GapkitError(f"a {what} holds 1:1 pairs only; these embeddings have a text_to_image map (use .npz or .safetensors)")


def _write_parquet(columns: dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) for k, v in columns.items()}
    pq.write_table(pa.table(cols), path)


def _write_clip_retrieval(pe: PairedEmbeddings, root: Path, shard_size: int = 1_000_000) -> Path:
    _need_one_to_one(pe, "clip-retrieval directory")
    with atomic_dir(root) as tmp:
        for sub in ("img_emb", "text_emb", "metadata"):
            (tmp / sub).mkdir()
        for k, start in enumerate(range(0, pe.n_image, shard_size)):
            sl = slice(start, start + shard_size)
            np.save(tmp / "img_emb" / f"img_emb_{k}.npy", np.asarray(pe.image[sl], dtype=np.float32))
            np.save(tmp / "text_emb" / f"text_emb_{k}.npy", np.asarray(pe.text[sl], dtype=np.float32))
            if pe.captions is not None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"caption": pe.captions[sl]}), tmp / "metadata" / f"metadata_{k}.parquet")
    return root


def as_paired(x: Any, text: Any = None, text_to_image: Any = None) -> PairedEmbeddings:
    """Accept PairedEmbeddings, a (2, N, D) stack, or image + text arrays; return PairedEmbeddings."""
    if isinstance(x, PairedEmbeddings):
        return x
    if text is None:
        a = np.asarray(x)
        if a.ndim == 3 and a.shape[0] == 2:
            return PairedEmbeddings(a[0], a[1])
        raise GapkitError(f"expected a (2, N, D) stack or image and text arrays, got shape {tuple(a.shape)}")
    return PairedEmbeddings(x, text, text_to_image)


__all__ = [
    "PairedEmbeddings", "load_embeddings", "load_array", "load_mapping", "save_embeddings", "save_array",
    "iter_clip_retrieval_shards", "as_paired", "as_matrix", "check_mapping", "embed_dir_side", "split_keys",
]
