"""``deepmnist demo``: the web page of ``examples/web`` on 127.0.0.1, with its files served locally.

Mounts: ``/app/`` the page, ``/ort/`` onnxruntime-web's ``dist`` folder from the npm package (no
CDN), ``/models/`` the export folder (``deep_mnist_uint8.onnx`` is checked against the manifest's
SHA-256 first). Prints the URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.runtimes.js_host import NODE_MODULES, NPM_INSTALL, StaticServer, web_mounts
from exporters.manifest import load_manifest
from models.errors import UserError, parse_int
from models.paths import REPO_ROOT, export_dir

WEB_APP = REPO_ROOT / "examples" / "web"
APP_MODEL = ("model_uint8", "onnx")


def demo_mounts(export_folder: Path) -> dict[str, Path]:
    """What the page needs; raises UserError when the model or the npm package is missing."""

    if not (NODE_MODULES / "onnxruntime-web" / "dist").is_dir():
        raise UserError(f"{NODE_MODULES / 'onnxruntime-web'}: not installed; run {NPM_INSTALL}")
    model = load_manifest(export_folder).verified_path(*APP_MODEL)
    return web_mounts(app=WEB_APP, models=model.parent)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="serve the draw-a-digit web page (onnxruntime-web) on 127.0.0.1")
    p.add_argument(
        "--artifacts", metavar="DIR", help="artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)"
    )
    p.add_argument(
        "--port", type=parse_int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free port)"
    )
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: use 0..65535")
    mounts = demo_mounts(export_dir(args.artifacts))
    try:
        server = StaticServer(mounts, port=args.port)
    except OSError as e:
        raise UserError(f"127.0.0.1:{args.port}: cannot listen ({e.strerror}); try --port 0") from None
    with server:
        print(f"demo: {server.url}app/  (Ctrl-C stops it)", flush=True)
        while True:
            time.sleep(3600)
