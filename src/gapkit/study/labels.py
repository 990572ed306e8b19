"""Class labels for a study's zero-shot evaluation: a label column of the user's CSV/TSV/JSONL file,
and the class prompts embedded with the study's own encoder (cached like the embeddings)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import GapkitError


def _rows(path: Path, ds: Any) -> list[dict[str, str]]:
    """The rows of the dataset file as dicts (CSV/TSV with the reader's separator, or JSONL)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".json"):
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    sep = (ds.info.get("columns") or {}).get("sep") or ("\t" if "\t" in text.split("\n", 1)[0] else ",")
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=sep))


def read_label_column(ds: Any, column: str, allow_roots: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """(labels (N,) int64, class names sorted) for the images of `ds` from `column` of its file.

    An image's label is that of its first row; images of the file are matched by their resolved path."""
    from ..data.dataset import resolve_under

    root = ds.info.get("root")
    source = ds.info.get("source") or ds.info.get("path")
    cols = ds.info.get("columns") or {}
    if not root or not cols.get("image"):
        raise GapkitError("--labels needs a CSV/TSV/JSONL dataset file (its image column and root are unknown here)")
    path = Path(source) if source else None
    if path is None or not path.is_file():
        cands = [p for p in Path(root).iterdir() if p.is_file() and p.name == ds.name]
        if not cands:
            raise GapkitError(f"--labels: cannot find the dataset file {ds.name} under {root}")
        path = cands[0]
    by_path: dict[str, str] = {}
    for row in _rows(path, ds):
        if column not in row:
            raise GapkitError(f"--labels {column}: no such column in {path.name} ({', '.join(row)})")
        try:
            full = str(resolve_under(root, str(row[cols["image"]]).strip(), allow_roots))
        except GapkitError:
            continue
        by_path.setdefault(full, str(row[column]).strip())
    paths = [str(p) for p in ds.images.paths] if hasattr(ds.images, "paths") else \
        [str(Path(root).resolve() / i) for i in ds.image_ids]
    missing = [i for i, p in zip(ds.image_ids, paths) if not by_path.get(p)]
    if missing:
        raise GapkitError(f"--labels {column}: {len(missing)} image(s) have no label, e.g. {missing[0]}")
    names = sorted({by_path[p] for p in paths})
    index = {n: k for k, n in enumerate(names)}
    return np.array([index[by_path[p]] for p in paths], dtype=np.int64), names


def prompt_embeddings(args: Any, class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(C, T, D) text embeddings of template.format(class) with the study's encoder, cached under
    $GAPKIT_CACHE/prompts/<hash of encoder spec and prompts>.npy (a warm study loads no model)."""
    from ..atomic import atomic_path
    from ..commands.embed import _spec, make_encoder
    from ..data.cache import cache_root

    texts = [t.format(c) for c in class_names for t in templates]
    key = hashlib.blake2b(json.dumps([_spec(args), texts], default=str).encode(), digest_size=16).hexdigest()
    path = cache_root(args.cache_dir) / "prompts" / f"{key}.npy"
    if path.is_file() and not args.no_cache:
        emb = np.load(path, allow_pickle=False)
    else:
        emb = np.asarray(make_encoder(args).encode_text(texts), dtype=np.float32)
        if not args.no_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, emb, allow_pickle=False)
    return emb.reshape(len(class_names), len(templates), -1)

