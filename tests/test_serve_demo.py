"""The embedded default, end to end (slow: runs `gapkit demo --quick`): the demo leaves a search
index over its emoji + openclipart test images with the CLIP-tuned two-tower model, prints the one
command that serves it, and on that page typed queries bring images and texts into one ranking
that differs from the raw-cosine one."""
from __future__ import annotations

import json
import threading
import time

import pytest

from gapkit.cli import main

from . import _chromium
from .test_serve import READ_PAGE, TYPE_AND_SUBMIT, _free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(run)]) == 0
    return run


def test_demo_builds_an_index_and_a_benchmark(demo_run):
    from gapkit.search import open_index

    stages = json.loads((demo_run / "demo.json").read_text())["results"]["stages"]
    assert stages["search"]["status"] == "ran"
    assert f"gapkit serve {demo_run / 'index'}" in stages["search"]["detail"]
    idx = open_index(demo_run / "index")
    info = idx.info()
    assert set(info["roles"]) == {"image", "text", "fused"} and info["query_roles"] == ["text", "image"]
    assert info["correction"]["name"] == stages["search"]["detail"].split("index corrected by ")[1].split(";")[0]
    for name in ("emoji", "openclipart"):
        rec = json.loads((demo_run / "search" / name / "record.json").read_text())
        exact = rec["results"]["exact"]
        assert {"none", "role-center", "center"} <= set(exact)
        assert rec["results"]["faiss (ANN)_recall_vs_exact"]["none"] >= 0.9
    # every image document of the index has a registered, readable file (thumbnails)
    rows = [r for r in range(idx.n) if idx.role_of_row(r) == "image"]
    assert all(idx.image_file(str(idx.ids[r])) is not None for r in rows)


@pytest.mark.browser
@pytest.mark.skipif(not _chromium.available(), reason="chromium not installed (apt-get install chromium)")
def test_demo_index_page_mixes_modalities(demo_run, tmp_path):
    import uvicorn

    from gapkit.search import open_index
    from gapkit.serve import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(open_index(demo_run / "index")), host="127.0.0.1",
                                           port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with _chromium.Page(width=1280, height=1000) as page:
            page.navigate(f"http://127.0.0.1:{port}/")
            page.wait_for("document.getElementById('index-info').textContent.includes('documents')")
            seen_images, differ = 0, 0
            for n, query in enumerate(("a smiling face", "a red heart", "an animal", "a car")):
                page.eval(TYPE_AND_SUBMIT.replace("'40'", "'10'") % json.dumps(query))
                page.wait_for(f"Number(document.body.dataset.searched || 0) > {n}", timeout=400)  # encoder load
                page.wait_for("Array.from(document.images).every(i => i.complete)")
                got = page.eval(READ_PAGE)
                differ += [h["id"] for h in got["corrected"]] != [h["id"] for h in got["raw"]]
                seen_images += sum(h["role"] == "image" for h in got["corrected"])
                assert all(h["img"] and h["img"] > 10 for h in got["corrected"] if h["role"] in ("image", "fused"))
            page.screenshot(tmp_path / "demo-serve.png")
            assert page.errors() == []
        assert seen_images > 0          # images compete with texts in the corrected top 10
        assert differ > 0               # the correction changes rankings
    finally:
        server.should_exit = True
        t.join(timeout=10)
