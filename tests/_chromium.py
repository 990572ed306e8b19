"""Drive headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe).

Needs only the chromium binary (no chromedriver, no network, no extra Python package). Chromium
reads protocol messages from fd 3 and writes to fd 4, each a JSON object terminated by a NUL byte.
`inspect_page(path, screenshot)` opens a local file, waits for the load event, evaluates a check
expression in the page, collects console errors / exceptions / log errors, and saves a PNG
screenshot of the full page.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("GAPKIT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--hide-scrollbars", "--mute-audio"]

# Evaluated in the page once loaded: what a person would check by eye.
CHECK_JS = """(() => {
  const imgs = Array.from(document.images);
  return {
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent || '',
    n_tables: document.querySelectorAll('table').length,
    n_images: imgs.length,
    images_loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    image_widths: imgs.map(i => i.naturalWidth),
    n_scripts: document.scripts.length,
    body_text: document.body.innerText.slice(0, 200000),
    page_height: document.documentElement.scrollHeight,
  };
})()"""


def available() -> bool:
    return shutil.which(CHROMIUM) is not None or Path(CHROMIUM).is_file()


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.w, self.r = write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)


def inspect_page(path: str | Path, screenshot: str | Path, width: int = 1280, height: int = 900,
                 timeout: float = 60.0) -> dict[str, Any]:
    """Open file `path` in headless Chromium; return CHECK_JS's result plus 'errors' (console
    errors, uncaught exceptions, log entries of level error, failed requests)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="gapkit-chromium-")

    def child_fds() -> None:  # runs in the child: put the pipe ends on fds 3 and 4
        a, b = os.dup(to_child_r), os.dup(from_child_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=child_fds, close_fds=False)
    os.close(to_child_r)
    os.close(from_child_w)
    pipe = _Pipe(to_child_w, from_child_r)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        sid = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=sid)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        pipe.events.clear()
        pipe.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=sid)
        pipe.wait_event("Page.loadEventFired", timeout=timeout)
        res = pipe.send("Runtime.evaluate", {"expression": CHECK_JS, "returnByValue": True}, session=sid)
        info = res["result"]["value"]
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                         session=sid, timeout=timeout)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        info["errors"] = _errors(pipe.events)
        return info
    finally:
        try:
            pipe.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_child_w)
        os.close(from_child_r)
        shutil.rmtree(profile, ignore_errors=True)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + str(p["entry"].get("text")))
        elif m == "Network.loadingFailed":
            out.append("network: " + str(p.get("errorText")))
    return out
