"""gapkit.integrations.torchmetrics: equal to gapkit.measure, chunk-invariant, and two gloo
processes give the metrics of one process holding every row."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from gapkit import load_sample, measure  # noqa: E402
from gapkit.errors import GapkitError  # noqa: E402
from gapkit.integrations import torchmetrics as gtm  # noqa: E402
from gapkit.metrics.geometry import rows_state  # noqa: E402
from tests.test_losses_distributed import free_port  # noqa: E402  (the repo's DDP test harness)

GEOM = ("centroid_distance", "centroid_cosine", "paired_cosine_mean", "paired_distance_mean", "alignment_loss",
        "image_cone_cosine_mean", "text_cone_cosine_mean", "rmg")
PAIRWISE = ("uniformity_image", "uniformity_text", "uniformity_cross", "image_cone_cosine_min",
            "text_cone_cosine_min", "logit_entropy")


def captions(n_image: int = 40, d: int = 12, seed: int = 0, dtype=np.float64):
    """Images (N, D) with 1-3 captions each (text rows shuffled), a gap along dim 0."""
    r = np.random.default_rng(seed)
    image = r.standard_normal((n_image, d)) + 1.5 * np.eye(d)[0]
    mapping = np.repeat(np.arange(n_image), r.integers(1, 4, n_image))
    r.shuffle(mapping)
    text = image[mapping] + r.standard_normal((mapping.size, d)) - 3.0 * np.eye(d)[0]
    return (image * 3.0).astype(dtype), text.astype(dtype), mapping  # scale: rows are normalised inside


def reference(image, text, mapping=None, **kw) -> dict:
    return measure(image, text, mapping, metrics=list(GEOM + PAIRWISE), **kw)


def check_equal(got: dict, ref: dict, keys, rtol: float) -> None:
    for k in keys:
        np.testing.assert_allclose(float(got[k]), ref[k], rtol=rtol, atol=rtol, err_msg=k)


def test_batch_state_equals_numpy_rows_state():
    image, text, mapping = captions()
    st = gtm.batch_state(torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(mapping))
    ref = rows_state(image, text, mapping)
    for f in ("n_image", "n_text", "sq_image", "sq_text", "sum_cos", "sum_dist"):
        np.testing.assert_allclose(float(st[f]), getattr(ref, f), rtol=1e-12, err_msg=f)
    np.testing.assert_allclose(st["sum_image"].numpy(), ref.sum_image, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st["sum_text"].numpy(), ref.sum_text, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("multi", [False, True], ids=["1to1", "captions"])
def test_fused_cpu_kernel_equals_numpy_rows_state(multi):
    from gapkit.integrations._rowsums import fused_sums

    image, text, mapping = captions(300, d=40, seed=2)  # > BLOCK rows: the float32 partial sums flush
    if not multi:
        text, mapping = text[:300] + image, None
    ref = rows_state(image, text, mapping)
    keep_i = np.where(np.arange(300) % 3 == 0, np.arange(300) // 3, -1)  # every third row into the buffers
    keep_t = np.where(np.arange(text.shape[0]) % 2 == 0, np.arange(text.shape[0]) // 2, -1)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-6)):  # float32: D * eps-sized rounding per row
        x, y = image.astype(dtype), text.astype(dtype)
        bi, bt = np.zeros((100, 40), dtype), np.zeros(((text.shape[0] + 1) // 2, 40), dtype)
        col_i, col_t, stats = np.zeros(40), np.zeros(40), np.zeros(4)
        fused_sums(x, y, np.empty(0, np.int64) if mapping is None else mapping, keep_i, keep_t, bi, bt,
                   col_i, col_t, stats)
        np.testing.assert_allclose(col_i, ref.sum_image, rtol=tol, atol=tol * 300)
        np.testing.assert_allclose(col_t, ref.sum_text, rtol=tol, atol=tol * text.shape[0])
        np.testing.assert_allclose(stats, [ref.sq_image, ref.sq_text, ref.sum_cos, ref.sum_dist], rtol=tol,
                                   atol=tol * text.shape[0])
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        np.testing.assert_allclose(bi, unit(image[::3]), rtol=tol, atol=tol)
        np.testing.assert_allclose(bt, unit(text[::2]), rtol=tol, atol=tol)


def test_split_ranges_cover_the_rows_at_block_multiples():
    from gapkit.integrations._rowsums import BLOCK, MIN_ROWS_PER_THREAD, split_ranges

    for n in (1, 255, 1023, 2047, 2048, 4096, 5000, 100_003):
        for threads in (1, 2, 3, 8):
            r = split_ranges(n, threads)
            assert r[0][0] == 0 and r[-1][1] == n and all(a < b for a, b in r), (n, threads, r)
            assert all(b1 == a2 for (_, b1), (a2, _) in zip(r[:-1], r[1:]))  # contiguous, no overlap
            assert all(b % BLOCK == 0 for _, b in r[:-1])
            assert len(r) <= max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    assert len(split_ranges(4096, 2)) == 2 and len(split_ranges(2047, 2)) == 1


def test_threaded_kernel_equals_the_serial_one_and_is_deterministic():
    """Row ranges in threads, partials added in range order: equal to the serial pass to float64
    rounding, the same bits on every call, and the buffers receive the same unit rows."""
    from gapkit.integrations._rowsums import fused_sums, fused_sums_threaded

    r = np.random.default_rng(5)
    n, d = 5000, 64
    x = (r.standard_normal((n, d)) + 2 * np.eye(d)[0]).astype(np.float32)
    y = (r.standard_normal((n, d)) - 2 * np.eye(d)[0]).astype(np.float32)
    dest = np.full(n, -1, np.int64)
    keep = r.choice(n, 300, replace=False)
    dest[keep] = np.arange(300)
    none = np.empty(0, np.int64)

    def run(threads):
        bi, bt = np.zeros((300, d), np.float32), np.zeros((300, d), np.float32)
        ci, ct, st = np.ones(d), np.ones(d), np.ones(4)  # the kernel adds into what is there
        if threads == 0:
            fused_sums(x, y, none, dest, dest, bi, bt, ci, ct, st)
        else:
            fused_sums_threaded(x, y, none, dest, dest, bi, bt, ci, ct, st, threads)
        return ci, ct, st, bi, bt

    serial = run(0)
    for threads in (2, 3, 4):
        got = run(threads)
        for a, b in zip(got[:3], serial[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
        for a, b in zip(got[3:], serial[3:]):
            np.testing.assert_array_equal(a, b)  # the same rows, normalised the same way
        again = run(threads)
        for a, b in zip(got, again):
            np.testing.assert_array_equal(a, b)


def test_threaded_kernel_survives_fork():
    """The pool started in the parent is not inherited half-dead: a forked child's update finishes."""
    import multiprocessing

    from gapkit.integrations import _rowsums

    x = np.random.default_rng(0).standard_normal((4096, 32)).astype(np.float32)
    gap = gtm.ModalityGap(keys=list(GEOM), threads=2)
    gap.update(torch.from_numpy(x), torch.from_numpy(-x))  # starts this process's pool
    assert _rowsums._POOLS  # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_update, args=(x, q))
    p.start()
    p.join(60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive, "the forked child's threaded update hung"
    assert p.exitcode == 0
    np.testing.assert_allclose(q.get(timeout=5), float(gap.compute()["centroid_distance"]), rtol=1e-12)


def _child_update(x: np.ndarray, q) -> None:
    gap = gtm.ModalityGap(keys=list(GEOM), threads=2)
    gap.update(torch.from_numpy(x), torch.from_numpy(-x))
    q.put(float(gap.compute()["centroid_distance"]))


def test_threads_option_gives_the_serial_metrics():
    image, text, _ = captions(3000, d=16, seed=6)
    text = text[:3000] + image
    one, two = gtm.ModalityGap(reservoir=500), gtm.ModalityGap(reservoir=500, threads=2)
    for m in (one, two):
        for s in range(0, 3000, 2500):  # a 2,500-row batch (split) and a 500-row one (serial)
            m.update(torch.from_numpy(image[s:s + 2500]), torch.from_numpy(text[s:s + 2500]))
    a, b = one.compute(), two.compute()
    for k in a:
        np.testing.assert_allclose(float(b[k]), float(a[k]), rtol=1e-12, atol=1e-12, err_msg=k)
    with pytest.raises(GapkitError, match="threads"):
        gtm.ModalityGap(threads=0)


def test_torch_path_equals_the_cpu_kernel(monkeypatch):
    """The path CUDA features take (torch ops, kept rows normalised one by one), run on CPU."""
    image, text, mapping = captions(120, seed=4)
    args = [(torch.from_numpy(image[s : s + 40]), torch.from_numpy(text[sel]), torch.from_numpy(mapping[sel] - s))
            for s in range(0, 120, 40) for sel in [np.flatnonzero((mapping >= s) & (mapping < s + 40))]]
    fast, slow = gtm.ModalityGap(reservoir=50), gtm.ModalityGap(reservoir=50)
    for a in args:
        fast.update(*a)
    monkeypatch.setattr(gtm, "_rowsums_ok", lambda *a: False)
    for a in args:
        slow.update(*a)
    got, ref = slow.compute(), fast.compute()
    assert set(got) == set(ref)
    check_equal(got, {k: float(v) for k, v in ref.items()}, list(ref), 1e-12)


def test_forward_reset_and_large_batches_keep_the_sample_right():
    """torchmetrics replaces the "cat" states (forward's merge, reset): the buffers follow; a batch larger
    than the reservoir copies at most `reservoir` rows."""
    image, text, mapping = captions(90, seed=6)
    x, y, t = torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(mapping)
    m = gtm.ModalityGap()
    m.update(torch.randn(7, 12, dtype=torch.float64), torch.randn(7, 12, dtype=torch.float64))
    m.reset()
    sel = (t < 50).nonzero().squeeze(1)
    batch_values = m(x[:50], y[sel], t[sel])  # forward: this batch's metrics, and accumulate
    check_equal(batch_values, reference(image[:50], text[sel.numpy()], mapping[sel.numpy()]), GEOM + PAIRWISE, 1e-10)
    rest = (t >= 50).nonzero().squeeze(1)
    m.update(x[50:], y[rest], t[rest] - 50)
    check_equal(m.compute(), reference(image, text, mapping), GEOM + PAIRWISE, 1e-10)
    small = gtm.ModalityGap(reservoir=10)
    small.update(x, y, t)
    assert torch.cat(small.sample_image_key).shape[0] == 10  # only the batch's 10 smallest keys were copied


@pytest.mark.parametrize("multi", [False, True], ids=["1to1", "captions"])
def test_equals_measure_on_random_data(multi):
    image, text, mapping = captions()
    if not multi:
        text, mapping = text[: image.shape[0]], None
        text = text + image  # some correlation so paired cosine is not ~0
    m = gtm.ModalityGap()
    m.update(torch.from_numpy(image), torch.from_numpy(text), None if mapping is None else torch.from_numpy(mapping))
    got = m.compute()
    check_equal(got, reference(image, text, mapping), GEOM + PAIRWISE, 1e-10)
    assert float(got["n_text"]) == text.shape[0]


def test_equals_measure_on_bundled_clip_embeddings():
    pe = load_sample("clip")
    x, y = torch.from_numpy(np.asarray(pe.image)), torch.from_numpy(np.asarray(pe.text))
    assert x.dtype == torch.float32 and x.shape == (500, 512)
    m = gtm.ModalityGap()
    for s in range(0, 500, 128):  # as a validation loop would feed it
        m.update(x[s : s + 128], y[s : s + 128])
    check_equal(m.compute(), reference(pe.image, pe.text), GEOM + PAIRWISE, 2e-5)


def _random_chunks(n: int, rng: np.random.Generator) -> list[int]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=6, replace=False))
    return list(np.diff(np.concatenate([[0], cuts, [n]])))


