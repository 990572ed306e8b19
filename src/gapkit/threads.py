"""A thread-count setting of a native library, changed for a block and restored after."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def scoped_threads(get: Callable[[], int], set_: Callable[[int], None], n: int | None) -> Iterator[None]:
    """set_(n) inside the block and set_(previous) after it, e.g. torch's or faiss's OpenMP threads:

        with scoped_threads(torch.get_num_threads, torch.set_num_threads, 1): ...

    n None leaves the setting as it is (callers that decide per call whether to limit)."""
    if n is None:
        yield
        return
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)
