"""The FastAPI app behind `gapkit serve` (the module docstring of gapkit.serve lists the routes).

Every answer is JSON made of plain Python values; a user mistake (empty query, unknown role,
k <= 0, a vector of the wrong dimension, an image query on an index without an image encoder)
answers 400 {"error": "<one line>"}; an upload over the limit answers 413 before it is read in
full. Index calls are serialised by one lock: the backends are not documented as thread-safe and
FastAPI runs plain endpoints on a thread pool. This module imports FastAPI (gapkit.serve itself
does not, so `import gapkit` stays light).
"""
from __future__ import annotations

import threading
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import GapkitError
from . import DEFAULT_MAX_UPLOAD
from .thumbs import Thumbnails

MODES = ("both", "corrected", "raw")
DEFAULT_K = 10
MAX_K = 200
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
# Only the page's own script and styles; thumbnails from this server; the upload preview as blob:.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC = {"/": ("page.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}


class UploadTooLarge(Exception):
    pass


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def hit_json(hit: Any) -> dict[str, Any]:
    """A Hit as plain JSON. The payload's file path stays on the server: the page gets a thumbnail
    URL (by id) instead, and the remaining user fields as strings/numbers."""
    from urllib.parse import quote

    payload = dict(getattr(hit, "payload", None) or {})
    payload.pop("image_path", None)
    caption = payload.pop("caption", None)
    prob = getattr(hit, "probability", None)
    return {
        "id": str(hit.id), "role": str(hit.role), "raw_cosine": float(hit.raw_cosine), "score": float(hit.score),
        "probability": None if prob is None else float(prob),
        "caption": None if caption is None else str(caption),
        "thumbnail": f"thumb?id={quote(str(hit.id), safe='')}" if hit.role in ("image", "fused") else None,
        "fields": {str(k): v if isinstance(v, (int, float, bool)) or v is None else str(v) for k, v in payload.items()},
    }


def image_share(hits: list[dict[str, Any]], k: int = 10) -> float | None:
    """Share of image documents among the first k hits (None when there are none)."""
    top = hits[:k]
    return None if not top else sum(h["role"] == "image" for h in top) / len(top)


def _number(value: Any, name: str, cast: type = int, default: Any = None) -> Any:
    """A query parameter or JSON field as int/float (`default` when absent); one-line error otherwise."""
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except (TypeError, ValueError):
        kind = "an integer" if cast is int else "a number"
        raise GapkitError(f"{name} must be {kind}, got {str(value)[:40]!r}") from None


class Searcher:
    """The index behind a lock, answering one query in one or both modes."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.lock = threading.Lock()

    def search(self, query: dict[str, Any], k: int, role: str, mode: str, min_probability: float | None) -> dict[str, Any]:
        if mode not in MODES:
            raise GapkitError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not 1 <= k <= MAX_K:
            raise GapkitError(f"k must be between 1 and {MAX_K}, got {k}")
        out: dict[str, Any] = {}
        with self.lock:
            q, qrole = self.index.embed_query(**query)  # encode once for both rankings
            for name in (("corrected", "raw") if mode == "both" else (mode,)):
                hits = self.index.search_vectors(q, qrole, k=k, role=role, raw=name == "raw",
                                                 min_probability=min_probability)[0]
                rows = [hit_json(h) for h in hits]
                out[name] = {"hits": rows, "image_share@10": image_share(rows), "min_probability": min_probability}
        return out

    def score(self, text: str | None, image: Any = None, doc_id: str | None = None) -> dict[str, Any]:
        """gapkit.search.score of a text against an uploaded image or an indexed image document."""
        import numpy as np

        from ..search import score

        if not text or not str(text).strip():
            raise GapkitError("give the text to score: ?text=...")
        with self.lock:
            if doc_id is not None:
                row = self.index.row_of(str(doc_id))
                if self.index.role_of_row(row) != "image":
                    raise GapkitError(f"'{doc_id}' is a {self.index.role_of_row(row)} document; score compares a "
                                      "text with an image (give an image document id or upload an image)")
                image = np.asarray(self.index.vectors[row], np.float32)
            return _plain(score(self.index, image=image, text=str(text)))


def _plain(x: Any) -> Any:
    import json

    from ..atomic import dumps_json

    return json.loads(dumps_json(x, indent=None))


def _query_from_json(body: dict[str, Any]) -> dict[str, Any]:
    text, vector = body.get("text"), body.get("vector")
    if (text is None) == (vector is None):
        raise GapkitError('give exactly one of "text" or "vector"')
    if text is not None:
        return {"text": str(text)}
    if not isinstance(vector, list) or not all(isinstance(v, (int, float)) for v in vector):
        raise GapkitError('"vector" must be a JSON list of numbers')
    import numpy as np

    return {"vector": np.asarray(vector, dtype=np.float32)}


async def read_image(request: Any, limit: int) -> bytes:
    """The uploaded image bytes (the index decodes them, header-checked against its pixel limit)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in IMAGE_TYPES:
        raise GapkitError(f"unsupported upload type {ctype or '(none)'}; send one of {', '.join(IMAGE_TYPES)}")
    data = await _read_bounded(request, limit)
    if not data:
        raise GapkitError("empty upload: send the image as the request body")
    return data


