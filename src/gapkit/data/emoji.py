"""Emoji (Debian `fonts-noto-color-emoji` + `unicode-cldr-core`): rendered glyphs with several captions.

Images: every CLDR-annotated character or sequence whose code points all exist in the Noto Color
Emoji font, rendered with Pillow at the font's bitmap size 109 (`embedded_color=True`) onto a
white 136 x 136 canvas. Captions per emoji (duplicates removed, case-insensitive):
    1. the CLDR short name ("tts" annotation), e.g. "grinning face"
    2. the Unicode character name, lower case, when it differs (single code points only)
    3. the CLDR keywords joined with commas, e.g. "face, grin, grinning face"
so an image has 2-3 captions, like COCO's several captions per image.
"""
from __future__ import annotations

import os
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import GapkitError
from .dataset import ArrayImages, ImageTextDataset
from .debian import CLDR_ANNOTATIONS, EMOJI_FONT, require

FONT_SIZE = 109  # the only size of Noto Color Emoji's embedded bitmaps
CANVAS = 136
# Joiners and selectors need no glyph of their own.
_INVISIBLE = {0x200D, 0xFE0E, 0xFE0F}


def read_cldr_annotations(path: Path) -> dict[str, dict[str, object]]:
    """cp -> {"tts": short name, "keywords": [..]} from a CLDR annotations XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise GapkitError(f"{path}: unreadable CLDR annotations ({exc})") from None
    out: dict[str, dict[str, object]] = {}
    for node in root.iter("annotation"):
        cp, text = node.get("cp"), (node.text or "").strip()
        if not cp or not text:
            continue
        entry = out.setdefault(cp, {"tts": None, "keywords": []})
        if node.get("type") == "tts":
            entry["tts"] = text
        else:
            entry["keywords"] = [k.strip() for k in text.split("|") if k.strip()]
    return out


def emoji_captions(cp: str, entry: dict[str, object]) -> list[str]:
    """The captions of one emoji (see module docstring), deduplicated in order."""
    cands: list[str] = []
    if entry.get("tts"):
        cands.append(str(entry["tts"]))
    if len(cp) == 1:
        name = unicodedata.name(cp, "")
        if name:
            cands.append(name.lower())
    keywords = list(entry.get("keywords") or [])
    if keywords:
        cands.append(", ".join(keywords))
    seen, out = set(), []
    for c in cands:
        if c.lower() not in seen:
            seen.add(c.lower())
            out.append(c)
    return out


def _font_codepoints(font_path: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(font_path), lazy=True) as font:
        return set(font.getBestCmap())


def render_emoji(font: object, cp: str) -> np.ndarray | None:
    """One emoji as a (136, 136, 3) uint8 RGB array on white; None when nothing was drawn."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, (CANVAS - 128) // 2), cp, font=font, embedded_color=True)
    if canvas.getbbox() is None:
        return None
    white = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, canvas).convert("RGB"))


def build_emoji(max_images: int | None = None) -> ImageTextDataset:
    """Render all renderable CLDR-annotated emoji (or the first `max_images`) with their captions."""
    from PIL import ImageFont
    from tqdm.auto import tqdm

    font_path, cldr_path = require(EMOJI_FONT), require(CLDR_ANNOTATIONS)
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    cmap = _font_codepoints(font_path)
    annotations = read_cldr_annotations(cldr_path)
    # Only characters the colour font draws itself: plain symbols such as "_" are in CLDR too.
    todo = [(cp, e) for cp, e in annotations.items()
            if all(ord(c) in cmap for c in cp if ord(c) not in _INVISIBLE) and ord(cp[0]) >= 0x80]
    if max_images is not None:
        todo = todo[:max_images]
    images, captions, mapping, ids = [], [], [], []
    for cp, entry in tqdm(todo, desc="render emoji", disable=len(todo) < 200 or None):
        caps = emoji_captions(cp, entry)
        arr = render_emoji(font, cp) if caps else None
        if arr is None:
            continue
        captions += caps
        mapping += [len(images)] * len(caps)
        ids.append("U+" + "_".join(f"{ord(c):04X}" for c in cp))
        images.append(arr)
    if not images:
        raise GapkitError(f"no emoji could be rendered from {font_path}")
    return ImageTextDataset(
        images=ArrayImages(np.stack(images)), captions=captions, text_to_image=np.asarray(mapping),
        image_ids=ids, name="emoji",
        info={"font": str(font_path), "font_size": FONT_SIZE, "annotations": str(cldr_path)},
    )


def emoji_sources() -> list[str | os.PathLike]:
    """The files the emoji build depends on (for the cache key)."""
    return [require(EMOJI_FONT), require(CLDR_ANNOTATIONS)]
