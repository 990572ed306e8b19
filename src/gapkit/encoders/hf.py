"""HF transformers adapter: CLIPModel / SiglipModel from a local directory, fully offline.

The directory must hold the model (config + weights), a tokenizer and an image processor
config. Offline, a misconfigured tokenizer can load EMPTY without any error (ENVIRONMENT.md:
CLIPTokenizer.from_pretrained(hub id) -> vocab_size 2), so the adapter checks that the
tokenizer's vocabulary matches the model's text vocab_size and refuses otherwise.

`build_clip_tokenizer(out_dir)` writes a working HF CLIPTokenizer (vocab.json + merges.txt)
built from open_clip's bundled BPE file: the same 49,408-token vocabulary as OpenAI CLIP.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import GapkitError, reading
from .base import Encoder, as_float_cpu, quiet_weight_loading

CLIP_VOCAB_SIZE = 49408


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_clip_tokenizer(out_dir: str | os.PathLike, model_max_length: int = 77) -> Any:
    """Write vocab.json + merges.txt from open_clip's BPE file into out_dir; return the CLIPTokenizer.

    Vocabulary order (as in CLIP): 256 byte chars, the same with '</w>', one token per merge,
    then <|startoftext|> and <|endoftext|>.
    """
    import open_clip
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    # 48,894 merges (as open_clip's SimpleTokenizer: lines 1 .. 49152-256-2 of the file)
    n_merges = CLIP_VOCAB_SIZE - 2 * 256 - 2
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1: 1 + n_merges]
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), model_max_length=model_max_length,
                        pad_token="<|endoftext|>")
    tok.save_pretrained(out)
    return tok


class HFEncoder(Encoder):
    """A transformers CLIPModel or SiglipModel (anything with get_image/text_features)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        p = Path(path)
        if not (p / "config.json").is_file():
            raise GapkitError(f"{p}: not a transformers model directory (no config.json)")
        with reading(p, "transformers model directory (model, tokenizer or image processor, offline)"):
            with quiet_weight_loading():
                self.model = AutoModel.from_pretrained(p, local_files_only=True).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
            self.processor = AutoImageProcessor.from_pretrained(p, local_files_only=True)
        if not hasattr(self.model, "get_image_features"):
            raise GapkitError(f"{p}: {type(self.model).__name__} is not a two-tower image-text model")
        cfg = self.model.config.text_config
        if len(self.tokenizer) < 100 or len(self.tokenizer) > cfg.vocab_size:
            raise GapkitError(f"{p}: tokenizer has {len(self.tokenizer)} tokens but the model expects "
                              f"{cfg.vocab_size} (an empty offline tokenizer?)")
        self.device = device
        self.is_siglip = "siglip" in type(self.model).__name__.lower()
        self.max_length = int(getattr(cfg, "max_position_embeddings", 77))
        self.name = f"hf:{p.name}"
        self.embed_dim = int(getattr(self.model.config, "projection_dim", 0) or cfg.hidden_size)
        self.preprocessing = {"image_processor": self.processor.to_dict(), "tokenizer": type(self.tokenizer).__name__,
                              "max_length": self.max_length, "padding": "max_length" if self.is_siglip else "longest"}

    def preprocess(self, image: Any) -> torch.Tensor:  # type: ignore[override]
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @torch.inference_mode()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return as_float_cpu(self.model.get_image_features(pixel_values=images.to(self.device)))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        # SigLIP was trained on max_length padding; CLIP pools at the EOT token so padding is free.
        tok = self.tokenizer(list(texts), padding="max_length" if self.is_siglip else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        kwargs = {"input_ids": tok["input_ids"]}
        if "attention_mask" in tok and not self.is_siglip:
            kwargs["attention_mask"] = tok["attention_mask"]
        return as_float_cpu(self.model.get_text_features(**kwargs))


def create_hf(path: str | None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> HFEncoder:
    target = path or checkpoint
    if not target:
        raise GapkitError("hf needs a local model directory, e.g. hf:/models/clip-vit-base-patch32")
    return HFEncoder(target, **kw)
