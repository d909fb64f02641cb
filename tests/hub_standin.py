"""A stand-in for the Hugging Face Hub (and a GitHub-style release host) on 127.0.0.1, for the download
tests: the real huggingface_hub client talks to it through its endpoint setting (HF_ENDPOINT).

Two servers, because the Hub hands LFS files to a CDN on another origin:
- the hub: ``HEAD|GET /{org}/{repo}/resolve/{revision}/{path}`` answers an LFS file with a 302 to the
  CDN carrying what huggingface_hub reads (``X-Repo-Commit``, ``X-Linked-Etag`` = the sha256,
  ``X-Linked-Size``, ``ETag``), a small file with 200 and its bytes, a gated repo without the right
  token with 401/403 and ``X-Error-Code: GatedRepo``, anything else with 404 ``EntryNotFound``;
  ``/releases/{name}`` redirects to the CDN like a GitHub release download.
- the CDN: ``GET|HEAD /blob/{sha256}`` serves the bytes with ``Accept-Ranges`` and answers
  ``Range: bytes=N-`` with 206 and ``Content-Range``.
Every request is logged (method, path, Range, Authorization, bytes sent); ``stall_after`` makes the
CDN stop sending after that many bytes of a body until ``release`` is set (to kill a client mid-file).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "c0ffee" + "0" * 34
PIECE = 64 << 10  # bytes per write of a body


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str = ""
    authorization: str = ""
    sent: int = 0  # body bytes written


@dataclass
class HubStandIn:
    lfs: dict[str, bytes] = field(default_factory=dict)  # "org/repo/path" -> bytes, served via the CDN
    small: dict[str, bytes] = field(default_factory=dict)  # "org/repo/path" -> bytes, served by the hub
    releases: dict[str, bytes] = field(default_factory=dict)  # "name" -> bytes, /releases/name -> CDN
    gated: dict[str, int] = field(default_factory=dict)  # "org/repo" -> 401 or 403 without the token
    token: str = "hf_standin_token"
    tamper: dict[str, bytes] = field(default_factory=dict)  # sha256 -> other bytes the CDN sends instead
    stall_after: int | None = None
    throttle_s: float = 0.0  # sleep after each 64 KiB piece of a body (a slow connection)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        for server in (self._hub, self._cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def release_url(self, name: str) -> str:
        return f"{self.endpoint}/releases/{name}"

    def blob(self, sha: str) -> bytes | None:
        for data in (*self.lfs.values(), *self.releases.values()):
            if hashlib.sha256(data).hexdigest() == sha:
                return self.tamper.get(sha, data)
        return None

    def served(self, server: str = "cdn", method: str = "GET") -> list[Request]:
        return [r for r in self.requests if r.server == server and r.method == method]

    def close(self) -> None:
        self.release.set()
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()


def _handler(hub: HubStandIn, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            req = Request(name, self.command, self.path, self.headers.get("Range", ""),
                          self.headers.get("Authorization", ""))
            hub.requests.append(req)
            if name == "cdn":
                return self._blob(req, body)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path)
            if self.path.startswith("/releases/") and self.path[10:] in hub.releases:
                sha = hashlib.sha256(hub.releases[self.path[10:]]).hexdigest()
                return self._send(302, {"Location": f"{hub.cdn}/blob/{sha}", "Content-Length": "0"})
            if m is None:
                return self._send(404, {"Content-Length": "0"})
            repo, path = m.group(1), m.group(3)
            if repo in hub.gated and req.authorization != f"Bearer {hub.token}":
                return self._send(hub.gated[repo], {
                    "X-Error-Code": "GatedRepo", "Content-Length": "0",
                    "X-Error-Message": f"Access to model {repo} is restricted. You must have access to it and "
                                       "be authenticated to access it. Please log in."})
            key = f"{repo}/{path}"
            common = {"X-Repo-Commit": COMMIT}
            if key in hub.lfs:
                data = hub.lfs[key]
                sha = hashlib.sha256(data).hexdigest()
                return self._send(302, {**common, "Location": f"{hub.cdn}/blob/{sha}", "ETag": '"gitsha1"',
                                        "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                        "Content-Length": "0"})
            if key in hub.small:
                data = hub.small[key]
                etag = hashlib.sha1(data).hexdigest()
                return self._send(200, {**common, "ETag": f'"{etag}"', "Content-Length": str(len(data))},
                                  data if body else b"", req)
            return self._send(404, {**common, "X-Error-Code": "EntryNotFound", "Content-Length": "0"})

        def _blob(self, req: Request, body: bool) -> None:
            m = re.fullmatch(r"/blob/([0-9a-f]{64})", self.path)
            data = hub.blob(m.group(1)) if m else None
            if data is None:
                return self._send(404, {"Content-Length": "0"})
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", req.range)
            if rng:
                start = int(rng.group(1))
                if start >= len(data):
                    return self._send(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                status = 206
            else:
                headers, status = {}, 200
            headers.update({"Accept-Ranges": "bytes", "Content-Length": str(len(data) - start)})
            self._send(status, headers, data[start:] if body else b"", req)

        def _send(self, status: int, headers: dict[str, str], data: bytes = b"", req: Request | None = None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            for offset in range(0, len(data), PIECE):
                if hub.stall_after is not None and req is not None and req.sent >= hub.stall_after:
                    self.wfile.flush()
                    if not hub.release.wait(30):
                        return
                try:
                    self.wfile.write(data[offset:offset + PIECE])
                except OSError:  # the client went away (killed on purpose)
                    return
                if req is not None:
                    req.sent += len(data[offset:offset + PIECE])
                if hub.throttle_s:
                    time.sleep(hub.throttle_s)

    return Handler
