"""The engine interface and the in-process engine.

An engine runs `fn(item)` for every item of a list (one item = one shard: its path, its first
global row, ...) and either returns the results in order (`map`) or folds them with an
associative `merge` in a balanced binary tree (`map_reduce`). The tree is fixed by the item order
(pairs (0,1), (2,3), ... then pairs of those), never by completion order, so a run gives the same
floating-point result however many workers took part and whichever finished first.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from ..errors import GapkitError

T = TypeVar("T")
S = TypeVar("S")
C = TypeVar("C")  # a pipeline's shared context (dataset, encoder spec)
B = TypeVar("B")
M = TypeVar("M")
R = TypeVar("R")

ENGINES = ("local", "ray")


class Engine(Protocol):
    """What the sharded commands need from an execution engine."""

    name: str

    def map(self, fn: Callable[[T], S], items: Sequence[T], *, desc: str = "shards") -> list[S]:
        """[fn(item) for item in items], computed wherever the engine runs work, in item order."""

    def map_reduce(self, fn: Callable[[T], S], items: Sequence[T], merge: Callable[[S, S], S], *,
                   desc: str = "shards") -> S:
        """tree_order(merge, [fn(item) for item in items]) without moving every state to the driver."""

    def pipeline(self, items: Sequence[T], prepare: Callable[[C, T], B], load: Callable[[C, str], M],
                 apply: Callable[[M, C, B], R], *, context: C, actors: int = 1, gpus_per_actor: float = 0.0,
                 cpus_per_actor: float = 1.0, desc: str = "batches") -> Iterator[R]:
        """Yield apply(model, context, prepare(context, item)) for every item, in item order, where
        prepare runs as CPU tasks and model = load(context, device) is built once per actor
        (`actors` of them, each with `gpus_per_actor` GPUs). Items and results are dicts of arrays."""

    def close(self) -> None:
        """Release what the engine started (a local Ray instance it created); idempotent."""


def tree_order(merge: Callable[[S, S], S], states: Sequence[S]) -> S:
    """Fold `states` pairwise in a balanced tree: ((s0+s1)+(s2+s3))+... (deterministic order)."""
    if not states:
        raise GapkitError("nothing to merge (no shards)")
    level = list(states)
    while len(level) > 1:
        nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class LocalEngine:
    """Runs every item in this process, one after the other (the default engine)."""

    name = "local"

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def _items(self, items: Sequence[Any], desc: str) -> Any:
        if not self.progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, unit="shard")

    def map(self, fn: Callable[[T], S], items: Sequence[T], *, desc: str = "shards") -> list[S]:
        return [fn(it) for it in self._items(items, desc)]

    def map_reduce(self, fn: Callable[[T], S], items: Sequence[T], merge: Callable[[S, S], S], *,
                   desc: str = "shards") -> S:
        return tree_order(merge, self.map(fn, items, desc=desc))

    def pipeline(self, items: Sequence[T], prepare: Callable[[C, T], B], load: Callable[[C, str], M],
                 apply: Callable[[M, C, B], R], *, context: C, actors: int = 1, gpus_per_actor: float = 0.0,
                 cpus_per_actor: float = 1.0, desc: str = "batches") -> Iterator[R]:
        """One model in this process (on the GPU when one is asked for and present)."""
        device = "cpu"
        if gpus_per_actor > 0:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load(context, device)
        for it in items:
            yield apply(model, context, prepare(context, it))

    def close(self) -> None:
        pass


def get_engine(engine: str | Engine | None = None, *, address: str | None = None, num_cpus: int | None = None,
               progress: bool = False) -> Engine:
    """"local" (or None) -> LocalEngine; "ray" -> RayEngine connected to `address` (None: a local
    Ray instance, started with `num_cpus` unless one is already running in this process); an
    Engine instance is returned as is."""
    if engine is None or engine == "local":
        if address is not None:
            raise GapkitError("--address needs --engine ray")
        return LocalEngine(progress)
    if engine == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address=address, num_cpus=num_cpus, progress=progress)
    if isinstance(engine, str):
        raise GapkitError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return engine
