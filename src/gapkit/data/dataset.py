"""ImageTextDataset: images, their captions and the caption -> image map.

Shapes and conventions (the same as PairedEmbeddings, one level earlier):
    n_images          N images, addressed by row i in [0, N)
    captions          M strings (M >= N for multi-caption data such as COCO or emoji)
    text_to_image     (M,) int64, caption j describes image text_to_image[j]
    labels            (N,) int64 class index per image, or None
    class_names       list of class names (labels index into it), or None
    image_ids         N stable string ids (file path relative to the root, member name, ...)

Images are decoded lazily through an `ImageSource`, so a dataset of 60k images costs only its
index in memory. Every source returns RGB PIL images.

Pixel limit: file and tar sources refuse (GapkitError) an image whose header says it has more than
`max_pixels` pixels (default DEFAULT_MAX_PIXELS = 16 MP) before decoding it: some real data holds
clip art of 168-623 MP, which takes seconds and gigabytes to decode (PIL itself refuses the largest
as a decompression bomb). Builders and readers check the same limit with `oversize` at load time
and skip such images with a counted warning, so extraction never meets one.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import GapkitError
from ..validation import check_mapping


DEFAULT_MAX_PIXELS = 16_000_000


def oversize(source: str | os.PathLike | bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the image at `source` (a path or the encoded bytes) is too large, or None when it is not.

    Only the header is read (`Image.open(...).size`; nothing is decoded), so this is cheap even
    for a 600-megapixel PNG. max_pixels=None means no limit of ours (PIL's own bomb limit stays).
    An unreadable file is not our concern here (None): the caller's decode reports it.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                w, h = im.size
    except Image.DecompressionBombError as exc:
        return f"above PIL's decompression-bomb limit ({exc})"
    except Exception:  # PIL raises many types for damaged files; decoding reports them
        return None
    if max_pixels is not None and w * h > max_pixels:
        return f"{w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:g} MP limit"
    return None


def _open_checked(source: str | bytes, max_pixels: int | None, where: str) -> Any:
    """Decode one image as RGB after checking its header size against max_pixels."""
    from PIL import Image

    why = oversize(source, max_pixels)
    if why:
        raise GapkitError(f"{where}: image too large to decode ({why}); raise max_pixels to allow it")
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im.load()
        return to_rgb(im)


class ImageSource(Protocol):
    """Lazy image storage: `len(source)` images, `source.load(i)` decodes image i as RGB."""

    def __len__(self) -> int: ...

    def load(self, i: int) -> Any: ...  # a PIL RGB image

    def subset(self, index: np.ndarray) -> "ImageSource": ...


def to_rgb(im: Any) -> Any:
    """Convert any PIL image to RGB; transparent pixels become white (clip art, emoji)."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


@dataclass
class ArrayImages:
    """Images held in one uint8 array: (N, H, W) grey or (N, H, W, 3) RGB (may be memory-mapped)."""

    array: np.ndarray

    def __post_init__(self) -> None:
        if self.array.dtype != np.uint8 or self.array.ndim not in (3, 4):
            raise GapkitError(f"image array must be uint8 (N,H,W) or (N,H,W,3), got {self.array.dtype} {self.array.shape}")

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def load(self, i: int) -> Any:
        from PIL import Image

        a = np.asarray(self.array[i])
        return Image.fromarray(a, "L" if a.ndim == 2 else "RGB").convert("RGB")

    def subset(self, index: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.array[np.asarray(index)])


@dataclass
class FileImages:
    """Images stored as files; `paths` are absolute (already checked against the dataset root).

    `load` refuses images above `max_pixels` (None: no limit) without decoding them.
    """

    paths: list[str]
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Any:
        return _open_checked(self.paths[i], self.max_pixels, self.paths[i])

    def subset(self, index: np.ndarray) -> "FileImages":
        return FileImages([self.paths[int(k)] for k in index], self.max_pixels)


