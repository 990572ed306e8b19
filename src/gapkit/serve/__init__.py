"""`gapkit serve`: a small web app over a mixed-modality index (gapkit.search).

One page (search box: text, or an image upload) that shows images (thumbnails) and texts in one
ranked list, the corrected ranking beside the raw-cosine ranking, P(match) on every hit and the
image share of each top 10; and a JSON API:

    GET  /info                         the index's info() (roles, correction, encoder, version)
    GET  /search?text=...&k=10&role=any&mode=both|corrected|raw&min_probability=P
    POST /search  JSON {"text" | "vector", "k", "role", "mode", "min_probability"}
    POST /search?k=...  with an image as the body (Content-Type image/*; at most max_upload_bytes)
    GET  /score?text=...&id=image:...  how likely a text and an indexed image match
    POST /score?text=...  with an image body: how likely the text and the uploaded image match
    GET  /thumb?id=DOC                 a thumbnail of a REGISTERED image of the index (404 otherwise)

Safety: the server binds 127.0.0.1 unless told otherwise; no path from a request reaches the file
system (thumbnails are looked up by document id in the index); uploads are read in chunks and
refused (413) beyond the size limit; the page builds every caption with textContent (never HTML)
and is served under a Content-Security-Policy that allows only its own script and styles.

    from gapkit.search import open_index
    from gapkit.serve import create_app
    app = create_app(open_index("runs/demo/index"))     # any ASGI server; `gapkit serve` uses uvicorn
"""
from __future__ import annotations

from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD = 8 * 2**20  # 8 MiB: a photo from a phone fits; a denial-of-service upload does not


def create_app(index: Any, **kw: Any) -> Any:
    """The FastAPI app over an opened index (see gapkit.serve.app.create_app)."""
    from .app import create_app as _create

    return _create(index, **kw)


__all__ = ["create_app", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_MAX_UPLOAD"]
