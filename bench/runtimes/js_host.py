"""onnxruntime in JavaScript, driven from Python: onnxruntime-node in a Node process and
onnxruntime-web (wasm) in headless Chromium, both speaking the requests of ``bench/runtimes/js/``.

Used by ``deepmnist portability`` (the same model files in every consumer), ``deepmnist demo``
(the web page of ``examples/web``) and the benchmark runtimes ``onnxruntime-node`` and
``onnxruntime-web``. The npm packages come from ``package.json`` / ``package-lock.json`` at the
repository root (``ONNXRUNTIME_NODE_INSTALL=skip npm ci``); Chromium and its driver are Debian's
``chromium`` and ``chromium-driver``, driven by selenium. When one is missing, ``node_reason()``
and ``web_reason()`` say what, and callers skip with that reason.

The browser gets its files from ``StaticServer`` on 127.0.0.1: the runtime's files from the npm
package (no CDN), the page, and the models and images the caller names. It sends the headers that
make the page cross-origin isolated, so onnxruntime-web may use wasm threads.
"""

from __future__ import annotations

import functools
import http.server
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from models.paths import REPO_ROOT

JS_DIR = REPO_ROOT / "bench" / "runtimes" / "js"
NODE_MODULES = REPO_ROOT / "node_modules"
NPM_INSTALL = "ONNXRUNTIME_NODE_INSTALL=skip npm ci (at the repository root)"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"


class JsError(RuntimeError):
    """The JS side answered with an error (its message, one line)."""


def _package_version(name: str) -> str | None:
    try:
        return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@functools.cache
def node_reason() -> str | None:
    """None when onnxruntime-node can run here, else why not."""
    if shutil.which("node") is None:
        return "node is not installed (Node.js 18 or newer)"
    if _package_version("onnxruntime-node") is None:
        return f"the npm package onnxruntime-node is not installed: {NPM_INSTALL}"
    return None


def chromium_binary() -> str | None:
    return next((p for name in CHROMIUM if (p := shutil.which(name))), None)


@functools.cache
def web_reason() -> str | None:
    """None when onnxruntime-web can run here in headless Chromium, else why not."""
    if _package_version("onnxruntime-web") is None:
        return f"the npm package onnxruntime-web is not installed: {NPM_INSTALL}"
    if chromium_binary() is None:
        return "Chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if shutil.which(CHROMEDRIVER) is None:
        return "chromedriver is not installed (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[js]")'
    return None


def node_version() -> str:
    return _package_version("onnxruntime-node") or ""


def web_version() -> str:
    return _package_version("onnxruntime-web") or ""


# ----------------------------------------------------------------------------- static server


