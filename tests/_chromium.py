"""Drive headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe).

Needs only the chromium binary (no chromedriver, no network, no extra Python package). Chromium
reads protocol messages from fd 3 and writes to fd 4, each a JSON object terminated by a NUL byte.
`inspect_page(path, screenshot)` opens a local file, waits for the load event, evaluates a check
expression in the page, collects console errors / exceptions / log errors, and saves a PNG
screenshot of the full page. `Page` drives a live page (navigate to a URL, run JavaScript, wait
for a condition, screenshot) for interactive checks such as the `gapkit serve` page.
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


class Page:
    """One headless Chromium tab: navigate, evaluate JavaScript, wait for a condition, screenshot.

    Use as a context manager; `errors()` lists console errors, uncaught exceptions, error log
    entries and failed requests seen since the last navigation."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.width, self.height, self.timeout = width, height, timeout

    def __enter__(self) -> "Page":
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._fds = (to_child_w, from_child_r)
        self._profile = tempfile.mkdtemp(prefix="gapkit-chromium-")

        def child_fds() -> None:  # runs in the child: put the pipe ends on fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      preexec_fn=child_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pipe = _Pipe(to_child_w, from_child_r)
        try:
            target = self.pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=self.timeout)["targetId"]
            self.sid = self.pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.pipe.send(f"{domain}.enable", session=self.sid)
            self.pipe.send("Emulation.setDeviceMetricsOverride",
                           {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                           session=self.sid)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.pipe.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in self._fds:
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def navigate(self, url: str) -> None:
        """Open `url` (a file path or http URL) and wait for its load event."""
        self.pipe.events.clear()
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        self.pipe.send("Page.navigate", {"url": url}, session=self.sid)
        self.pipe.wait_event("Page.loadEventFired", timeout=self.timeout)

    def eval(self, expression: str, await_promise: bool = False) -> Any:
        res = self.pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                  "awaitPromise": await_promise}, session=self.sid, timeout=self.timeout)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, poll: float = 0.1) -> Any:
        """Evaluate `expression` until it is truthy; return its value (TimeoutError otherwise)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page condition never held: {expression[:80]}")
            time.sleep(poll)

    def screenshot(self, path: str | Path) -> None:
        shot = self.pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                              session=self.sid, timeout=self.timeout)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def errors(self) -> list[str]:
        return _errors(self.pipe.events)


def inspect_page(path: str | Path, screenshot: str | Path, width: int = 1280, height: int = 900,
                 timeout: float = 60.0) -> dict[str, Any]:
    """Open file `path` in headless Chromium; return CHECK_JS's result plus 'errors' (console
    errors, uncaught exceptions, log entries of level error, failed requests)."""
    with Page(width, height, timeout) as page:
        page.navigate(str(path))
        info = page.eval(CHECK_JS)
        page.screenshot(screenshot)
        info["errors"] = page.errors()
        return info


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + str(p["entry"].get("text")) + (f" ({p['entry']['url']})" if p["entry"].get("url") else ""))
        elif m == "Network.loadingFailed":
            out.append("network: " + str(p.get("errorText")))
    return out
