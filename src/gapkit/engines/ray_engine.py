"""The Ray engine: shards as Ray tasks, states merged by Ray tasks in a fixed binary tree.

Connection (`connect`): with an address ("auto", "HOST:PORT" or "ray://HOST:PORT") an existing
cluster is joined; without one a local instance is started (or the one already running in this
process is reused). A TCP probe of HOST:PORT comes first, because `ray.init` on an address where
nothing listens retries for minutes; an unreachable cluster is one GapkitError line.

Failures: a GapkitError raised inside a task reaches the caller as itself (one line, not Ray's
traceback dump). Ray re-runs a task whose worker process died (up to `max_retries` times, Ray's own
retry); when that is exhausted, or a node is lost, the caller gets one GapkitError line and every
shard already written stays in place, so a rerun resumes.

Object store: every ObjectRef of a run is dropped before the call returns, so the objects are
released (reference counting) and repeated runs in one process do not grow the store.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import GapkitError

T = TypeVar("T")
S = TypeVar("S")

INSTALL_HINT = "the Ray engine needs Ray: pip install 'gapkit[ray]'"
#: Ray's own task retry on a dead worker process (Ray's default is 3 as well; stated here on purpose)
MAX_RETRIES = 3


def require_ray() -> Any:
    """Import Ray or raise one GapkitError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GapkitError(INSTALL_HINT) from None
    return ray


def _auto_address() -> str | None:
    """The address `ray.init(address="auto")` would use: $RAY_ADDRESS, else the file `ray start` writes."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    f = Path("/tmp/ray/ray_current_cluster")  # written by `ray start --head`, removed by `ray stop`
    try:
        text = f.read_text().strip()
    except OSError:
        return None
    return text or None


def probe_address(address: str, timeout: float = 3.0) -> None:
    """Raise one GapkitError line unless something accepts TCP connections at HOST:PORT."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise GapkitError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise GapkitError(f"no Ray cluster reachable at {address} ({exc.strerror or exc}); start one with "
                          "`ray start --head` or check --address") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray; returns True when this call started it."""
    ray = require_ray()
    target = None
    if address:  # probed even when this process is connected already: a wrong address is an error
        target = _auto_address() if address == "auto" else address
        if target is None:
            raise GapkitError("--address auto: no running Ray cluster found on this machine (start one with "
                              "`ray start --head`, or give --address HOST:PORT)")
        probe_address(target)
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                          "configure_logging": True}
    if target:
        kw["address"] = target
    else:  # "local": a new instance, never a cluster someone else started on this machine
        kw.update(address="local", num_cpus=num_cpus)
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise GapkitError(f"could not connect to Ray at {where}: {str(exc).splitlines()[0]}") from None
    return True


def _gapkit_cause(exc: BaseException | None, depth: int = 0) -> GapkitError | None:
    """The GapkitError a task raised, found through Ray's wrappers (RayTaskError.cause, Ray Data's
    UserCodeException, __cause__ / __context__ chains)."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, GapkitError) and "Traceback" not in str(exc):
        return exc
    for nxt in (getattr(exc, "cause", None), exc.__cause__, exc.__context__):
        if isinstance(nxt, BaseException) and nxt is not exc:
            found = _gapkit_cause(nxt, depth + 1)
            if found is not None:
                return found
    return None


def _reraise(exc: BaseException, desc: str) -> None:
    """Turn Ray's wrapped failures into one GapkitError line (or the task's own GapkitError)."""
    ray = require_ray()
    rex = ray.exceptions
    own = _gapkit_cause(exc)
    if own is not None:
        raise type(own)(str(own).splitlines()[0]) from None
    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and not isinstance(cause, (rex.RayError,)):
            raise cause
    died = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "RayActorError", "NodeDiedError",
                                           "ObjectLostError", "OwnerDiedError", "ActorDiedError") if hasattr(rex, n))
    if isinstance(exc, died):
        raise GapkitError(f"a Ray worker died during {desc} ({type(exc).__name__}); finished shards are kept, "
                          "rerun the same command to resume") from None
    raise exc


