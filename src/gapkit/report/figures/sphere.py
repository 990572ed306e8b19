"""Figures of the toy geometry: sphere snapshots, distance-vs-epoch curves, Liang's mismatch
landscape and the cone effect of random MLPs. Every function returns a matplotlib Figure; save it
with gapkit.report.figures.save_figure.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ._style import COLORS, new_figure, plt

# Readable names for the trace keys of gapkit.sim.
TRACE_LABELS = {
    "centroid_distance": "centroid distance ||mean x - mean y||",
    "paired_distance_mean": "mean paired distance ||x_i - y_i||",
    "cross_distance_mean": "mean all-pairs distance ||x_i - y_j||",
    "paired_cosine_mean": "mean paired cosine",
    "uniformity_image": "uniformity (images)",
    "uniformity_text": "uniformity (texts)",
    "linear_separation": "hyperplane separation accuracy",
    "loss": "loss (mean over the epoch)",
}


def _to_3d(points: np.ndarray) -> tuple[np.ndarray, str]:
    """(..., d) points as 3-D coordinates: as they are for d = 3, else their projection on the top
    three principal axes of all given points (the note says so)."""
    d = points.shape[-1]
    if d == 3:
        return points, ""
    flat = points.reshape(-1, d)
    if d < 3:
        pad = np.zeros(points.shape[:-1] + (3 - d,))
        return np.concatenate([points, pad], axis=-1), f"(d = {d}, embedded in 3-D)"
    _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    return points @ vt[:3].T, f"(d = {d}: projection on the top-3 principal axes)"


def _draw_sphere(ax: Any) -> None:
    u, v = np.mgrid[0 : 2 * np.pi : 36j, 0 : np.pi : 18j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="#cccccc",
                      linewidth=0.4, alpha=0.6)
    ax.set_box_aspect((1, 1, 1))
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_pane_color((1, 1, 1, 0))
        axis.line.set_color((1, 1, 1, 0))
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-1.05, 1.05)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])
    ax.grid(False)


def sphere_snapshots(epochs: Sequence[int], image: np.ndarray, text: np.ndarray, title: str = "",
                     elev: float = 20.0, azim: float = -60.0) -> Any:
    """One 3-D panel per snapshot: sampled image points (orange), their texts (blue), and a grey
    segment joining each pair, as in Shi et al. Fig. 2. image, text: (S, k, d)."""
    image, text = np.asarray(image), np.asarray(text)
    both, note = _to_3d(np.concatenate([image, text], axis=1))
    k = image.shape[1]
    n = len(epochs)
    p = plt()
    fig = p.figure(figsize=(3.1 * n, 3.5))
    for s, ep in enumerate(epochs):
        ax = fig.add_subplot(1, n, s + 1, projection="3d")
        _draw_sphere(ax)
        xi, yi = both[s, :k], both[s, k:]
        for a, b in zip(xi, yi):
            ax.plot(*np.stack([a, b]).T, color=COLORS["pair"], linewidth=0.7, alpha=0.8)
        # Images as larger rings and texts as dots on top, so coinciding pairs stay visible.
        ax.scatter(*xi.T, facecolors="none", edgecolors=COLORS["image"], s=30, linewidths=1.2,
                   depthshade=False, label="image")
        ax.scatter(*yi.T, color=COLORS["text"], s=9, depthshade=False, label="text")
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(f"epoch {_fmt_epoch(ep)}", pad=-2)
        if s == 0:
            ax.legend(loc="upper left", fontsize=8, handletextpad=0.2)
    if title or note:
        fig.suptitle(" ".join(t for t in (title, note) if t), y=1.0)
    fig.subplots_adjust(wspace=0.0, left=0.0, right=1.0, bottom=0.0, top=0.88)
    return fig


def _fmt_epoch(e: int | float) -> str:
    e = int(e)
    if e >= 1_000_000 and e % 100_000 == 0:
        return f"{e / 1e6:g}M"
    if e >= 10_000 and e % 1000 == 0:
        return f"{e // 1000}k"
    return str(e)


def distance_curves(runs: Mapping[str, Mapping[str, Any]],
                    keys: Sequence[str] = ("centroid_distance", "paired_distance_mean", "cross_distance_mean"),
                    title: str = "", logx: bool = True, references: Mapping[str, float] | None = None) -> Any:
    """One panel per trace key; one line per run. runs: label -> traces dict with "epoch".
    references: key -> a value drawn as a dashed line (e.g. the uniformity of a uniform sphere)."""
    fig, axes = new_figure(ncols=len(keys), width=4.2, height=3.3)
    cmap = plt().get_cmap("viridis" if len(runs) > 4 else "tab10")
    for a, key in enumerate(keys):
        ax = axes[0, a]
        for r, (label, tr) in enumerate(runs.items()):
            ep = np.asarray(tr["epoch"], dtype=float)
            val = np.asarray(tr[key], dtype=float)
            keep = ep > 0 if logx else np.ones_like(ep, bool)
            color = cmap(r / max(1, len(runs) - 1)) if len(runs) > 4 else cmap(r)
            ax.plot(ep[keep], val[keep], label=label, color=color, linewidth=1.5)
        if references and key in references:
            ax.axhline(references[key], color=COLORS["neutral"], linestyle="--", linewidth=0.8,
                       label="uniform sphere")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(TRACE_LABELS.get(key, key), fontsize=9.5)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def mismatch_landscape(dtheta: np.ndarray, losses: Mapping[str, Mapping[float, np.ndarray]],
                       title: str = "") -> Any:
    """Liang Fig. 3e-g / Supp. Fig. 9: CLIP loss vs the texts' latitude shift d_theta, one panel per
    setting (e.g. "with mismatch", "without mismatch"), one curve per logit scale s; each curve is
    min-max scaled so curves of different s share an axis, and its minimum is marked."""
    fig, axes = new_figure(ncols=len(losses), width=4.6, height=3.6)
    for a, (setting, per_s) in enumerate(losses.items()):
        ax = axes[0, a]
        cmap = plt().get_cmap("plasma")
        for r, (s, curve) in enumerate(sorted(per_s.items())):
            c = np.asarray(curve, dtype=float)
            scaled = (c - c.min()) / max(c.max() - c.min(), 1e-12)
            color = cmap(r / max(1, len(per_s)))
            ax.plot(dtheta, scaled, color=color, label=f"s = {s:g}")
            best = np.flatnonzero(np.isclose(c, c.min(), rtol=1e-9, atol=1e-12))
            ax.plot(dtheta[best], scaled[best], "o", color=color, markersize=4)
        ax.set_xlabel("d_theta (degrees; texts shifted off the equator)")
        ax.set_ylabel("CLIP loss (min-max scaled per s)")
        ax.set_title(setting)
        ax.axvline(0, color=COLORS["neutral"], linewidth=0.6, linestyle=":")
    axes[0, -1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="logit scale")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cone_depth(depth: Sequence[int], cosines: Mapping[str, Sequence[float]],
               spread: Mapping[str, Sequence[float]] | None = None, title: str = "") -> Any:
    """Liang Fig. 2b: mean off-diagonal cosine similarity vs MLP depth, one line per activation
    (optionally with a +-1 s.d. band over repeats)."""
    fig, axes = new_figure(width=5.6, height=3.8)
    ax = axes[0, 0]
    cmap = plt().get_cmap("tab10")
    for r, (act, cos) in enumerate(cosines.items()):
        cos = np.asarray(cos, dtype=float)
        ax.plot(depth, cos, marker="o", markersize=3, label=act, color=cmap(r))
        if spread is not None and act in spread:
            sd = np.asarray(spread[act], dtype=float)
            ax.fill_between(depth, cos - sd, cos + sd, color=cmap(r), alpha=0.15, linewidth=0)
    ax.set_xlabel("number of layers")
    ax.set_ylabel("mean cosine similarity (off-diagonal)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="activation")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def sphere_run_figures(results: Mapping[str, Any], out_dir: Any, prefix: str = "sphere",
                       title: str = "") -> list[Any]:
    """Snapshots and distance curves of one saved sphere run (the "results" of its record).
    Writes PREFIX_snapshots.png and PREFIX_distances.png into out_dir; returns their paths."""
    from pathlib import Path

    from ._style import save_figure

    out = Path(out_dir)
    snaps = results["snapshots"]
    paths = [save_figure(sphere_snapshots(snaps["epochs"], np.asarray(snaps["image"]),
                                          np.asarray(snaps["text"]), title=title),
                         out / f"{prefix}_snapshots.png")]
    keys = ("centroid_distance", "paired_distance_mean", "cross_distance_mean", "uniformity_image")
    paths.append(save_figure(distance_curves({title or "run": results["traces"]}, keys=keys, title=title),
                             out / f"{prefix}_distances.png"))
    return paths


def gap_closing_vs_tau(taus: Sequence[float], closed: Mapping[str, Sequence[int | None]], epochs: int,
                       title: str = "") -> Any:
    """Epoch at which the gap closed vs temperature, one line per init (Shi Fig. 4 as one plot).
    Runs whose gap never closed are drawn as open markers at the run length, labelled "> epochs"."""
    fig, axes = new_figure(width=5.2, height=3.8)
    ax = axes[0, 0]
    cmap = plt().get_cmap("tab10")
    for r, (init, vals) in enumerate(closed.items()):
        t = np.asarray(taus, dtype=float)
        v = np.array([np.nan if x is None else x for x in vals], dtype=float)
        ax.plot(t, v, marker="o", color=cmap(r), label=init)
        never = np.isnan(v)
        if never.any():
            ax.plot(t[never], np.full(never.sum(), epochs), marker="o", linestyle="none",
                    markerfacecolor="white", color=cmap(r), label=f"{init}: not closed in {epochs:,}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature tau")
    ax.set_ylabel("epoch the gap closed (centroid dist <= 0.1)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