@dataclass
class TarImages:
    """Images stored inside (uncompressed) tar shards: (shard path, data offset, size) per image.

    Reading is one seek + read, no tar parsing per image. `load` refuses images above
    `max_pixels` (None: no limit) without decoding them.
    """

    members: list[tuple[str, int, int]]
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.members)

    def load(self, i: int) -> Any:
        shard, offset, size = self.members[i]
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        return _open_checked(data, self.max_pixels, f"{shard}@{offset}")

    def subset(self, index: np.ndarray) -> "TarImages":
        return TarImages([self.members[int(k)] for k in index], self.max_pixels)


@dataclass
class ImageTextDataset:
    """Images (lazy), captions, the caption -> image map, optional labels and class names."""

    images: ImageSource
    captions: list[str]
    text_to_image: np.ndarray
    image_ids: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    name: str = "dataset"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        mapping = check_mapping(np.asarray(self.text_to_image, dtype=np.int64), n, len(self.captions))
        self.text_to_image = mapping if mapping is not None else np.zeros(0, dtype=np.int64)
        if len(self.image_ids) != n:
            raise GapkitError(f"{self.name}: {len(self.image_ids)} image ids for {n} images")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise GapkitError(f"{self.name}: labels have shape {self.labels.shape}, expected ({n},)")
            if self.class_names is not None and n and int(self.labels.max()) >= len(self.class_names):
                raise GapkitError(f"{self.name}: a label exceeds the {len(self.class_names)} class names")

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> Any:
        """Image i as an RGB PIL image."""
        if not 0 <= i < self.n_images:
            raise IndexError(f"image index {i} out of range for {self.n_images} images")
        return self.images.load(int(i))

    def captions_of(self, i: int) -> list[str]:
        """All captions of image i, in dataset order."""
        return [self.captions[j] for j in np.flatnonzero(self.text_to_image == i)]

    def subset(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> "ImageTextDataset":
        """The images `index` (in that order) with all of their captions, re-indexed."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_images):
            raise GapkitError(f"{self.name}: subset index out of range for {self.n_images} images")
        new_row = np.full(self.n_images, -1, dtype=np.int64)
        new_row[idx] = np.arange(idx.size)
        keep = np.flatnonzero(new_row[self.text_to_image] >= 0)
        # Captions are grouped in the new image order so each image's captions stay contiguous.
        keep = keep[np.argsort(new_row[self.text_to_image[keep]], kind="stable")]
        return ImageTextDataset(
            images=self.images.subset(idx),
            captions=[self.captions[j] for j in keep],
            text_to_image=new_row[self.text_to_image[keep]],
            image_ids=[self.image_ids[int(k)] for k in idx],
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            name=name or self.name,
            info=dict(self.info),
        )

    def __len__(self) -> int:
        return self.n_images

    def __repr__(self) -> str:
        return (f"ImageTextDataset(name={self.name!r}, n_images={self.n_images}, "
                f"n_captions={self.n_captions}, classes={len(self.class_names or [])})")


def resolve_under(root: str | Path, rel: str, allow_roots: Sequence[str | Path] = ()) -> Path:
    """Join `rel` onto `root` (or take it as it is when absolute), refusing anything that ends up
    outside `root` and the extra `allow_roots` (gapkit embed/study --root DIR, repeatable).

    Refused: `..` components, and absolute paths or symlinks that resolve outside every allowed
    root. A manifest written by someone else must not make gapkit read /etc/passwd; absolute paths
    and symlinks as open_clip and clip-retrieval CSVs have them are fine under a root the user named.
    """
    if not rel or "\x00" in rel:
        raise GapkitError(f"empty or invalid path {rel!r} in the dataset manifest")
    if ".." in Path(rel.replace("\\", "/")).parts:
        raise GapkitError(f"path {rel!r} escapes the dataset root ('..' is refused)")
    roots = [Path(root).resolve(), *(Path(r).resolve() for r in allow_roots)]
    p = Path(rel)
    absolute = p.is_absolute() or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":")
    full = p.resolve() if absolute else (roots[0] / p).resolve()
    if not any(full == r or r in full.parents for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        what = f"absolute path {rel!r}" if absolute else f"path {rel!r} (through a symlink)"
        raise GapkitError(f"{what} resolves outside the dataset root {allowed}; allow its folder with --root DIR")
    return full
