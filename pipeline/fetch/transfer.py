"""One file from a URL into the models folder: resumable, checked, published atomically.

The bytes go into a hidden ``.<name>.download.part`` next to the final file (the locator skips hidden
names, so a partial file is never taken for a model), with a small ``.<name>.download.json`` saying
which remote file (size, sha256, URL) they belong to. A later run with the same remote file asks the
server for the rest (an HTTP Range request) instead of starting again. When the last byte is in, size
and sha256 are checked (a mismatch deletes the partial file and raises ``ChecksumMismatch``), the file is
fsynced and renamed into place in one step.

Why not ``hf_hub_download``: huggingface_hub 2.x downloads into a process-unique temporary name and
deletes it when the process ends, so a killed or cancelled 48 GB download starts from zero next time;
it also writes in 10 MB pieces. This module uses huggingface_hub's own HTTP session (proxy settings,
offline mode, headers), only the resuming and checking are ours.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_session

from ..errors import ChecksumMismatch, DownloadFailed, NetworkUnavailable
from ..files import fsync_dir
from ..progress import CancelToken
from .sources import Remote

CHUNK_BYTES = 1 << 20  # written (and hashed) per read; also how often progress and cancel are looked at
RETRIES = 3  # reconnects after a broken transfer, each resuming where it stopped

BytesFn = Callable[[int, int | None], None]  # (bytes so far, total or None)


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.download.part")


def _marker_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.download.json")


class _Partial:
    """The partial file, its size and the running sha256 of its bytes."""

    def __init__(self, path: Path, cancel: CancelToken | None) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.have = 0
        with open(path, "rb") as f:  # what an earlier run left: the sha256 covers the whole file
            while block := f.read(8 * CHUNK_BYTES):
                self.digest.update(block)
                self.have += len(block)
                if cancel is not None:
                    cancel.check()

    def restart(self) -> None:
        self.digest, self.have = hashlib.sha256(), 0


def download(remote: Remote, dest: Path, *, progress: BytesFn | None = None, cancel: CancelToken | None = None,
             relocate: Callable[[], Remote] | None = None) -> Path:
    """Fetch ``remote`` into ``dest``, resuming a partial file of the same remote file. Cancelling keeps
    the partial file for next time; a checksum mismatch removes it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, marker = partial_path(dest), _marker_path(dest)
    identity = {"size": remote.size, "sha256": remote.sha256, "name": dest.name}
    if not part.exists() or _read_marker(marker) != identity:
        part.write_bytes(b"")  # a partial file of another version of the file is worthless
        marker.write_text(json.dumps(identity), encoding="utf-8")
    partial = _Partial(part, cancel)
    if remote.size is not None and partial.have > remote.size:
        partial.restart()
    attempt = 0
    while True:
        try:
            _transfer(remote, partial, dest.name, progress, cancel)
            break
        except (httpx2.TransportError, DownloadFailed) as e:
            attempt += 1
            if attempt > RETRIES:
                if isinstance(e, httpx2.TransportError):
                    raise NetworkUnavailable(f"The download of {dest.name} broke off after {partial.have:,} "
                                             f"bytes ({e}); run the download again to resume it.") from None
                raise
            remote = relocate() if relocate is not None else remote  # a fresh (signed) URL
    _verify(remote, partial, marker, dest.name)
    with open(part, "rb+") as f:
        f.truncate(partial.have)
        os.fsync(f.fileno())
    os.replace(part, dest)
    marker.unlink(missing_ok=True)
    fsync_dir(dest.parent)
    return dest


def _transfer(remote: Remote, partial: _Partial, name: str, progress: BytesFn | None,
              cancel: CancelToken | None) -> None:
    if remote.size is not None and partial.have == remote.size:
        return
    headers = dict(remote.headers)
    if partial.have:
        headers["Range"] = f"bytes={partial.have}-"
    timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT, connect=constants.HF_HUB_ETAG_TIMEOUT)
    with get_session().stream("GET", remote.url, headers=headers, timeout=timeout, follow_redirects=True) as r:
        if r.status_code == 416 and partial.have and remote.size is None:
            return  # asked beyond the end: it is all there
        if r.status_code >= 400:
            raise DownloadFailed(f"{r.url.host} answered HTTP {r.status_code} for {name}.")
        if partial.have and r.status_code != 206:  # the server ignored the Range: start over
            partial.restart()
        elif partial.have and not r.headers.get("Content-Range", "").startswith(f"bytes {partial.have}-"):
            raise DownloadFailed(f"{r.url.host} sent another part of {name} than was asked for.")
        with open(partial.path, "r+b") as f:
            f.seek(partial.have)
            f.truncate()
            for chunk in r.iter_bytes(CHUNK_BYTES):
                f.write(chunk)
                partial.digest.update(chunk)
                partial.have += len(chunk)
                if progress is not None:
                    progress(partial.have, remote.size)
                if cancel is not None:
                    f.flush()
                    cancel.check()  # Cancelled: the partial file stays for the next run


def _verify(remote: Remote, partial: _Partial, marker: Path, name: str) -> None:
    problem = ""
    sha = partial.digest.hexdigest()
    if remote.size is not None and partial.have != remote.size:
        problem = f"{partial.have:,} bytes arrived, {remote.size:,} were announced"
    elif remote.sha256 and sha != remote.sha256:
        problem = f"its sha256 is {sha}, not {remote.sha256} ({remote.checked_by})"
    if problem:
        partial.path.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        raise ChecksumMismatch(f"The download of {name} is damaged or not the expected file ({problem}); "
                               "it was removed. Run the download again.")


def _read_marker(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
