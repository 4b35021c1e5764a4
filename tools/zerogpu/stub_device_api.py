"""A local stand-in for ZeroGPU's device API, so `app.py` runs in the `spaces` package's real ZeroGPU mode.

With `SPACES_ZERO_GPU=true` the `spaces` package asks a device API (`SPACES_ZERO_DEVICE_API_URL`)
for a GPU before each `@spaces.GPU` call and hands it back after (`spaces/zero/api.py`, `client.py`):
POST /startup-report, POST /schedule -> {idle, nvidiaIndex, nvidiaUUID, allowToken}, POST /allow,
POST /release, GET /queue-size. This stub grants one local GPU to every call at once (no quota,
no queue) and writes each request, timed, to a JSON-lines log.

    python tools/zerogpu/stub_device_api.py --port 7861 --uuid "$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)"
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


class DeviceAPI:
    """The grants in flight; `idle` tells the client whether its previous worker process may be reused."""

    def __init__(self, gpu_uuid: str, log: Path | None = None):
        self.gpu_uuid, self.log = gpu_uuid, log
        self.granted: dict[str, float] = {}
        self.lock = threading.Lock()

    def record(self, path: str, params: dict, status: int) -> None:
        if self.log is not None:
            with self.lock, self.log.open("a") as f:
                f.write(json.dumps({"t": time.time(), "path": path, "params": params, "status": status}) + "\n")

    def handle(self, method: str, path: str, params: dict) -> tuple[int, object]:
        if (method, path) == ("POST", "/startup-report"):
            return 200, None
        if (method, path) == ("POST", "/schedule"):
            token = uuid.uuid4().hex
            with self.lock:
                idle = not self.granted
                self.granted[token] = time.time()
            return 200, {"idle": idle, "nvidiaIndex": 0, "nvidiaUUID": self.gpu_uuid, "allowToken": token}
        if (method, path) == ("POST", "/allow"):
            return (200 if params.get("allowToken") in self.granted else 404), None
        if (method, path) == ("POST", "/release"):
            with self.lock:
                found = self.granted.pop(params.get("allowToken", ""), None)
            return (200 if found is not None else 404), None
        if (method, path) == ("GET", "/queue-size"):
            return 200, 0.0
        return 404, {"detail": f"no such endpoint: {method} {path}"}


def serve(api: DeviceAPI, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve `api` on a daemon thread; `server.shutdown()` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, body = api.handle(method, url.path, params)
            api.record(url.path, params, status)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--uuid", required=True, help="the local GPU's UUID (nvidia-smi --query-gpu=uuid --format=csv)")
    parser.add_argument("--log", type=Path, default=None, help="append each request here, as JSON lines")
    args = parser.parse_args()
    serve(DeviceAPI(args.uuid, args.log), args.port)
    print(f"ZeroGPU device API stub on http://127.0.0.1:{args.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
