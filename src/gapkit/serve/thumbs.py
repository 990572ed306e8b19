"""Thumbnails of an index's registered image files, made on demand and kept in a small LRU cache.

A thumbnail is looked up by DOCUMENT ID: the index maps the id to the file it registered at build
time (`index.image_file(id)`), so nothing a request says is ever used as a path. Images larger
than the data layer's pixel limit are refused from their header, before decoding.
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

THUMB_PX = 160          # longest side of a thumbnail
CACHE_ITEMS = 1024      # ~1024 x ~20 kB of PNG at most


class Thumbnails:
    """thumbs.get(doc_id) -> PNG bytes, or None when the id has no registered, readable image."""

    def __init__(self, index: Any, size: int = THUMB_PX, cache_items: int = CACHE_ITEMS) -> None:
        self.index = index
        self.size = int(size)
        self.cache_items = int(cache_items)
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, doc_id: str) -> bytes | None:
        with self._lock:
            if doc_id in self._cache:
                self._cache.move_to_end(doc_id)
                return self._cache[doc_id]
        png = self._make(doc_id)
        with self._lock:
            self._cache[doc_id] = png
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        return png

    def _make(self, doc_id: str) -> bytes | None:
        from PIL import Image

        from ..data.dataset import oversize, to_rgb

        path = self.index.image_file(doc_id)
        if path is None or not path.is_file() or oversize(str(path)):
            return None
        try:
            with Image.open(path) as im:
                im.draft("RGB", (self.size * 2, self.size * 2))  # JPEG: decode at a reduced scale
                im = to_rgb(im)
                im.thumbnail((self.size, self.size))
                buf = io.BytesIO()
                im.save(buf, format="PNG", optimize=True)
                return buf.getvalue()
        except (OSError, ValueError, Image.DecompressionBombError):
            return None  # a registered file that is gone or damaged: the page shows the text only
