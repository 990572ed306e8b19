"""A tiny image+caption dataset on disk (coloured shapes, two captions each, two hostile captions)
and a search index over it with a real (random-init) encoder, for the serve tests."""
from __future__ import annotations

import json
from pathlib import Path

XSS_SCRIPT = "<script>window.__xss=1</script> red"
XSS_IMG = '<img src=x onerror="window.__xss=2"> green'
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 220), "yellow": (240, 210, 20)}
SHAPES = ("square", "circle", "triangle", "cross")


def make_dataset(root: Path) -> Path:
    """16 PNG images with captions; returns the JSONL file."""
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for ci, (cname, rgb) in enumerate(COLOURS.items()):
        for si, shape in enumerate(SHAPES):
            im = Image.new("RGB", (64, 64), "white")
            d = ImageDraw.Draw(im)
            if shape == "square":
                d.rectangle([12, 12, 52, 52], fill=rgb)
            elif shape == "circle":
                d.ellipse([12, 12, 52, 52], fill=rgb)
            elif shape == "triangle":
                d.polygon([(32, 8), (56, 56), (8, 56)], fill=rgb)
            else:
                d.rectangle([26, 8, 38, 56], fill=rgb)
                d.rectangle([8, 26, 56, 38], fill=rgb)
            name = f"{cname}-{shape}.png"
            im.save(root / name)
            caps = [f"a {cname} {shape}", f"{shape} in {cname}"]
            caps += [XSS_SCRIPT] if (ci, si) == (0, 0) else [XSS_IMG] if (ci, si) == (1, 1) else []
            lines.append(json.dumps({"image": name, "caption": caps}))
    out = root / "data.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def make_index(root: Path, correction: str = "calibrated", backend: str = "faiss") -> Path:
    from gapkit.search import build_index_from_dataset

    data = make_dataset(root / "data")
    out = root / "index"
    build_index_from_dataset(str(data), "gapkit:tiny-vit", out=out, split="all", correction=correction,
                             backend=backend, fit_fraction=0.5)
    return out
