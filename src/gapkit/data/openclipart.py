"""Open Clip Art (Debian `openclipart-png` + `openclipart-svg`): 8,121 clip-art images, 22 categories.

Images: the PNGs under png/CATEGORY/[SUB/]NAME.png. Captions come from the SVG twin
svg/CATEGORY/[SUB/]NAME.svg, from its RDF metadata (noisy, like web alt-text):
    1. dc:title of the work ("Provetta plasma sangue")
    2. dc:description, when present and different
    3. the dc:subject keywords joined with commas
Label: the top-level category (animals, buildings, ..., unsorted). Images whose SVG holds no
usable text are skipped with a counted warning, and so are images above `max_pixels` (default
16 MP; the package holds 19 PNGs of 168-623 MP that take gigabytes to decode): their size is read
from the PNG header, nothing is decoded.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from .dataset import DEFAULT_MAX_PIXELS, FileImages, ImageTextDataset, oversize
from .debian import OPENCLIPART_PNG_DIR, OPENCLIPART_SVG_DIR, require
from .problems import Skips

_WORK = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
_TITLE = re.compile(r"<dc:title>(.*?)</dc:title>", re.S)
_DESC = re.compile(r"<dc:description>(.*?)</dc:description>", re.S)
_SUBJECT = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.S)
_LI = re.compile(r"<rdf:li>(.*?)</rdf:li>", re.S)
_TAG = re.compile(r"<[^>]+>")
_METADATA_END = "</metadata>"


def _clean(s: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", s)).split())


def _read_metadata(svg: Path, max_bytes: int = 1 << 20) -> str:
    """The SVG text up to the end of its <metadata> block (metadata sits at the top; bodies are big)."""
    chunks, n = [], 0
    with open(svg, "rb") as f:
        while n < max_bytes:
            block = f.read(65536)
            if not block:
                break
            chunks.append(block)
            n += len(block)
            if _METADATA_END.encode() in block or b"</svg:metadata>" in block:
                break
    return b"".join(chunks).decode("utf-8", errors="replace")


def svg_captions(svg: Path) -> list[str]:
    """Title, description and joined keywords of an Open Clip Art SVG (deduplicated, non-empty)."""
    text = _read_metadata(svg)
    m = _WORK.search(text)
    work = m.group(0) if m else text
    cands = []
    for rx in (_TITLE, _DESC):
        hit = rx.search(work)
        if hit:
            cands.append(_clean(hit.group(1)))
    subj = _SUBJECT.search(work)
    if subj:
        words = [_clean(w) for w in _LI.findall(subj.group(1))]
        cands.append(", ".join(w for w in words if w))
    seen, out = set(), []
    for c in cands:
        if c and c.lower() not in seen:
            seen.add(c.lower())
            out.append(c)
    return out


def build_openclipart(max_images: int | None = None, strict: bool = False,
                      max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """All PNGs with captions from their SVG twins; label = top-level category.

    PNGs above `max_pixels` (None: no limit) are skipped as "image too large" (counted warning).
    """
    from tqdm.auto import tqdm

    png_root, svg_root = require(OPENCLIPART_PNG_DIR), require(OPENCLIPART_SVG_DIR)
    pngs = sorted(png_root.rglob("*.png"))
    if max_images is not None:
        pngs = pngs[:max_images]
    classes = sorted(p.name for p in png_root.iterdir() if p.is_dir())
    skips = Skips(strict=strict)
    paths, captions, mapping, ids, labels = [], [], [], [], []
    for png in tqdm(pngs, desc="openclipart metadata", disable=len(pngs) < 500 or None):
        rel = png.relative_to(png_root)
        svg = svg_root / rel.with_suffix(".svg")
        if not svg.is_file():
            skips.add("missing SVG twin", str(rel))
            continue
        caps = svg_captions(svg)
        if not caps:
            skips.add("no caption", str(rel))
            continue
        if why := oversize(png, max_pixels):
            skips.add("image too large", f"{rel} ({why})")
            continue
        captions += caps
        mapping += [len(paths)] * len(caps)
        paths.append(str(png))
        ids.append(str(rel.with_suffix("")))
        labels.append(classes.index(rel.parts[0]))
    skips.report("openclipart")
    return ImageTextDataset(
        images=FileImages(paths, max_pixels), captions=captions, text_to_image=np.asarray(mapping, dtype=np.int64),
        image_ids=ids, labels=np.asarray(labels, dtype=np.int64), class_names=classes, name="openclipart",
        info={"png_root": str(png_root), "svg_root": str(svg_root), "max_pixels": max_pixels, "skipped": skips.as_dict()},
    )
