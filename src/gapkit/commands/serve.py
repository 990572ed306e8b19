"""`gapkit serve IDX`: a local web page and JSON API over a mixed-modality index."""
from __future__ import annotations

import argparse

HELP = "serve a search page + JSON API over an index (FastAPI + uvicorn, localhost by default)"
DESCRIPTION = """\
Serve one web page over an index built by `gapkit index build` (or by `gapkit demo`, in RUN/index):
type a query or upload an image, and see images (thumbnails) and texts in one ranked list, the
corrected ranking beside the raw-cosine ranking, P(match) on each hit and the image share of the
top 10. JSON API: /search, /score, /info (docs/search.md, "Serving").

It binds 127.0.0.1 (this machine only) unless --host says otherwise; only image files registered
in the index are ever served; uploads above --max-upload-mb are refused.

examples:
  gapkit serve runs/demo-20261130-1200/index
  gapkit serve my-index --port 8080
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..serve import DEFAULT_HOST, DEFAULT_MAX_UPLOAD, DEFAULT_PORT

    p.add_argument("index", metavar="IDX", help="index directory")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD / 2**20,
                   help="largest image upload accepted, in MiB (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import GapkitError

    if not 0 < args.port < 65536:
        raise GapkitError(f"--port must be in 1..65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise GapkitError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    try:
        import uvicorn
    except ImportError:
        raise GapkitError("gapkit serve needs fastapi and uvicorn: pip install 'gapkit[serve]'") from None
    from ..search import open_index
    from ..serve import create_app

    _check_bind(args.host, args.port)
    index = open_index(args.index)
    if index.query_roles():  # load the query encoder now, so the first query does not wait for it
        print("gapkit serve: loading the index's query encoder ...", file=sys.stderr, flush=True)
        index.encoder()
    app = create_app(index, max_upload_bytes=int(args.max_upload_mb * 2**20))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"gapkit serve: warning: binding {args.host} makes the page reachable from other machines",
              file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"gapkit serve: {args.index} at http://{shown}:{args.port}/  (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_bind(host: str, port: int) -> None:
    """One clear line (not uvicorn's log and exit) when the address cannot be bound."""
    import socket

    from ..errors import GapkitError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise GapkitError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
