"""Modality-gap metrics as `torchmetrics.Metric` classes (streaming, multi-process, CPU or CUDA).

    gap = ModalityGap().to(device)          # or a single metric: RMG(), CentroidDistance(), ...
    gap.update(image_features, text_features)            # (B, D), (B, D): one pair per row
    gap.update(images, captions, text_to_image)          # (B, D), (M, D), (M,) local map: several captions
    gap.compute()  -> {"centroid_distance": tensor, "rmg": tensor, "uniformity_image": tensor, ...}

Two kinds of state, both reduced across processes by torchmetrics (`dist_reduce_fx`):

1. Sums (`dist_reduce_fx="sum"`), O(D) memory, exact at any size: gapkit's `GeometryState`
   (gapkit.metrics.geometry), i.e. row counts, the row sums of the L2-normalised rows
   sum_i x_i / ||x_i|| (D,), the sums of their squared norms, and over caption pairs the sums of
   cos(x_t(j), y_j) and of ||x_t(j) - y_j|| = sqrt(2 - 2 cos). `compute` hands them to
   `geometry_compute`, the same function behind `gapkit.measure`, for centroid_distance,
   centroid_cosine, paired_cosine_mean, paired_distance_mean, alignment_loss, the cone means and rmg.
   On CPU one numba pass reads each input row once and adds the sums without making normalised
   copies (gapkit.integrations._rowsums: per-row sums in the input dtype, column sums in float32
   blocks of 256 rows added to float64; `threads=2` splits 1:1 batches of >= 2,048 rows over two
   threads, fork-safe: see _rowsums); on CUDA the same sums are torch ops on
   the device (`batch_state`). A (4096, 512) float32 update costs about as much as reading both
   batches once (benchmarks/bench_integrations.py).

2. A mergeable uniform sample of images with all their captions (`dist_reduce_fx="cat"`), for the
   truly pairwise metrics (uniformity_image/text/cross, the cone minima, logit_entropy). Every image
   gets a uniform random key; the `reservoir` images with the smallest keys are kept (with their
   captions, which carry their image's key), so merging the samples of several processes keeps a
   uniform sample of the union, as gapkit.metrics.streaming.Reservoir does for 1:1 pairs. Rows whose
   key cannot enter are rejected before any copy; the kept ones are written (unit length) into
   fixed slots by the same CPU pass (`_Sample`), so an update's sample cost does not grow with the
   batch once the sample is full. At `compute`:
     - when the sample holds every image (`reservoir=None`, or fewer images than `reservoir`), the
       metrics are `gapkit.measure` on all rows: identical to it;
     - otherwise uniformity is gapkit's exact U-statistic on the sample (an unbiased estimate of the
       full one, reported with its 95 % CI as `<key>_ci_low/_ci_high` and `<key>_n_sampled`), and
       logit_entropy and the cone minima, which depend on every row at once, are NaN.

Inputs: features of any float dtype (half precision is upcast: metrics never run in half), rows
L2-normalised inside. Several processes: every process calls `update` on its own rows; `compute`
gives the metrics of all rows (torchmetrics syncs the states). Pass `dim` when some process may
see no rows at all (then its sum states still have the right shape).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import require

_tm = require("torchmetrics", "gapkit.integrations.torchmetrics")
import torch  # noqa: E402  (torchmetrics imports torch)
from torchmetrics import Metric  # noqa: E402
from torchmetrics.utilities import dim_zero_cat  # noqa: E402

from ..errors import GapkitError  # noqa: E402
from ..metrics.geometry import GEOMETRY_KEYS, GeometryState, geometry_compute  # noqa: E402

DEFAULT_RESERVOIR = 10_000  # images kept for the pairwise metrics (as gapkit.metrics.streaming)
PAIRWISE_KEYS = ("uniformity_image", "uniformity_text", "uniformity_cross", "image_cone_cosine_min",
                 "text_cone_cosine_min", "logit_entropy")
ALL_KEYS = GEOMETRY_KEYS + PAIRWISE_KEYS
_SUMS = ("n_image", "n_text", "sq_image", "sq_text", "sum_cos", "sum_dist")  # scalar sum states
_SAMPLE = ("sample_image", "sample_text", "sample_image_key", "sample_text_key")  # "cat" states


# ----------------------------------------------------------------------------- inputs and sums

def _features(x: Any, name: str) -> torch.Tensor:
    """A detached (B, D) float tensor; half precision upcast to float32, float64 kept."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise GapkitError(f"{name}: expected a non-empty (rows, dim) matrix, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise GapkitError(f"{name}: expected floating-point features, got {x.dtype}")
    x = x.detach()
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _mapping(text_to_image: Any, n_image: int, n_text: int, device: torch.device) -> torch.Tensor | None:
    """The batch-local (M,) text -> image map as int64 on `device`, or None for 1:1 rows."""
    if text_to_image is None:
        if n_image != n_text:
            raise GapkitError(f"{n_image} image rows but {n_text} text rows: pass text_to_image (M,) "
                              "giving each caption's image row in this batch")
        return None
    m = torch.as_tensor(text_to_image, device=device).reshape(-1)
    if m.dtype.is_floating_point or m.dtype == torch.bool or m.shape[0] != n_text:
        raise GapkitError(f"text_to_image: expected {n_text} integer image indices, got {m.dtype} of shape "
                          f"{tuple(m.shape)}")
    lo, hi = int(m.min()), int(m.max())  # one device sync per update, for a clear error
    if lo < 0 or hi >= n_image:
        raise GapkitError(f"text_to_image: indices must lie in [0, {n_image}) for this batch, got [{lo}, {hi}]")
    return m.long()