def create_app(index: Any, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, thumb_px: int = 160) -> Any:
    """FastAPI app serving `index` (an opened gapkit.search index)."""
    app = FastAPI(title="gapkit search", docs_url=None, redoc_url=None, openapi_url=None)
    searcher = Searcher(index)
    thumbs = Thumbnails(index, size=thumb_px)
    info = _plain(index.info())

    @app.exception_handler(GapkitError)
    async def _user_error(request: Request, exc: GapkitError) -> Any:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(UploadTooLarge)
    async def _too_large(request: Request, exc: UploadTooLarge) -> Any:
        return JSONResponse({"error": f"upload larger than the limit of {max_upload_bytes} bytes"}, status_code=413)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    for route, (name, media) in STATIC.items():
        body = _static(name)

        def page(body: bytes = body, media: str = media) -> Any:
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

        app.add_api_route(route, page, methods=["GET"], include_in_schema=False)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Any:
        return Response(status_code=204)  # no icon; answering keeps the browser console clean

    @app.get("/info")
    def get_info() -> Any:
        return info

    @app.get("/search")
    def get_search(text: str | None = None, k: str | None = None, role: str = "any", mode: str = "corrected",
                   min_probability: str | None = None) -> Any:
        if text is None:
            raise GapkitError("give a query: /search?text=...")
        return {"query": {"text": text}, **searcher.search(
            {"text": text}, _number(k, "k", int, DEFAULT_K), role, mode, _number(min_probability, "min_probability", float))}

    @app.post("/search")
    async def post_search(request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        params = request.query_params
        if ctype.startswith("image/"):
            query = {"image": await read_image(request, max_upload_bytes)}
            opts: dict[str, Any] = dict(params)
            shown: dict[str, Any] = {"image": f"upload ({ctype})"}
        else:
            body = await _json_body(request, max_upload_bytes)
            query, opts = _query_from_json(body), {**dict(params), **body}
            shown = {"text": query["text"]} if "text" in query else {"vector": f"{query['vector'].size} numbers"}
        # encoding and ranking take a while: off the event loop, like the plain (def) endpoints
        result = await run_in_threadpool(
            searcher.search, query, _number(opts.get("k"), "k", int, DEFAULT_K), str(opts.get("role", "any")),
            str(opts.get("mode", "corrected")), _number(opts.get("min_probability"), "min_probability", float))
        return {"query": shown, **result}

    @app.get("/score")
    def get_score(text: str | None = None, id: str | None = None) -> Any:
        if id is None:
            raise GapkitError("give an image document: /score?text=...&id=image:... (or POST an image)")
        return searcher.score(text, doc_id=id)

    @app.post("/score")
    async def post_score(request: Request, text: str | None = None) -> Any:
        return await run_in_threadpool(searcher.score, text, await read_image(request, max_upload_bytes))

    @app.get("/thumb")
    def get_thumb(id: str) -> Any:
        png = thumbs.get(id)
        if png is None:
            return JSONResponse({"error": "no registered image for this id"}, status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    return app


async def _read_bounded(request: Any, limit: int) -> bytes:
    """The request body, refusing (UploadTooLarge) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge()
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise UploadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Any, limit: int) -> dict[str, Any]:
    import json

    raw = await _read_bounded(request, limit)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GapkitError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise GapkitError("the request body must be a JSON object")
    return body