class RayEngine:
    """Map shards over Ray tasks (one CPU each) and merge their states in a tree on the cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, progress: bool = False,
                 max_in_flight: int | None = None) -> None:
        self.address = address
        self.progress = progress
        self.max_in_flight = max_in_flight
        self._started = connect(address, num_cpus)
        self.ray = require_ray()
        #: ids of the Ray nodes that ran pipeline work (decode tasks or actors) in this engine's runs
        self.nodes_used: set[str] = set()
        #: worker process ids per pipeline stage ("prepare", "apply"): disjoint when the stages run
        #: in separate processes, i.e. when Ray Data did not fuse decoding into the actors
        self.stage_pids: dict[str, set[int]] = {"prepare": set(), "apply": set()}

    # ------------------------------------------------------------------ helpers
    def _remote(self, fn: Callable[..., Any]) -> Any:
        return self.ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)

    def _submit(self, fn: Callable[[T], S], items: Sequence[T], desc: str) -> list[Any]:
        """Submit one task per item (at most max_in_flight unfinished at a time); returns the refs in
        item order after every task has finished, with progress on the driver."""
        from tqdm.auto import tqdm

        task = self._remote(fn)
        refs: list[Any] = []
        pending: list[Any] = []
        limit = self.max_in_flight or len(items) or 1
        with tqdm(total=len(items), desc=desc, unit="shard", disable=not self.progress) as bar:
            for it in items:
                if len(pending) >= limit:
                    done, pending = self.ray.wait(pending, num_returns=1)
                    bar.update(len(done))
                ref = task.remote(it)
                refs.append(ref)
                pending.append(ref)
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                bar.update(len(done))
        return refs

    # ------------------------------------------------------------------ the interface
    def map(self, fn: Callable[[T], S], items: Sequence[T], *, desc: str = "shards") -> list[S]:
        refs: list[Any] = []
        try:
            refs = self._submit(fn, items, desc)
            return list(self.ray.get(refs))
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            _reraise(exc, desc)
            raise
        finally:
            del refs  # drop every ObjectRef: the store frees the objects

    def map_reduce(self, fn: Callable[[T], S], items: Sequence[T], merge: Callable[[S, S], S], *,
                   desc: str = "shards") -> S:
        if not items:
            raise GapkitError("nothing to merge (no shards)")
        merge_task = self._remote(merge)
        level: list[Any] = []
        try:
            level = self._submit(fn, items, desc)
            while len(level) > 1:  # the same fixed tree as tree_order, each merge a task near its inputs
                nxt = [merge_task.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            return self.ray.get(level[0])
        except Exception as exc:  # noqa: BLE001
            _reraise(exc, desc)
            raise
        finally:
            del level

    def pipeline(self, items: Sequence[dict[str, int]], prepare: Callable[[Any, Any], Any],
                 load: Callable[[Any, str], Any], apply: Callable[[Any, Any, Any], Any], *, context: Any,
                 actors: int = 1, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0,
                 desc: str = "batches") -> Iterator[dict[str, Any]]:
        """Ray Data: one block per item; `prepare` as CPU tasks (map_batches with a function), then
        `apply` in a pool of `actors` actors that each call `load` once (map_batches with a callable
        class, num_gpus=gpus_per_actor), results streamed back in item order (preserve_order)."""
        import ray.data

        dctx = ray.data.DataContext.get_current()
        dctx.execution_options.preserve_order = True  # results in item order: deterministic output
        dctx.enable_progress_bars = False  # the driver shows its own bar (rows written)
        dctx.print_on_execution_start = False
        ds = None
        try:
            ds = ray.data.from_items(list(items), override_num_blocks=max(1, len(items)))
            # Decoding must stay in CPU tasks that run beside the (GPU) actors, not inside them:
            # Ray Data fuses consecutive map stages whose resource requests are equal, so the
            # prepare stage asks for a different CPU share than the actors (ray-project/ray#54433;
            # the older way, ray_remote_args_fn, is deprecated and goes in Ray 2.64).
            ds = ds.map_batches(_prepare_batch, fn_kwargs={"prepare": prepare, "context": context},
                                batch_size=1, batch_format="numpy", num_cpus=_prepare_cpus(cpus_per_actor))
            ds = ds.map_batches(_ModelActor, fn_constructor_kwargs={"load": load, "apply": apply, "context": context,
                                                                    "device": "cuda" if gpus_per_actor > 0 else "cpu"},
                                batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                                num_gpus=gpus_per_actor, num_cpus=cpus_per_actor)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for stage, col in (("prepare", _NODE_PREPARE), ("apply", _NODE_APPLY)):
                    for tag in np.unique(batch.pop(col)):  # where the work ran (reported, then dropped)
                        node, pid = str(tag).rsplit(":", 1)
                        self.nodes_used.add(node)
                        self.stage_pids[stage].add(int(pid))
                yield batch
        except Exception as exc:  # noqa: BLE001
            _reraise(exc, desc)
            raise
        finally:
            del ds

    def close(self) -> None:
        """Shut down the local Ray instance if this engine started it (a joined cluster keeps running)."""
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _prepare_cpus(cpus_per_actor: float) -> float:
    """CPU share of one prepare task: 0.5, or 1 when the actors themselves ask for 0.5 (unequal
    requests are what keeps Ray Data from fusing the two stages)."""
    return 1.0 if cpus_per_actor == 0.5 else 0.5


_NODE_PREPARE, _NODE_APPLY = "_gapkit_node_prepare", "_gapkit_node_apply"


def _node_column(batch: dict[str, Any], name: str) -> dict[str, Any]:
    """Tag every row with "node_id:pid" of the worker that processed it (the driver reports and
    drops it)."""
    import ray

    n = len(next(iter(batch.values()))) if batch else 0
    batch[name] = np.full(n, f"{ray.get_runtime_context().get_node_id()}:{os.getpid()}")
    return batch


def _prepare_batch(batch: dict[str, Any], prepare: Callable[[Any, Any], Any], context: Any) -> dict[str, Any]:
    """Ray Data CPU task: a one-row batch of item columns -> prepare(context, item)."""
    item = {k: int(v[0]) for k, v in batch.items()}
    return _node_column(prepare(context, item), _NODE_PREPARE)


class _ModelActor:
    """Ray Data actor: load the model once, then apply it to every block it is given."""

    def __init__(self, load: Callable[[Any, str], Any], apply: Callable[[Any, Any, Any], Any], context: Any,
                 device: str) -> None:
        self.model = load(context, device)
        self.apply, self.context = apply, context

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        tag = batch.pop(_NODE_PREPARE)
        out = self.apply(self.model, self.context, batch)
        out[_NODE_PREPARE] = tag
        return _node_column(out, _NODE_APPLY)
