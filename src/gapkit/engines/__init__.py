"""Where work runs: in this process (default) or on a Ray cluster, behind one small interface.

    eng = get_engine("ray", address="auto")       # or "local" / None
    results = eng.map(fn, items, desc="shards")   # [fn(item) for item in items], in order
    state = eng.map_reduce(fn, items, merge)      # merge(merge(fn(i0), fn(i1)), ...) as a tree
    eng.close()

`fn` and `merge` are plain module-level functions of gapkit (picklable); the engine decides where
they run. Only `engines/ray_engine.py` and `engines/ray_embed.py` import Ray, so adding Dask or
Spark later means one more module here. `import gapkit` never imports Ray.
"""
from __future__ import annotations

from .base import Engine, LocalEngine, get_engine, tree_order

__all__ = ["Engine", "LocalEngine", "get_engine", "tree_order"]