class StaticServer:
    """Serves ``mounts`` (URL prefix -> folder) on 127.0.0.1 with a free port, in a thread.

    Only files under a mounted folder are served (no listing, no ``..``); every response carries
    ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``.
    A path that names no such file, or no file at all (a NUL byte, a name too long for the file
    system), is answered 404; a request that fails otherwise prints one line, never a traceback.
    """

    def __init__(self, mounts: dict[str, Path], port: int = 0) -> None:
        self.mounts = {prefix.strip("/"): Path(folder).resolve() for prefix, folder in mounts.items()}
        handler = functools.partial(_Handler, self)
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def resolve(self, url_path: str) -> Path | None:
        parts = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path).strip("/").split("/", 1)
        folder = self.mounts.get(parts[0])
        if folder is None:
            return None
        try:  # "/app/%00": ValueError (embedded null byte); 10,000 characters: OSError (name too long)
            path = (folder / (parts[1] if len(parts) > 1 else "index.html")).resolve()
            return path if path.is_file() and path.is_relative_to(folder) else None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of socketserver's traceback (a client that went away mid-answer: none)."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            print(
                f"server: a request from {client_address[0]} failed: {type(error).__name__}: {error}",
                file=sys.stderr,
            )


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, server_: StaticServer, *args: Any) -> None:
        self.static = server_
        super().__init__(*args)

    def do_GET(self) -> None:
        path = self.static.resolve(self.path)
        if path is None:
            self.send_error(404)
            return
        try:
            data = path.read_bytes()
        except OSError:  # removed or made unreadable since resolve()
            self.send_error(404)
            return
        kind = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}.get(
            path.suffix
        ) or (mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the callers report
        pass


def web_mounts(**extra: Path) -> dict[str, Path]:
    """The runtime's files from the npm package, the runner page, and ``extra`` folders."""
    return {"ort": NODE_MODULES / "onnxruntime-web" / "dist", "runner": JS_DIR, **extra}


# ----------------------------------------------------------------------------- sessions


class NodeSession:
    """One Node process running ``bench/runtimes/js/node_runner.mjs``; requests go one at a time."""

    def __init__(self, timeout_s: float = 600) -> None:
        if reason := node_reason():
            raise JsError(reason)
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(
            ["node", str(JS_DIR / "node_runner.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )

    def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            err = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()
            raise JsError(f"node exited with status {self.proc.returncode}: {err[-1] if err else ''}")
        answer = json.loads(line)
        if "error" in answer:
            raise JsError(answer["error"])
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the runner ends at the end of its input
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> NodeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chrome(width: int = 800, height: int = 600):
    """Headless Chromium through Debian's chromedriver (selenium)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary() or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    service = Service(executable_path=shutil.which(CHROMEDRIVER))
    return webdriver.Chrome(options=options, service=service)


class WebSession:
    """onnxruntime-web in headless Chromium: a server for ``mounts`` plus the runner page."""

    def __init__(self, mounts: dict[str, Path], timeout_s: float = 600) -> None:
        if reason := web_reason():
            raise JsError(reason)
        start = time.perf_counter()
        self.server = StaticServer(web_mounts(**mounts)).__enter__()
        try:
            self.driver = chrome()
            self.driver.set_script_timeout(timeout_s)
            self.driver.get(self.server.url + "runner/runner.html")
            self.driver.execute_async_script(
                "const done = arguments[0];"
                "(function wait() { window.deepmnistReady ? done(true) : setTimeout(wait, 20); })();"
            )
            self.started_s = time.perf_counter() - start  # s: browser launched, runtime loaded in the page
        except Exception:
            self.server.__exit__(None, None, None)
            raise

    def url(self, mount: str, relative: str | os.PathLike) -> str:
        return f"{self.server.url}{mount}/{Path(relative).as_posix()}"

    def request(self, **req: Any) -> dict[str, Any]:
        answer = self.driver.execute_async_script(
            "window.deepmnist.handle(arguments[0]).then(arguments[1]);", req
        )
        if answer is None:
            raise JsError("the page returned nothing")
        if "error" in answer:
            raise JsError(answer["error"])
        return answer

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.server.__exit__(None, None, None)

    def __enter__(self) -> WebSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_outputs(answer: dict[str, Any], prefix: Path | None = None) -> dict[str, np.ndarray]:
    """Outputs of a ``run`` answer as arrays: from the files at ``prefix`` (Node) or base64 (web)."""
    import base64

    arrays = {}
    for name, spec in answer["outputs"].items():
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        if "base64" in spec:
            raw = base64.b64decode(spec["base64"])
        else:
            assert prefix is not None
            raw = Path(f"{prefix}{name}.bin").read_bytes()
        arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(spec["dims"]).astype(np.dtype(spec["dtype"]))
    return arrays


# ----------------------------------------------------------------------------- benchmark runtimes


class JsPrepared:
    """A prepared model in onnxruntime-node or onnxruntime-web for the benchmark harness: ``to_device``
    writes the input where the JS process reads it, ``run`` runs it there (for parity and
    accuracy), ``time_calls`` times calls inside the JS process (``SelfTimed``)."""

    def __init__(self, model: Path, threads: int, web: bool) -> None:
        import tempfile
        import weakref

        self.web = web
        self.tmp = Path(tempfile.mkdtemp(prefix="deepmnist-js-"))
        if web:
            self.session: NodeSession | WebSession = WebSession({"models": model.parent, "tmp": self.tmp})
            ref = self.session.url("models", model.name)
        else:
            self.session, ref = NodeSession(), str(model)
        weakref.finalize(self, _close_js, self.session, self.tmp)
        answer = self.session.request(cmd="load", model=ref, threads=threads)
        # s, the host's start to the runtime ready (SelfTimed.host_start_s): Node's own count from
        # its process start; the browser's, its launch to the runner page ready
        self.host_start_s = answer["start_ms"] / 1e3 if not web else self.session.started_s
        self.execution_provider = "wasm" if web else "CPU"
        self.output = answer["outputs"][0]
        self._inputs = 0

    def to_device(self, x: np.ndarray) -> dict[str, Any]:
        """The input as the JS side reads it: a file (Node) or a URL of it (web)."""
        self._inputs += 1
        name = f"input-{self._inputs}.bin"
        (self.tmp / name).write_bytes(np.ascontiguousarray(x).tobytes())
        where = (
            self.session.url("tmp", name) if isinstance(self.session, WebSession) else str(self.tmp / name)
        )
        return {"input": where, "dtype": str(x.dtype), "shape": list(x.shape), "batch": int(x.shape[0])}

    def run(self, x: dict[str, Any]) -> np.ndarray:
        answer = self.session.request(cmd="run", out=f"{self.tmp}/out-", **x)
        return decode_outputs(answer, self.tmp / "out-")[self.output]

    def to_host(self, y: np.ndarray) -> np.ndarray:
        return y

    def sync(self) -> None:
        pass

    def time_calls(self, x: dict[str, Any], calls: int, warm_s: float) -> list[float]:
        answer = self.session.request(cmd="time", seconds=0, calls=calls, warmup_ms=warm_s * 1e3, **x)
        return [ms / 1e3 for ms in answer["samples_ms"]]


def _close_js(session: NodeSession | WebSession, tmp: Path) -> None:
    try:
        session.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
