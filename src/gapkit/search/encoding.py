"""The index's query encoder: stored as a spec at build time, rebuilt (once) at query time.

spec = {"name": registry name, "checkpoint": weights file (copied into IDX/encoder/ when it is
small, else its absolute path), "kwargs": extra get_encoder arguments, "embed_dim": D,
"probe": the unit embedding of PROBE_TEXT}. The probe guards against answering queries with
other weights than the documents were embedded with: the rebuilt encoder must reproduce it.
towers:pca heads are fitted on data, so they are saved as a heads file and rebuilt from it.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError

PROBE_TEXT = "a photo of a red apple on a wooden table"
COPY_LIMIT = 256 * 2**20  # checkpoints up to 256 MiB travel inside the index
PROBE_TOL = 1e-3


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(v, np.float64).ravel()
    return a / np.linalg.norm(a)


def encoder_spec(encoder: Any, name: str, checkpoint: str | Path | None, kwargs: dict[str, Any] | None,
                 out_dir: Path) -> dict[str, Any]:
    """Describe `encoder` (already built from name/checkpoint/kwargs) so `load_query_encoder` can
    rebuild it; writes the files it needs under out_dir/encoder/."""
    spec: dict[str, Any] = {"name": name, "checkpoint": None, "kwargs": dict(kwargs or {}),
                            "embed_dim": int(encoder.embed_dim), "image": _has_image_tower(encoder)}
    enc_dir = out_dir / "encoder"
    if getattr(encoder, "kind", None) == "pca":  # data-fitted heads: save them, rebuild as trained heads
        from ..encoders.towers import save_heads

        enc_dir.mkdir(exist_ok=True)
        save_heads(encoder.heads, enc_dir / "heads.safetensors")
        spec.update(name="towers", checkpoint="encoder/heads.safetensors")
        spec["kwargs"].pop("heads", None)
    elif checkpoint is not None:
        src = Path(checkpoint)
        if src.is_file() and src.stat().st_size <= COPY_LIMIT:
            enc_dir.mkdir(exist_ok=True)
            shutil.copyfile(src, enc_dir / src.name)
            spec["checkpoint"] = f"encoder/{src.name}"
        else:
            spec["checkpoint"] = str(src.resolve())
    spec["probe"] = _unit(encoder.encode_text([PROBE_TEXT]).numpy()).tolist()
    return spec


def _has_image_tower(encoder: Any) -> bool:
    """False for text-only adapters (their encode_image raises a "text only" GapkitError)."""
    from ..encoders.sbert import SentenceTransformerEncoder

    return not isinstance(encoder, SentenceTransformerEncoder)


def load_query_encoder(spec: dict[str, Any], index_dir: Path) -> Any:
    """Rebuild the encoder of an index and check it reproduces the stored probe embedding."""
    from ..encoders import get_encoder

    ckpt = spec.get("checkpoint")
    if ckpt and not Path(ckpt).is_absolute():
        ckpt = str(index_dir / ckpt)
    if ckpt and not Path(ckpt).exists():
        raise GapkitError(f"the index's encoder checkpoint is missing: {ckpt}")
    enc = get_encoder(spec["name"], checkpoint=ckpt, **dict(spec.get("kwargs") or {}))
    probe = _unit(enc.encode_text([PROBE_TEXT]).numpy())
    if probe.shape != (len(spec["probe"]),) or float(probe @ _unit(spec["probe"])) < 1 - PROBE_TOL:
        raise GapkitError(f"encoder {spec['name']} does not reproduce the embeddings this index was built with "
                          "(other weights?); rebuild the index")
    return enc


def encode_text(encoder: Any, text: str) -> np.ndarray:
    """(1, D) float32 text embedding."""
    import torch

    with torch.inference_mode():
        return encoder.encode_text([text]).numpy().astype(np.float32)


def encode_image(encoder: Any, image: Any) -> np.ndarray:
    """(1, D) float32 embedding of an image (a path, bytes or a PIL image), size-checked on open."""
    import torch

    from ..data.dataset import DEFAULT_MAX_PIXELS, _open_checked

    try:
        if isinstance(image, (bytes, bytearray)):
            pil = _open_checked(bytes(image), DEFAULT_MAX_PIXELS, "the query image")
        elif isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise GapkitError(f"query image not found: {image}")
            pil = _open_checked(str(image), DEFAULT_MAX_PIXELS, str(image))
        else:
            pil = image
    except GapkitError:
        raise
    except Exception as exc:  # PIL raises many types for files that are not images
        raise GapkitError(f"the query image is not a readable image ({type(exc).__name__})") from None
    if not hasattr(pil, "convert"):
        raise GapkitError(f"unsupported image query of type {type(image).__name__}")
    with torch.inference_mode():
        x = encoder.preprocess(pil.convert("RGB")).unsqueeze(0)
        return encoder.encode_image(x).numpy().astype(np.float32)
