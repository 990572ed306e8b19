"""Bundled real embeddings (Liang et al. 2022, MIT licence; see sample_data/NOTICE.md)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .embeddings import PairedEmbeddings, load_embeddings
from .errors import GapkitError

SAMPLES: dict[str, str] = {
    "clip": "CLIP ViT-B/16, pretrained; 500 COCO val2017 pairs; 512-d",
    "clip_random": "CLIP ViT-B/16, random init; 500 COCO val2017 pairs; 512-d",
    "convirt": "ConVIRT (medical image-report), pretrained; 500 pairs; 512-d",
    "convirt_random": "ConVIRT, random init; 500 pairs; 512-d",
    "videoclip": "VideoCLIP, pretrained; 100 MSR-VTT pairs; 768-d",
    "videoclip_random": "VideoCLIP, random init; 100 pairs; 768-d",
    "clasp": "CLASP (protein sequence-text), pretrained; 99 UniProt pairs; 768-d",
    "clasp_random": "CLASP, random init; 99 pairs; 768-d",
}


def sample_path(name: str) -> Path:
    """Path of a bundled (2, N, D) sample stack."""
    if name not in SAMPLES:
        raise GapkitError(f"unknown sample '{name}'; known: {', '.join(SAMPLES)}")
    return Path(str(resources.files("gapkit") / "sample_data" / f"{name}.npy"))


def load_sample(name: str = "clip") -> PairedEmbeddings:
    """Load a bundled sample as PairedEmbeddings (1:1 pairs, rows L2-normalised)."""
    pe = load_embeddings(sample_path(name), mmap=False)
    pe.metadata.update(sample=name, description=SAMPLES[name])
    return pe
