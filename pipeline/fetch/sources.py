"""Where a catalogue file's bytes are: the Hub (through huggingface_hub) or a plain URL.

``locate(entry)`` asks the server before anything is downloaded: the URL to fetch (after the Hub's
redirect to its CDN), the exact size and the sha256 to check. For Hub files huggingface_hub does the
asking: the endpoint (``HF_ENDPOINT`` or ``endpoint=``), the token (``HF_TOKEN`` or a stored
`hf auth login`), offline mode (``HF_HUB_OFFLINE``) and the Hub's error codes (gated, not found) are
its. Its answers become Dermis errors with one sentence the user can act on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, get_session, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers

from ..errors import ChecksumMismatch, DownloadFailed, GatedModel, NetworkUnavailable
from ..models.catalogue import CatalogueFile

_SHA256 = re.compile(r"[0-9a-f]{64}")
LOCATE_TIMEOUT = 20.0  # s for the HEAD request that asks for size and checksum


@dataclass(frozen=True)
class Remote:
    """What the server says about one file, just before its download."""

    url: str  # the bytes (the Hub's CDN location after its redirect)
    size: int | None  # bytes, None when the server does not say
    sha256: str  # what the finished file must hash to; "" when nobody states it
    headers: dict[str, str] = field(default_factory=dict)  # auth only where the Hub itself serves
    checked_by: str = ""  # who states the sha256: "catalogue", "hub" or both


def hub_endpoint() -> str | None:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, at import; tests and mirrors set it later)."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def locate(entry: CatalogueFile, *, endpoint: str | None = None, token: str | bool | None = None) -> Remote:
    """Ask the server where ``entry`` is, how big it is and what it hashes to."""
    try:
        remote = _hub(entry, endpoint or hub_endpoint(), token) if entry.source == "hf" else _url(entry)
    except OfflineModeIsEnabled:
        raise NetworkUnavailable("Downloads are switched off (HF_HUB_OFFLINE is set); unset it to download "
                                 f"{entry.filename}.") from None
    except GatedRepoError:
        raise gated(entry) from None
    except httpx2.TransportError as e:
        raise NetworkUnavailable(f"Cannot reach {_host(entry, endpoint)} to download {entry.filename} ({e}); "
                                 "check the network connection and try again.") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else 0
        if status in (401, 403):
            raise gated(entry) from None
        raise DownloadFailed(f"{_host(entry, endpoint)} refused {entry.filename} (HTTP {status}): "
                             f"{str(e).splitlines()[0]}") from None
    _check_against_catalogue(entry, remote)
    return remote


def gated(entry: CatalogueFile) -> GatedModel:
    page = entry.page_url
    return GatedModel(f"{entry.repo or page} is gated: accept its licence on {page} while logged in, log in "
                      "here (`hf auth login`, or set HF_TOKEN), and try again.")


def _hub(entry: CatalogueFile, endpoint: str | None, token: str | bool | None) -> Remote:
    url = hf_hub_url(entry.repo, entry.path, revision=entry.revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=token, endpoint=endpoint, timeout=LOCATE_TIMEOUT)
    headers = build_hf_headers(token=token)
    if meta.location != url and not _same_origin(url, meta.location):
        headers.pop("authorization", None)  # a signed CDN URL: the token stays with the Hub
    hub_sha = meta.etag if meta.etag and _SHA256.fullmatch(meta.etag) else ""  # LFS files: the sha256
    if entry.sha256 and hub_sha and hub_sha != entry.sha256:
        raise ChecksumMismatch(f"The Hub's {entry.filename} (sha256 {hub_sha[:12]}…) is not the file the "
                               f"catalogue names ({entry.sha256[:12]}…): it changed upstream, so it was not "
                               "downloaded.")
    return Remote(meta.location, meta.size, entry.sha256 or hub_sha, headers,
                  checked_by=", ".join(n for n, v in (("catalogue", entry.sha256), ("hub", hub_sha)) if v))


def _url(entry: CatalogueFile) -> Remote:
    response = get_session().head(entry.url, follow_redirects=True, timeout=LOCATE_TIMEOUT)
    if response.status_code >= 400:
        raise DownloadFailed(f"{urlsplit(entry.url).netloc} refused {entry.filename} "
                             f"(HTTP {response.status_code}); its page: {entry.page_url}.")
    length = response.headers.get("Content-Length")
    # GitHub's signed download URLs expire within minutes: fetch through the catalogue's URL each time
    return Remote(entry.url, int(length) if length and length.isdigit() else None, entry.sha256,
                  checked_by="catalogue" if entry.sha256 else "")


def _check_against_catalogue(entry: CatalogueFile, remote: Remote) -> None:
    """Refuse before downloading when the server's file is not the catalogue's (changed upstream)."""
    if entry.size is not None and remote.size is not None and entry.size != remote.size:
        raise ChecksumMismatch(f"The server's {entry.filename} has {remote.size:,} bytes, the catalogue's "
                               f"{entry.size:,}: it changed upstream, so it was not downloaded.")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _host(entry: CatalogueFile, endpoint: str | None) -> str:
    if entry.source == "hf":
        return urlsplit(endpoint or hub_endpoint() or constants.ENDPOINT).netloc
    return urlsplit(entry.url).netloc