def test_chunked_updates_of_random_sizes_equal_one_update():
    image, text, mapping = captions(60, seed=3)
    one = gtm.ModalityGap()
    one.update(torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(mapping))
    chunked = gtm.ModalityGap()
    start = 0
    for size in _random_chunks(60, np.random.default_rng(1)):
        rows = np.arange(start, start + size)
        sel = np.flatnonzero(np.isin(mapping, rows))  # this chunk's captions, with a chunk-local map
        chunked.update(torch.from_numpy(image[rows]), torch.from_numpy(text[sel]),
                       torch.from_numpy(mapping[sel] - start))
        start += size
    a, b = one.compute(), chunked.compute()
    check_equal(b, {k: float(v) for k, v in a.items()}, GEOM + PAIRWISE, 1e-10)


def test_single_metric_classes_and_half_precision():
    image, text, mapping = captions(dtype=np.float32)
    ref = reference(image, text, mapping)
    x, y, t = torch.from_numpy(image).half(), torch.from_numpy(text).half(), torch.from_numpy(mapping)
    ref_half = reference(x.float().numpy(), y.float().numpy(), mapping)  # fp16 rounding of the inputs only
    for cls, key in ((gtm.RMG, "rmg"), (gtm.CentroidDistance, "centroid_distance"),
                     (gtm.CentroidCosine, "centroid_cosine"), (gtm.TextUniformity, "uniformity_text"),
                     (gtm.LogitEntropy, "logit_entropy")):
        metric = cls()
        metric.update(x, y, t)
        value = metric.compute()
        assert value.ndim == 0
        np.testing.assert_allclose(float(value), ref_half[key], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(float(value), ref[key], rtol=5e-2, err_msg=key)
    assert not gtm.RMG().needs_sample  # geometry metrics keep O(D) state only


def assert_bottom_k(m, image: np.ndarray, batch: int, k: int, text: np.ndarray | None = None):
    """The sample is the k images of smallest uniform key (keys drawn per process from seed 0, batch
    by batch), stored as their unit rows (and, for 1:1 `text`, their texts'). Returns the pruned
    sample (image, text, ikey, tkey)."""
    n = image.shape[0]
    g = np.random.default_rng([0, 0])  # seed 0, rank 0
    all_keys = torch.from_numpy(np.concatenate([g.random(min(batch, n - s)) for s in range(0, n, batch)]))
    sample = gtm._prune(*(torch.cat(getattr(m, name)) for name in gtm._SAMPLE), k)
    expect = torch.argsort(all_keys)[:k]  # image rows in key order
    np.testing.assert_array_equal(torch.sort(sample[2]).values.numpy(), all_keys[expect].numpy())
    unit = image[expect.numpy()] / np.linalg.norm(image[expect.numpy()], axis=1, keepdims=True)
    np.testing.assert_allclose(sample[0][torch.argsort(sample[2])].numpy(), unit, rtol=1e-12, atol=1e-12)
    if text is not None:
        unit = text[expect.numpy()] / np.linalg.norm(text[expect.numpy()], axis=1, keepdims=True)
        np.testing.assert_allclose(sample[1][torch.argsort(sample[3])].numpy(), unit, rtol=1e-12, atol=1e-12)
    return sample


def test_reservoir_smaller_than_data_keeps_captions_and_exact_sums():
    image, text, mapping = captions(400, d=8, seed=5)
    m = gtm.ModalityGap(reservoir=150)
    for s in range(0, 400, 64):
        sel = np.flatnonzero((mapping >= s) & (mapping < s + 64))
        m.update(torch.from_numpy(image[s : s + 64]), torch.from_numpy(text[sel]), torch.from_numpy(mapping[sel] - s))
    got = m.compute()
    check_equal(got, reference(image, text, mapping), GEOM, 1e-10)  # the sums stay exact
    assert torch.cat(m.sample_image_key).shape[0] == 150  # memory stays bounded
    _, _, kept_images, kept_texts = assert_bottom_k(m, image, 64, 150)
    assert torch.isin(kept_texts, kept_images).all()  # only captions of kept images ...
    n_captions = np.bincount(mapping, minlength=400)  # ... and all of them: each key's count is its image's
    all_keys_counts = torch.unique(kept_texts, return_counts=True)[1].sort().values
    assert all_keys_counts.sum() == kept_texts.shape[0] and set(all_keys_counts.tolist()) <= set(n_captions.tolist())
    for key, rows in (("uniformity_image", 150), ("uniformity_text", kept_texts.shape[0]), ("uniformity_cross", 150)):
        assert float(got[f"{key}_n_sampled"]) == rows
    assert np.isnan(float(got["logit_entropy"])) and np.isnan(float(got["image_cone_cosine_min"]))


def test_reservoir_uniformity_ci_covers_the_full_value():
    r = np.random.default_rng(11)
    image = r.standard_normal((600, 8)) + 1.0
    text = image + r.standard_normal((600, 8))
    m = gtm.ModalityGap(reservoir=200)
    for s in range(0, 600, 100):
        m.update(torch.from_numpy(image[s : s + 100]), torch.from_numpy(text[s : s + 100]))
    got, ref = m.compute(), reference(image, text)
    sample = assert_bottom_k(m, image, 100, 200, text)  # 1:1 batches: each text sits in its image's slot
    assert torch.equal(sample[2], sample[3])
    for key in ("uniformity_image", "uniformity_text", "uniformity_cross"):
        assert float(got[f"{key}_ci_low"]) <= ref[key] <= float(got[f"{key}_ci_high"]), key
        assert abs(float(got[key]) - ref[key]) < 0.1


def test_a_nan_feature_gives_nan_metrics_not_numbers():
    x, y = torch.randn(50, 8), torch.randn(50, 8)
    x[3, 2] = float("nan")  # a diverged model: the CPU kernel must not optimise NaN away
    got = gtm.ModalityGap(["centroid_distance", "paired_cosine_mean", "rmg"])
    got.update(x, y)
    assert all(np.isnan(float(v)) for k, v in got.compute().items() if not k.startswith("n_"))


def test_bad_input_is_one_gapkit_error():
    m = gtm.ModalityGap()
    with pytest.raises(GapkitError, match="dim"):
        m.update(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(GapkitError, match="text_to_image"):
        m.update(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(GapkitError, match=r"\[0, 4\)"):
        m.update(torch.randn(4, 3), torch.randn(2, 3), torch.tensor([0, 4]))
    with pytest.raises(GapkitError, match="unknown gap metric"):
        gtm.ModalityGap(keys=["gap"])
    with pytest.raises(GapkitError, match="before any update"):
        gtm.ModalityGap().compute()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_equal_cpu():
    image, text, mapping = captions(dtype=np.float32)
    cpu, gpu = gtm.ModalityGap(), gtm.ModalityGap().to("cuda")
    cpu.update(torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(mapping))
    gpu.update(torch.from_numpy(image).cuda(), torch.from_numpy(text).cuda(), torch.from_numpy(mapping).cuda())
    check_equal(gpu.compute(), {k: float(v) for k, v in cpu.compute().items()}, GEOM + PAIRWISE, 1e-5)


# ----------------------------------------------------------------------------- two processes

WORLD = 2
N_DDP = 50
SPLIT = (0, 31, N_DDP)  # unequal shards


def _ddp_worker(r: int, port: int, out_dir: str) -> None:
    from safetensors.torch import save_file

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=r, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        image, text, mapping = captions(N_DDP, seed=7)
        lo, hi = SPLIT[r], SPLIT[r + 1]
        sel = np.flatnonzero((mapping >= lo) & (mapping < hi))
        for name, kw in (("all", {}), ("sampled", {"reservoir": 20})):
            m = gtm.ModalityGap(**kw)
            for s in range(lo, hi, 8):  # several updates per rank
                part = sel[(mapping[sel] >= s) & (mapping[sel] < s + 8)]
                m.update(torch.from_numpy(image[s : min(s + 8, hi)]), torch.from_numpy(text[part]),
                         torch.from_numpy(mapping[part] - s))
            save_file({k: v.reshape(1) for k, v in m.compute().items()}, os.path.join(out_dir, f"{name}_{r}.st"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_gloo_processes_equal_one_process():
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children inherit the imported modules (spawn re-imports torch: slow on 2 cores)
        mp.start_processes(_ddp_worker, args=(free_port(), tmp), nprocs=WORLD, join=True, start_method="fork")
        res = {f[:-3]: load_file(os.path.join(tmp, f)) for f in os.listdir(tmp)}
    image, text, mapping = captions(N_DDP, seed=7)
    ref = reference(image, text, mapping)
    for r in range(WORLD):  # every rank reports the metrics of all rows
        check_equal(res[f"all_{r}"], ref, GEOM + PAIRWISE, 1e-10)
        check_equal(res[f"sampled_{r}"], ref, GEOM, 1e-10)
        assert float(res[f"sampled_{r}"]["uniformity_image_n_sampled"]) == 20  # union sample, pruned to 20
    for k in res["sampled_0"]:  # both ranks hold the same merged sample
        np.testing.assert_array_equal(res["sampled_0"][k].numpy(), res["sampled_1"][k].numpy())


def test_docs_torchmetrics_example_runs(capsys):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text(encoding="utf-8")
    block = doc.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "docs/integrations.md", "exec"), {})
    out = capsys.readouterr().out
    assert "centroid_distance" in out and "rmg" in out


def test_importing_gapkit_and_the_package_stays_light():
    import subprocess
    import sys

    code = ("import sys, gapkit, gapkit.integrations; "
            "print([m for m in ('torch', 'torchmetrics', 'lightning', 'transformers', 'open_clip') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
