"""The post-hoc methods since the seeds (2026), each paper's claim tested on gapkit's real data.

chowers (Chowers et al., CVPR 2026, arXiv:2603.29080; fixer `chowers`)
    Claim: translating the query modality by the gap's component outside the retrieved modality's
    subspace keeps clean accuracy and makes predictions flip less when embeddings are perturbed.
    Data: the real embeddings of Liang et al. 2022 (CLIP ViT-B/16 on COCO, ConVIRT, VideoCLIP,
    CLASP). Per sample the images are split once (seeded; gapkit.evaluate.protocol) into a
    calibration half (the fixer is fitted there) and a test half. Task: image -> text retrieval
    over the test captions (the texts are the retrieved modality). Per test image: clean top-1
    correct (R@1), and whether the top-1 caption changes when the stored unit image embedding is
    perturbed: x~ = normalise(x + e), e ~ N(0, sigma^2 / D I), `draws` draws per query and sigma
    (the same draws for both arms), and under b-bit scalar quantisation with a per-vector absmax
    scale. Each arm is raw vs fixed on the same queries: paired differences with BCa 95 % CIs.
    With zero_shot_heads=DIR (the LiT heads `gapkit reproduce isoclip` saves), also the paper's own
    setting: zero-shot classification of openclipart test images against 22 category prompts.

isoclip (Magistri et al., CVPR 2026, arXiv:2603.19862; fixer `isoclip`)
    Claim: removing the projector's anisotropic, modality-specific directions improves INTRA-modal
    retrieval. Model: gapkit's real towers (EfficientNet-Lite0 + MiniLM, frozen) with LiT heads
    trained by CLIP loss on the train splits of emoji and openclipart: the heads are the
    projectors A_i (E, 1280), A_t (E, 384). Tasks on the test splits: text -> text on emoji
    (relevant = the other captions of the same emoji, as the paper's Flickr30k text retrieval)
    and image -> image on openclipart (relevant = same category). Per-query R@1, raw vs IsoCLIP
    at the paper's proportions (k_top 150/512, k_bottom 50/512 of r), paired BCa CIs; plus a
    k_top sweep. The trained heads are saved in OUT/heads (the `weights` of the isoclip fixer).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError
from ..typecheck import check_positive
from . import Experiment
from .posthoc import _save

SAMPLES = ("clip", "convirt", "videoclip", "clasp")


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def paired(raw: np.ndarray, fixed: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Each arm's mean with its CI and the paired difference fixed - raw (BCa over queries)."""
    from ..metrics.bootstrap import paired_difference

    res = paired_difference(np.asarray(raw, np.float64), np.asarray(fixed, np.float64), seed=seed)
    out: dict[str, Any] = {"n": int(np.asarray(raw).size)}
    for arm, key in (("raw", "base"), ("fixed", "other"), ("diff", "diff")):
        iv = res[key]
        out[arm] = {"mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high}
    return out


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric b-bit scalar quantisation with one absmax scale per row (what a vector store
    does to save space): round(x / m * L) * m / L with L = 2^(b-1) - 1, m = max_d |x_d|."""
    levels = 2 ** (bits - 1) - 1
    m = np.abs(x).max(axis=-1, keepdims=True)
    return np.round(x / m * levels) * m / levels


def top1(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return np.argmax(queries @ gallery.T, axis=-1)


def flip_rates(x: np.ndarray, gallery: np.ndarray, sigma: float, draws: int, rng: np.random.Generator,
               fixer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per query: share of `draws` noise draws that change the top-1, raw and fixed arm (same draws)."""
    xf = fixer.transform(x, "image")
    clean_raw, clean_fixed = top1(x, gallery), top1(xf, gallery)
    raw, fixed = np.zeros(x.shape[0]), np.zeros(x.shape[0])
    for _ in range(draws):
        e = sigma * rng.standard_normal(x.shape) / np.sqrt(x.shape[1])
        raw += top1(_unit(x + e), gallery) != clean_raw
        fixed += top1(_unit(xf + e), gallery) != clean_fixed
    return raw / draws, fixed / draws


def chowers_sample(name: str, seed: int, sigmas: tuple[float, ...], bits: int, draws: int, energy: float,
                   calib_fraction: float) -> dict[str, Any]:
    """One sample's arms: gap, clean R@1, flips under noise and quantisation (raw vs fixed)."""
    from ..evaluate.protocol import split_images
    from ..fixers import create_fixer
    from ..samples import load_sample

    calib, test = split_images(load_sample(name), calib_fraction, seed)
    fx = create_fixer("chowers", retrieve="text", energy=energy).fit(calib.image, calib.text, calib.text_to_image)
    x, t = _unit(test.image), _unit(test.text)
    xf = fx.transform(x, "image")
    t2i = np.arange(t.shape[0]) if test.text_to_image is None else np.asarray(test.text_to_image)
    keep = np.isin(np.arange(x.shape[0]), t2i)  # images with a caption among the test texts
    # clean R@1: the top-1 caption belongs to the query image
    correct_raw = (t2i[top1(x, t)] == np.arange(x.shape[0]))[keep].astype(float)
    correct_fixed = (t2i[top1(xf, t)] == np.arange(x.shape[0]))[keep].astype(float)
    out: dict[str, Any] = {
        "n_calib_images": int(calib.image.shape[0]), "n_test_images": int(x.shape[0]), "n_test_texts": int(t.shape[0]),
        "rank": fx.rank_, "gap_norm": float(np.linalg.norm(fx.gap_)), "offset_norm": float(np.linalg.norm(fx.offset_)),
        "centroid_distance_raw": float(np.linalg.norm(x.mean(0) - t.mean(0))),
        "centroid_distance_fixed": float(np.linalg.norm(xf.mean(0) - t.mean(0))),
        "i2t_recall@1": paired(correct_raw, correct_fixed, seed),
    }
    rng = np.random.default_rng(seed)
    for sigma in sigmas:
        raw, fixed = flip_rates(x, t, sigma, draws, rng, fx)
        out[f"flips_noise_{sigma:g}"] = paired(raw, fixed, seed)
    qraw = (top1(quantize(x, bits), t) != top1(x, t)).astype(float)
    qfixed = (top1(quantize(xf, bits), t) != top1(xf, t)).astype(float)
    out[f"flips_quant_{bits}bit"] = paired(qraw, qfixed, seed)
    return out


ZERO_SHOT_TEMPLATES = ("clip art of {}.", "a drawing of {}.", "an illustration of {}.")  # as the demo's


def chowers_zero_shot(heads_dir: str, seed: int, sigmas: tuple[float, ...], bits: int, draws: int,
                      n_images: int = 600) -> dict[str, Any]:
    """The paper's own setting, zero-shot classification: openclipart test images (towers + the
    given LiT heads) against the 22 category prompts (3 templates, ensembled). The prompts span
    C = 22 < D dimensions, so rank = C is exact: clean accuracy must not move at all."""
    from ..data import load_dataset
    from ..encoders import tower_features
    from ..encoders.sbert import load_sentence_transformer
    from ..evaluate import ensemble
    from ..fixers import create_fixer
    from ..models.heads import load_heads

    heads = load_heads(heads_dir)
    ds = load_dataset("openclipart", split="test", seed=seed, limit=n_images)
    x = _unit(heads.project_image(tower_features(ds, progress=False)[0]))
    names = [c.replace("_", " ") for c in ds.class_names]
    texts = [t.format(c) for c in names for t in ZERO_SHOT_TEMPLATES]
    raw = np.asarray(load_sentence_transformer(None, "cpu").encode(texts, convert_to_numpy=True, show_progress_bar=False))
    prompts = ensemble(heads.project_text(raw).astype(np.float64).reshape(len(names), len(ZERO_SHOT_TEMPLATES), -1))
    labels = np.asarray(ds.labels)
    order = np.random.default_rng(seed).permutation(x.shape[0])
    calib, test = np.sort(order[: x.shape[0] // 2]), np.sort(order[x.shape[0] // 2:])
    fx = create_fixer("chowers", retrieve="text", rank=len(names)).fit(x[calib], prompts)
    xt, xf = x[test], fx.transform(x[test], "image")
    out: dict[str, Any] = {
        "n_test_images": int(test.size), "n_classes": len(names), "rank": fx.rank_,
        "centroid_distance_raw": float(np.linalg.norm(xt.mean(0) - prompts.mean(0))),
        "centroid_distance_fixed": float(np.linalg.norm(xf.mean(0) - prompts.mean(0))),
        "zero_shot_acc1": paired((top1(xt, prompts) == labels[test]).astype(float),
                                 (top1(xf, prompts) == labels[test]).astype(float), seed),
        "predictions_identical": bool(np.array_equal(top1(xt, prompts), top1(xf, prompts))),
    }
    rng = np.random.default_rng(seed)
    for sigma in sigmas:
        out[f"flips_noise_{sigma:g}"] = paired(*flip_rates(xt, prompts, sigma, draws, rng, fx), seed)
    out[f"flips_quant_{bits}bit"] = paired((top1(quantize(xt, bits), prompts) != top1(xt, prompts)).astype(float),
                                           (top1(quantize(xf, bits), prompts) != top1(xf, prompts)).astype(float), seed)
    return out


def run_chowers(out_dir: Path, quick: bool = False, seed: int = 0, *, samples: list[str] | None = None,
                sigmas: list[float] | None = None, bits: int = 4, draws: int = 20, energy: float = 0.99,
                calib_fraction: float = 0.5, zero_shot_heads: str | None = None) -> dict[str, Any]:
    """Chowers et al.'s claim on the bundled real embeddings (see the module docstring)."""
    from ..records import new_record

    names = list(SAMPLES if samples is None else samples)
    unknown = sorted(set(names) - set(SAMPLES))
    if unknown or not names:
        raise GapkitError(f"chowers: samples must be among {', '.join(SAMPLES)}, got {names}")
    sig = tuple(float(s) for s in (sigmas or (0.05, 0.1, 0.2)))
    if any(not 0 < s < 10 for s in sig):
        raise GapkitError(f"chowers: sigmas must be in (0, 10), got {list(sig)}")
    check_positive("draws", draws)
    if not 2 <= bits <= 16:
        raise GapkitError(f"chowers: bits must be in [2, 16], got {bits}")
    if quick:
        names, draws = names[:1], min(draws, 5)
    results: dict[str, Any] = {n: chowers_sample(n, seed, sig, bits, draws, energy, calib_fraction) for n in names}
    if zero_shot_heads is not None:
        results["openclipart_zero_shot"] = chowers_zero_shot(zero_shot_heads, seed, sig, bits, draws)
    rec = new_record("experiment", experiment="chowers", seed=seed,
                     inputs={"samples": names, "model": "CLIP ViT-B/16, ConVIRT, VideoCLIP, CLASP (Liang et al. 2022)"},
                     params={"samples": names, "sigmas": list(sig), "bits": bits, "draws": draws, "energy": energy,
                             "calib_fraction": calib_fraction, "quick": quick, "retrieve": "text",
                             "zero_shot_heads": zero_shot_heads,
                             "task": "image -> text retrieval over the test captions"},
                     results={"samples": results})
    _save(out_dir, rec)
    return rec


# ----------------------------------------------------------------------------------- isoclip
def intra_r1(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-query intra-modal R@1 (0/1) over the other rows; queries alone in their group dropped."""
    from ..evaluate._rank import best_relevant_ranks, cosine_scorer

    ranks = best_relevant_ranks(cosine_scorer(x, x), x.shape[0], groups, groups, exclude_self=True)
    return (ranks[ranks > 0] == 1).astype(float)


def _isoclip_task(x: np.ndarray, groups: np.ndarray, modality: str, a_i: np.ndarray, a_t: np.ndarray,
                  k_top: int | None, k_bottom: int | None, seed: int) -> dict[str, Any]:
    from ..fixers import create_fixer
    from ..fixers.isoclip import isoclip_block

    fx = create_fixer("isoclip", k_top=k_top, k_bottom=k_bottom).fit_projections(a_i, a_t)
    raw = intra_r1(x, groups)
    out: dict[str, Any] = {"n_queries": int(raw.size), "kept": [int(v) for v in fx.kept_],
                           "recall@1": paired(raw, intra_r1(fx.transform(x, modality), groups), seed)}
    r = len(fx.singular_values_)
    sweep = {}
    bottom = isoclip_block(r, None, k_bottom)[1]
    for top in sorted({0, r // 16, r // 8, r // 4, int(fx.kept_[0]), r // 2}):
        if top < bottom:
            f = create_fixer("isoclip", k_top=top, k_bottom=r - bottom).fit_projections(a_i, a_t)
            sweep[str(top)] = float(intra_r1(f.transform(x, modality), groups).mean())
    out["recall@1_by_k_top"] = sweep
    s = fx.singular_values_
    out["singular_values_quantiles"] = [float(v) for v in np.quantile(s, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])]
    return out


def _tower_split(name: str, split: str, seed: int, limit: int | None) -> tuple[Any, np.ndarray, np.ndarray]:
    from ..data import load_dataset
    from ..encoders import tower_features

    ds = load_dataset(name, split=split, seed=seed, limit=limit)
    fi, ft = tower_features(ds, progress=False)
    return ds, np.asarray(fi), np.asarray(ft)


def run_isoclip(out_dir: Path, quick: bool = False, seed: int = 0, *, steps: int = 600, embed_dim: int = 256,
                n_image_train: int = 1200, n_image_test: int = 600, k_top: int | None = None,
                k_bottom: int | None = None) -> dict[str, Any]:
    """IsoCLIP's claim with gapkit's towers + LiT heads (see the module docstring)."""
    from ..records import new_record
    from ..train import fit_heads

    for key, value in (("steps", steps), ("embed_dim", embed_dim), ("n_image_train", n_image_train),
                       ("n_image_test", n_image_test)):
        check_positive(key, value)
    if quick:
        steps, n_image_train, n_image_test = min(steps, 150), min(n_image_train, 300), min(n_image_test, 200)
    e_train, ei, et = _tower_split("emoji", "train", seed, None)
    o_train, oi, ot = _tower_split("openclipart", "train", seed, n_image_train)
    img = np.vstack([ei, oi])
    txt = np.vstack([et, ot])
    t2i = np.concatenate([np.asarray(e_train.text_to_image), np.asarray(o_train.text_to_image) + ei.shape[0]])
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    heads = fit_heads(img, txt, loss="clip", steps=steps, seed=seed, text_to_image=t2i, embed_dim=embed_dim)
    cost = {"train_wall_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0}
    a_i = heads.image_proj.weight.detach().double().numpy()
    a_t = heads.text_proj.weight.detach().double().numpy()
    e_test, ei_test, et_test = _tower_split("emoji", "test", seed, None)
    o_test, oi_test, _ = _tower_split("openclipart", "test", seed, n_image_test)
    if o_test.labels is None:
        raise GapkitError("isoclip: openclipart has no category labels here")
    labels = np.asarray(o_test.labels)
    tasks = {
        "text_to_text_emoji": _isoclip_task(heads.project_text(et_test).astype(np.float64),
                                            np.asarray(e_test.text_to_image), "text", a_i, a_t, k_top, k_bottom, seed),
        "image_to_image_openclipart": _isoclip_task(heads.project_image(oi_test).astype(np.float64), labels, "image",
                                                    a_i, a_t, k_top, k_bottom, seed),
    }
    heads.save(Path(out_dir) / "heads")  # `gapkit fix --method isoclip --param weights=OUT/heads` reads it
    from ..evaluate import retrieval

    # the heads themselves, held out: how far a CPU-minutes LiT run gets on diverse captions
    pilot = {**cost, "emoji_test": retrieval(heads.project_image(ei_test), heads.project_text(et_test),
                                             np.asarray(e_test.text_to_image))}
    rec = new_record("experiment", experiment="isoclip", seed=seed,
                     inputs={"datasets": ["emoji", "openclipart"],
                             "model": f"EfficientNet-Lite0 + MiniLM towers, LiT heads (clip, {steps} steps, E={embed_dim})",
                             "n_train_images": int(img.shape[0]), "n_train_texts": int(txt.shape[0])},
                     params={"steps": steps, "embed_dim": embed_dim, "n_image_train": n_image_train,
                             "n_image_test": n_image_test, "k_top": k_top, "k_bottom": k_bottom, "quick": quick},
                     results={"tasks": tasks, "heads": pilot})
    _save(out_dir, rec)
    return rec


EXPERIMENTS = {
    "chowers": Experiment(
        "chowers", run_chowers,
        "gap outside the retrieved modality's subspace removed from the queries: clean image->text R@1 and "
        "top-1 flips under embedding noise and 4-bit quantisation, raw vs fixed, paired CIs, on Liang's real "
        "embeddings (seconds)",
        "Chowers et al. 2026 (arXiv:2603.29080), 'Is the Modality Gap a Bug or a Feature?'"),
    "isoclip": Experiment(
        "isoclip", run_isoclip,
        "IsoCLIP on gapkit's towers + LiT heads: intra-modal R@1 (emoji text->text, openclipart image->image), "
        "raw vs the isotropic block, paired CIs, and a k_top sweep (minutes: tower features are cached)",
        "Magistri et al. 2026 (arXiv:2603.19862), 'IsoCLIP'"),
}