def batch_state(image: torch.Tensor, text: torch.Tensor, mapping: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The fields of gapkit's GeometryState for one batch, as float64 tensors on the batch's device.

    With r_i = ||x_i|| (rows scaled to unit length without materialising the normalised copy):
        sum_image = sum_i x_i / r_i = (1/r) @ X    (D,)        sq_image = sum_i (r_i / r_i)^2
        cos_j = <x_t(j), y_j> / (r_t(j) s_j)                    sum_cos = sum_j cos_j
        sum_dist = sum_j sqrt(max(2 - 2 cos_j, 0))
    i.e. what gapkit.metrics.geometry.rows_state computes with NumPy, here in torch so that CUDA
    features never leave the device (tested equal to rows_state).
    """
    if image.shape[1] != text.shape[1]:
        raise GapkitError(f"image features have dim {image.shape[1]} but text features have dim {text.shape[1]}")
    dtype = torch.float64 if (image.dtype == torch.float64 and text.dtype == torch.float64) else torch.float32
    image, text = image.to(dtype), text.to(dtype)
    out: dict[str, torch.Tensor] = {}
    norms = {}
    for name, a in (("image", image), ("text", text)):
        r = torch.linalg.vector_norm(a, dim=1)
        inv = 1.0 / r.clamp_min(1e-12)  # as l2_normalize: a zero row stays zero
        norms[name] = inv
        out[f"n_{name}"] = torch.tensor(float(a.shape[0]), dtype=torch.float64, device=a.device)
        out[f"sum_{name}"] = (inv.unsqueeze(0) @ a).squeeze(0).to(torch.float64)
        out[f"sq_{name}"] = (r * inv).square().sum(dtype=torch.float64)
    paired = image if mapping is None else image[mapping]
    inv_paired = norms["image"] if mapping is None else norms["image"][mapping]
    cos = (torch.linalg.vecdot(paired, text, dim=1) * inv_paired * norms["text"]).to(torch.float64)
    out["sum_cos"] = cos.sum()
    out["sum_dist"] = (2.0 - 2.0 * cos).clamp_min(0.0).sqrt().sum()
    return out


def state_to_geometry(s: dict[str, torch.Tensor]) -> GeometryState:
    """Torch sum states -> gapkit's GeometryState (NumPy float64) for `geometry_compute`."""
    f = {k: float(s[k]) for k in _SUMS}
    return GeometryState(f["n_image"], f["n_text"], s["sum_image"].detach().cpu().numpy().astype(np.float64),
                         s["sum_text"].detach().cpu().numpy().astype(np.float64), f["sq_image"], f["sq_text"],
                         f["sum_cos"], f["sum_dist"])


# ----------------------------------------------------------------------------- the metric

class ModalityGap(Metric):
    """Streaming modality-gap metrics of gapkit (module doc); `compute()` returns a dict of tensors.

    keys: which metrics to report (default: all of ALL_KEYS); geometry keys cost O(D) state, the
      pairwise ones keep a sample of `reservoir` images (None = every image, exact at any size).
    logit_scale: s of logit_entropy = mean_i H(softmax(s x_i Y^T)) (100 = CLIP's clamp).
    dim: feature dimension, when known (needed only if some process may see no rows).
    seed: seeds the sample's keys (a NumPy stream per (seed, rank)) and gapkit's sampled estimators.
    threads: CPU threads for the update's pass over a 1:1 batch (default 1). A second thread makes
      a 4096 x 512 pass 1.4x faster only while torch's OpenMP workers sleep (OMP_WAIT_POLICY=PASSIVE);
      with their default spin-wait after each torch op they hold the other core and the split pass
      is slower than one thread (benchmarks/bench_integrations.py, docs/integrations.md).
    Extra keyword arguments go to torchmetrics.Metric (e.g. compute_on_cpu, sync_on_compute).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, keys: Sequence[str] | None = None, *, reservoir: int | None = DEFAULT_RESERVOIR,
                 logit_scale: float = 100.0, dim: int | None = None, seed: int = 0, threads: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = tuple(ALL_KEYS if keys is None else keys)
        unknown = [k for k in self.keys if k not in ALL_KEYS]
        if unknown:
            raise GapkitError(f"unknown gap metric {unknown[0]!r}; known: {', '.join(ALL_KEYS)}")
        if reservoir is not None and reservoir < 2:
            raise GapkitError(f"reservoir must be at least 2 images (or None for all), got {reservoir}")
        if not np.isfinite(logit_scale) or logit_scale < 0:
            raise GapkitError(f"logit_scale must be a finite number >= 0, got {logit_scale}")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise GapkitError(f"threads must be an integer >= 1, got {threads!r}")
        self.reservoir, self.logit_scale, self.seed, self.threads = reservoir, float(logit_scale), seed, threads
        self.needs_sample = any(k in PAIRWISE_KEYS for k in self.keys)
        self._generator: np.random.Generator | None = None
        for name in _SUMS:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("sum_image", "sum_text"):
            self.add_state(name, default=torch.zeros(dim or 0, dtype=torch.float64), dist_reduce_fx="sum")
        if self.needs_sample:
            for name in _SAMPLE:
                self.add_state(name, default=[], dist_reduce_fx="cat")

    # -- update -----------------------------------------------------------------------------
    def update(self, image: Any, text: Any, text_to_image: Any = None) -> None:  # type: ignore[override]
        """Fold one batch: image (B, D), text (M, D), text_to_image (M,) batch-local or None (1:1).

        Cost: one pass over the batch for the sums (module doc), plus writing the unit rows the
        sample keeps (every row while it is filling; about B * reservoir / N rows once N images
        were seen). No (B, D) temporary is created on CPU.
        """
        x, y = _features(image, "image features"), _features(text, "text features")
        if x.shape[1] != y.shape[1]:
            raise GapkitError(f"image features have dim {x.shape[1]} but text features have dim {y.shape[1]}")
        mapping = _mapping(text_to_image, x.shape[0], y.shape[0], x.device)
        self._check_dim(x.shape[1])
        sampler = self._sampler() if self.needs_sample else None
        slots = sampler.slots(x.shape[0], mapping, x.dtype, x.shape[1]) if sampler is not None else None
        if _rowsums_ok(x, y, self.device):
            self._update_cpu(x, y, mapping, slots)
        else:  # CUDA (or no numba): torch ops on the batch's device
            for name, value in batch_state(x, y, mapping).items():
                setattr(self, name, getattr(self, name) + value.to(self.device))
            if slots is not None:
                slots.write_torch(x, y)
        if sampler is not None:
            sampler.publish(self)

    def _check_dim(self, d: int) -> None:
        for name in ("sum_image", "sum_text"):
            cur = getattr(self, name)
            if cur.numel() == 0:  # first batch fixes the dimension
                setattr(self, name, torch.zeros(d, dtype=torch.float64, device=self.device))
            elif cur.shape[0] != d:
                raise GapkitError(f"features have dim {d}, earlier batches had {cur.shape[0]}")

    def _update_cpu(self, x: torch.Tensor, y: torch.Tensor, mapping: torch.Tensor | None,
                    slots: "_Slots | None") -> None:
        """The fused one-pass kernel (gapkit.integrations._rowsums) adding into the CPU sum states."""
        from ._rowsums import fused_sums_threaded

        dtype = slots.dtype if slots is not None else (torch.float64 if x.dtype == y.dtype == torch.float64
                                                       else torch.float32)
        xn, yn = (np.ascontiguousarray(a.to(dtype).numpy()) for a in (x, y))
        stats = np.zeros(4)
        if slots is None:
            none_i, none_t = np.full(x.shape[0], -1, np.int64), np.full(y.shape[0], -1, np.int64)
            empty = np.empty((0, x.shape[1]), xn.dtype)
            args = (none_i, none_t, empty, empty)
        else:
            args = slots.numpy_args()
            # the kernel does not check bounds: the buffers must take every row it is told to write
            for dest, buf in ((args[0], args[2]), (args[1], args[3])):
                if buf.shape[1] != xn.shape[1] or (dest.size and dest.max() >= buf.shape[0]):
                    raise AssertionError(f"sample buffer {buf.shape} cannot take rows up to {dest.max()}")
        fused_sums_threaded(xn, yn, _NO_MAP if mapping is None else mapping.numpy(), *args,
                            self.sum_image.numpy(), self.sum_text.numpy(), stats, self.threads)
        # in place: assigning a registered state goes through torchmetrics' and nn.Module's __setattr__
        self.n_image.add_(x.shape[0])
        self.n_text.add_(y.shape[0])
        for name, value in zip(("sq_image", "sq_text", "sum_cos", "sum_dist"), stats):
            getattr(self, name).add_(float(value))

    def reset(self) -> None:
        super().reset()
        sampler = self.__dict__.get("_sample_buffers")
        if sampler is not None:  # keep the buffers' memory: no fresh pages to fault in next epoch
            sampler.clear()
            sampler.publish(self)

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        """forward()/merge_state(): a side that has seen no rows yet has (0,)-shaped column sums."""
        for name in ("sum_image", "sum_text"):
            mine, theirs = getattr(self, name), incoming_state[name]
            if mine.numel() == 0 and theirs.numel():
                setattr(self, name, torch.zeros_like(theirs))
            elif theirs.numel() == 0 and mine.numel():
                incoming_state = {**incoming_state, name: torch.zeros_like(mine)}
        super()._reduce_states(incoming_state)

    def _sampler(self) -> "_Sample":
        """The sample's buffers, re-adopted from the registered states when torchmetrics replaced them
        (reset, forward's state merge, .to(device), load_state_dict)."""
        sampler = self.__dict__.get("_sample_buffers")
        if sampler is None or not sampler.owns(self):
            sampler = _Sample.adopt(self)
            self.__dict__["_sample_buffers"] = sampler
        return sampler

    def _keys(self, n: int) -> np.ndarray:
        """(n,) uniform float64 keys of the sample, from this process's own stream (module doc)."""
        if self._generator is None:  # per process: the same seed on two ranks would repeat keys
            rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
            self._generator = np.random.default_rng([int(self.seed), rank])
        return self._generator.random(n)

    # -- compute ----------------------------------------------------------------------------
    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """{key: 0-d float64 tensor} for `keys` (module doc), plus n_image and n_text."""
        if float(self.n_image) == 0:
            raise GapkitError("ModalityGap.compute() before any update(): no features were seen")
        sums = {k: getattr(self, k) for k in _SUMS + ("sum_image", "sum_text")}
        out: dict[str, float] = dict(geometry_compute(state_to_geometry(sums)))
        if self.needs_sample:
            out.update(self._pairwise())
        res = {k: v for k, v in out.items()
               if k in self.keys or k.rsplit("_ci_", 1)[0] in self.keys or k.rsplit("_n_sampled", 1)[0] in self.keys}
        res.update(n_image=float(self.n_image), n_text=float(self.n_text))
        return {k: torch.tensor(float(v), dtype=torch.float64) for k, v in res.items()}

    def _pairwise(self) -> dict[str, float]:
        """Pairwise metrics from the sample: exactly `measure` when it holds every image."""
        from ..metrics import measure
        from ..metrics._prep import prepare
        from ..metrics.pairwise import cross_stat, within_stat

        image, text, ikey, tkey = (dim_zero_cat(getattr(self, n)).detach().cpu() for n in _SAMPLE)
        if self.reservoir is not None:  # the union of several processes' samples: keep `reservoir` again
            image, text, ikey, tkey = _prune(image, text, ikey, tkey, self.reservoir)
        p = prepare(image.numpy(), text.numpy(), _text_to_image(ikey, tkey))
        if p.n_image == int(round(float(self.n_image))):  # the sample is all the data
            wanted = [k for k in self.keys if k in PAIRWISE_KEYS]
            return measure(p, metrics=wanted, seed=self.seed, logit_scale=self.logit_scale)
        out: dict[str, float] = {k: float("nan") for k in PAIRWISE_KEYS}
        n = p.n_image
        for name, u in (("image", p.image), ("text", p.text)):
            out.update(within_stat(u, seed=self.seed, subset_of=n)[0].as_dict(f"uniformity_{name}"))
        out.update(cross_stat(p, seed=self.seed, subset_of=n).as_dict("uniformity_cross"))
        return out


_NO_MAP = np.empty(0, np.int64)  # the kernel's "1:1 batch" mapping


def _rowsums_ok(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> bool:
    """Whether the fused CPU kernel applies: batch and states on CPU, numba installed."""
    return x.device.type == y.device.type == torch.device(device).type == "cpu" and _have_numba()


def _have_numba() -> bool:
    global _NUMBA
    if _NUMBA is None:
        import importlib.util

        _NUMBA = importlib.util.find_spec("numba") is not None
    return _NUMBA


_NUMBA: bool | None = None


class _Slots:
    """Where this batch's kept rows go: dest (B,) / (M,) int64 buffer rows, -1 = not kept."""

    def __init__(self, sample: "_Sample", dest_image: np.ndarray, dest_text: np.ndarray) -> None:
        self.sample, self.dest_image, self.dest_text = sample, dest_image, dest_text
        self.dtype = sample.image.dtype

    def numpy_args(self) -> tuple[np.ndarray, ...]:
        """(image_dest, text_dest, image_buf, text_buf) for `fused_sums` (CPU buffers)."""
        return (self.dest_image, self.dest_text, self.sample.image.numpy(), self.sample.text.numpy())

    def write_torch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The torch path: normalise only the kept rows and write them into the buffers."""
        for a, dest, buf in ((x, self.dest_image, self.sample.image), (y, self.dest_text, self.sample.text)):
            sel = np.flatnonzero(dest >= 0)
            if sel.size:
                rows = torch.nn.functional.normalize(a[torch.from_numpy(sel).to(a.device)].to(buf.dtype), dim=1,
                                                     eps=1e-12)
                buf[torch.from_numpy(dest[sel]).to(buf.device)] = rows.to(buf.device)


class _Sample:
    """The metric's bottom-k sample: the `reservoir` images of smallest uniform random key, with all
    their captions (which carry their image's key), in preallocated buffers.

    Images live in `reservoir` slots. A batch row can only enter the bottom-k if its key is below the
    largest key kept (`threshold`), so every other row is rejected before anything is copied; the
    entering rows are written by the update kernel straight into free slots or into the slots of the
    images they push out. Per update: O(B) key work, O(reservoir) to find the new k-th key, and one
    write per kept row (every row while the sample fills, about B * reservoir / N once N images were
    seen); nothing is compacted. 1:1 batches keep each text in its image's slot; with several captions,
    texts are appended and the captions of pushed-out images are dropped lazily (they are compacted
    away when they outnumber the live ones, and ignored by `compute`, whose `_prune` keeps only texts
    whose key is an image's). `reservoir=None` appends every row.
    Keys and slot bookkeeping are NumPy on the host (a few microseconds each, outside torch's thread
    pool); the rows stay on the metric's device. The registered torchmetrics "cat" states are views
    of the buffers (`publish`), so sync, merge and reset work as for any list state; when
    torchmetrics replaces them, `adopt` rebuilds the buffers.
    """

    def __init__(self, metric: "ModalityGap", image: torch.Tensor, text: torch.Tensor, ikey: np.ndarray,
                 tkey: np.ndarray) -> None:
        self.metric, self.reservoir = metric, metric.reservoir
        self.image, self.text, self.ikey, self.tkey = image, text, ikey, tkey
        self.n_image, self.n_text = image.shape[0], text.shape[0]
        self.shared = self.n_image == self.n_text and bool(np.array_equal(ikey, tkey))  # texts in image slots
        self.threshold = float(ikey.max()) if self.full() else float("inf")
        self.lists: tuple[list, ...] = ()
        self.views: tuple[torch.Tensor, ...] = ()
        self._shape: tuple = (None,) * 6  # what the published views were made from

    @classmethod
    def adopt(cls, metric: "ModalityGap") -> "_Sample":
        parts = [getattr(metric, n) for n in _SAMPLE]
        if all(len(p) == 0 for p in parts):
            empty = torch.empty(0, 0, device=metric.device)
            return cls(metric, empty, empty, np.empty(0), np.empty(0))
        rows = (dim_zero_cat(p) for p in parts)
        if metric.reservoir is not None:  # e.g. forward()'s merge of two samples: back to the bottom-k
            rows = _prune(*rows, metric.reservoir)
        image, text, ikey, tkey = rows
        return cls(metric, image.clone(), text.clone(), ikey.cpu().numpy().astype(np.float64),
                   tkey.cpu().numpy().astype(np.float64))

    def full(self) -> bool:
        return self.reservoir is not None and self.n_image >= self.reservoir

    def clear(self) -> None:
        """Empty the sample, keeping the buffers' memory (reset between validation epochs)."""
        self.n_image = self.n_text = 0
        self.shared, self.threshold = True, float("inf")

    def owns(self, metric: "ModalityGap") -> bool:
        """Whether the registered states are still the views `publish` set (reset() clears lists in place)."""
        return len(self.lists) == len(_SAMPLE) and all(
            getattr(metric, n) is lst and len(lst) == 1 and lst[0] is view
            for n, lst, view in zip(_SAMPLE, self.lists, self.views))

    def publish(self, metric: "ModalityGap") -> None:
        """Point the registered "cat" states at the filled part of the buffers (views on CPU, no copy).
        On CPU the views share memory with the buffers and their keys, so once the sample is full
        and nothing was re-allocated the published views are still right: no new views (each
        registered-state assignment goes through two __setattr__ layers, ~10 us)."""
        dev = self.image.device
        shape = (self.image, self.text, self.ikey, self.tkey, self.n_image, self.n_text)
        if dev.type == "cpu" and self.owns(metric) and all(
                a is b if i < 4 else a == b for i, (a, b) in enumerate(zip(shape, self._shape))):
            return
        self._shape = shape
        self.views = (self.image[: self.n_image], self.text[: self.n_text],
                      torch.from_numpy(self.ikey[: self.n_image]).to(dev),
                      torch.from_numpy(self.tkey[: self.n_text]).to(dev))
        self.lists = tuple([v] for v in self.views)
        for name, lst in zip(_SAMPLE, self.lists):
            setattr(metric, name, lst)

    def slots(self, n: int, mapping: torch.Tensor | None, dtype: torch.dtype, d: int) -> _Slots:
        """Draw the batch's image keys, choose the rows that enter the sample and their buffer rows."""
        if self.n_image == 0 and self.n_text == 0 and (self.image.shape[1] != d or self.image.dtype != dtype):
            # an empty sample (first batch, or after reset) takes the batch's dtype and dim
            self.image = torch.empty(0, d, dtype=dtype, device=self.metric.device)
            self.text = torch.empty(0, d, dtype=dtype, device=self.metric.device)
        elif self.image.shape[1] != d:
            raise GapkitError(f"features have dim {d}, the sampled rows have dim {self.image.shape[1]}")
        keys = self.metric._keys(n)
        cand = np.flatnonzero(keys < self.threshold)
        if self.reservoir is not None and cand.shape[0] > self.reservoir:  # at most `reservoir` per batch
            cand = cand[np.argpartition(keys[cand], self.reservoir - 1)[: self.reservoir]]
        cand, slot = self._image_slots(cand, keys)
        dest_i = np.full(n, -1, dtype=np.int64)
        dest_i[cand] = slot
        self._reserve_images()
        self.ikey[slot] = keys[cand]
        if self.full():  # the largest key kept: rows at or above it can never enter
            self.threshold = float(self.ikey[: self.n_image].max())
        if mapping is not None and self.shared:  # first batch with several captions: texts go by append
            self.shared = False
        if self.shared:
            self.n_text = self.n_image
            self.tkey[: self.n_text] = self.ikey[: self.n_image]
            return _Slots(self, dest_i, dest_i)
        tmap = np.arange(n) if mapping is None else mapping.cpu().numpy()
        tkeep = np.flatnonzero(dest_i[tmap] >= 0)
        self._drop_dead_texts(tkeep.shape[0])
        dest_t = np.full(tmap.shape[0], -1, dtype=np.int64)
        dest_t[tkeep] = np.arange(self.n_text, self.n_text + tkeep.shape[0])
        self._reserve_texts(self.n_text + tkeep.shape[0])
        self.tkey[self.n_text : self.n_text + tkeep.shape[0]] = keys[tmap[tkeep]]
        self.n_text += tkeep.shape[0]
        return _Slots(self, dest_i, dest_t)

    def _image_slots(self, cand: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entering batch rows, their slots): free slots first, then the slots of the largest keys."""
        free = cand.shape[0] if self.reservoir is None else max(self.reservoir - self.n_image, 0)
        if cand.shape[0] <= free:  # still filling: every candidate enters
            slot = np.arange(self.n_image, self.n_image + cand.shape[0])
            self.n_image += cand.shape[0]
            return cand, slot
        old = self.ikey[: self.n_image]
        both = np.concatenate([old, keys[cand]])
        kth = np.partition(both, self.reservoir - 1)[self.reservoir - 1]
        out = np.flatnonzero(old > kth)  # pushed-out images
        cand = cand[keys[cand] <= kth]
        slot = np.concatenate([np.arange(self.n_image, self.reservoir), out])
        self.n_image = self.reservoir
        return cand, slot

    def _reserve_images(self) -> None:
        if self.n_image > self.image.shape[0]:
            cap = max(self.n_image, 2 * self.image.shape[0], 64)
            cap = cap if self.reservoir is None else min(cap, self.reservoir)
            self.image, self.ikey = self._grown(self.image, self.ikey, cap, self.image.shape[0])
        if self.shared and self.n_image > self.text.shape[0]:
            self.text, self.tkey = self._grown(self.text, self.tkey, self.image.shape[0], self.n_text)

    def _reserve_texts(self, need: int) -> None:
        if need > self.text.shape[0]:
            self.text, self.tkey = self._grown(self.text, self.tkey, max(need, 2 * self.text.shape[0], 64), self.n_text)

    @staticmethod
    def _grown(buf: torch.Tensor, keys: np.ndarray, cap: int, n: int) -> tuple[torch.Tensor, np.ndarray]:
        grown = torch.empty(cap, buf.shape[1], dtype=buf.dtype, device=buf.device)
        grown[:n] = buf[:n]
        gkeys = np.empty(cap)
        gkeys[:n] = keys[:n]
        return grown, gkeys

    def _drop_dead_texts(self, adding: int) -> None:
        """Compact the captions of pushed-out images away once they outnumber the live ones."""
        if self.n_text + adding <= self.text.shape[0] or not self.full():
            return
        live = np.flatnonzero(self.tkey[: self.n_text] <= self.threshold)
        if 2 * live.shape[0] < self.n_text:
            self.text[: live.shape[0]] = self.text[torch.from_numpy(live).to(self.text.device)]
            self.tkey[: live.shape[0]] = self.tkey[live]
            self.n_text = live.shape[0]


def _prune(image: torch.Tensor, text: torch.Tensor, ikey: torch.Tensor, tkey: torch.Tensor,
           size: int) -> tuple[torch.Tensor, ...]:
    """Keep the `size` images of smallest key and the captions whose image is kept."""
    if ikey.shape[0] == 0:
        return image, text, ikey, tkey
    # keys are distinct with probability 1; captions of images pushed out earlier have larger keys
    threshold = torch.kthvalue(ikey, min(size, ikey.shape[0])).values
    keep_i, keep_t = ikey <= threshold, tkey <= threshold
    return image[keep_i], text[keep_t], ikey[keep_i], tkey[keep_t]


def _text_to_image(ikey: torch.Tensor, tkey: torch.Tensor) -> np.ndarray | None:
    """Each sampled caption's row in the sampled images, found by its image's key (None when 1:1)."""
    if ikey.shape == tkey.shape and bool(torch.equal(ikey, tkey)):
        return None
    order = torch.argsort(ikey)
    pos = torch.searchsorted(ikey[order], tkey).clamp_max(ikey.shape[0] - 1)
    mapping = order[pos]
    if not bool(torch.equal(ikey[mapping], tkey)):  # would mean two images drew the same key
        raise GapkitError("ModalityGap: caption keys do not match image keys (duplicate random keys?)")
    return mapping.numpy()


# ----------------------------------------------------------------------------- single metrics

class _OneKey(ModalityGap):
    """A ModalityGap reporting one key as a 0-d tensor (for logging one curve)."""

    KEY = ""
    RESERVOIR: int | None = DEFAULT_RESERVOIR

    def __init__(self, *, reservoir: int | None | str = "default", **kwargs: Any) -> None:
        super().__init__((self.KEY,), reservoir=self.RESERVOIR if reservoir == "default" else reservoir, **kwargs)

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()[self.KEY]


def _one(name: str, key: str, doc: str, reservoir: int | None = DEFAULT_RESERVOIR) -> type[_OneKey]:
    cls = type(name, (_OneKey,), {"KEY": key, "RESERVOIR": reservoir, "__doc__": doc, "__module__": __name__})
    return cls


CentroidDistance = _one("CentroidDistance", "centroid_distance",
                        "||mean_i x_i - mean_j y_j|| on unit rows (Liang et al. 2022); O(D) state.")
CentroidCosine = _one("CentroidCosine", "centroid_cosine",
                      "cos(mean x, mean y): the angle between the two modality centroids; O(D) state.")
PairedCosine = _one("PairedCosine", "paired_cosine_mean",
                    "mean over caption pairs of cos(x_t(j), y_j), the alignment score; O(D) state.")
AlignmentLoss = _one("AlignmentLoss", "alignment_loss",
                     "mean over caption pairs of ||x_t(j) - y_j||^2 = 2 - 2 paired cosine (Wang & Isola).")
RMG = _one("RMG", "rmg", "Relative modality gap (Schrodi et al. 2025), diagonal excluded; O(D) state.")
ImageConeCosine = _one("ImageConeCosine", "image_cone_cosine_mean",
                       "Mean off-diagonal cosine among images (the cone effect); O(D) state.")
TextConeCosine = _one("TextConeCosine", "text_cone_cosine_mean",
                      "Mean off-diagonal cosine among texts (the cone effect); O(D) state.")
ImageUniformity = _one("ImageUniformity", "uniformity_image",
                       "log mean_{i != k} exp(-2 ||x_i - x_k||^2) (Wang & Isola); sample of `reservoir` images.")
TextUniformity = _one("TextUniformity", "uniformity_text",
                      "log mean_{i != k} exp(-2 ||y_i - y_k||^2) (Wang & Isola); sample of `reservoir` images.")
CrossUniformity = _one("CrossUniformity", "uniformity_cross",
                       "log mean over unpaired (image, text) of exp(-2 ||x - y||^2) (Fahim et al. 2024).")
LogitEntropy = _one("LogitEntropy", "logit_entropy",
                    "mean_i H(softmax(s x_i Y^T)) in nats (Schrodi et al. 2025); keeps every row by default.",
                    reservoir=None)

__all__ = ["ModalityGap", "ALL_KEYS", "batch_state", "CentroidDistance", "CentroidCosine", "PairedCosine",
           "AlignmentLoss", "RMG", "ImageConeCosine", "TextConeCosine", "ImageUniformity", "TextUniformity",
           "CrossUniformity", "LogitEntropy"]
