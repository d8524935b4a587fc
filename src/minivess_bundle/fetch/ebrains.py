"""Download MiniVess from the EBRAINS data-proxy: verified, resumable, polite.

Why each piece:

* **listing** — the data-proxy lists a dataset's objects (name, bytes, hash,
  last_modified) page by page (``limit``/``marker``, until an empty page). The listing is saved as
  provenance and is what every byte is checked against.
* **verified** — each file streams to ``<cache>/<name>.part``; its size must equal
  the listing's ``bytes`` and, when the listing hash is an MD5 (32 hex digits),
  its MD5 must match; the sha256 is always recorded. Only then is it renamed
  into place. A mismatch deletes the partial file and retries from zero.
* **resumable** — a ``.part`` left by a killed or failed job resumes with an
  HTTP ``Range`` request; a server that answers ``200`` instead of ``206`` (or a
  ``Content-Range`` that does not start where we are) restarts from zero.
  Verified files in the cache are never fetched again (no network at all).
* **polite** — bounded retries with exponential backoff and full jitter on
  timeouts, resets, 408, 429 and 5xx, honouring ``Retry-After``; no retry on
  other 4xx. A descriptive User-Agent. Concurrency is capped by the workflow
  (Snakemake resource ``ebrains_connections``).
* **safe** — TLS verification is always on (an extra CA bundle may be given);
  redirects (to the object store) are followed by hand and never carry the
  ``Authorization`` header; no token is ever logged; names from the listing are
  checked so a download can never write outside the cache folder.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import logging
import os
import random
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from .. import __version__
from ..core.dataset import EBRAINS_ID
from ..core.errors import MinivessError
from ..core.fsio import link_or_copy, sha256_file, write_json_atomic
from ..core.volumes import EBRAINS_LICENCE, check_volume_id, staging_names

if TYPE_CHECKING:  # pragma: no cover
    import httpx

log = logging.getLogger(__name__)

USER_AGENT = f"minivess-bundle/{__version__} (MiniVess dataset bundle; httpx)"
DEFAULT_DATASET_ID = EBRAINS_ID
TOKEN_ENV = "EBRAINS_TOKEN"
PAGE_SIZE = 1000
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
CHUNK = 1 << 20


class DownloadError(MinivessError):
    """A file could not be fetched or verified."""

    stage = "download"


def _schema_default(key: str) -> Any:
    from ..core import config

    return config.default(f"ebrains.{key}")


@dataclass(frozen=True)
class ClientSettings:
    """How to talk to the data-proxy; defaults suit the real service. The settings a user
    can change (``ebrains.*`` in the config) default to the config schema's values, read
    when a field is left out (the workflow's spec always passes them)."""

    api_base: str = field(default_factory=lambda: _schema_default("api_base"))
    dataset_id: str = DEFAULT_DATASET_ID
    ca_bundle: str = field(default_factory=lambda: _schema_default("ca_bundle"))
    connect_timeout_s: float = 20.0
    read_timeout_s: float = 60.0
    max_attempts: int = field(default_factory=lambda: _schema_default("max_attempts"))
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def dataset_url(self) -> str:
        return f"{self.api_base.rstrip('/')}/v1/datasets/{self.dataset_id}"


def make_client(settings: ClientSettings) -> httpx.Client:
    """An httpx client with TLS verification on (plus an optional CA bundle)."""
    import ssl

    import httpx

    context = ssl.create_default_context()
    if settings.ca_bundle:
        try:
            context.load_verify_locations(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise DownloadError(
                f"cannot load the CA bundle ({exc})",
                path=settings.ca_bundle,
                expected="a PEM file of CA certificates (ebrains.ca_bundle)",
            ) from exc
    headers = {"User-Agent": USER_AGENT}
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(verify=context, headers=headers, timeout=timeout, follow_redirects=False)


def _sleep(seconds: float) -> None:
    """Wait between attempts (a seam for tests, which record instead of sleeping)."""
    time.sleep(seconds)


# --- retries ----------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def backoff_seconds(attempt: int, settings: ClientSettings, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins when longer."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
    wait = random.uniform(0, ceiling)
    if retry_after is not None:
        wait = max(wait, min(retry_after, settings.backoff_max_s))
    return wait


class _Retryable(Exception):
    """A failure worth another attempt; ``retry_after`` from the server if it said."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _check_status(response: httpx.Response, url: str, attempt: int) -> None:
    status = response.status_code
    if status in RETRY_STATUS:
        raise _Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
    if status >= 400:
        raise DownloadError(
            f"GET {url} answered HTTP {status} on attempt {attempt} (not retried)",
            expected="HTTP 200/206",
        )


# --- listing ----------------------------------------------------------------------------------


def _get_json(client: httpx.Client, url: str, params: dict, settings: ClientSettings) -> Any:
    for attempt in range(1, settings.max_attempts + 1):
        try:
            response = client.get(url, params=params)
            _check_status(response, url, attempt)
            return response.json()
        except (_Retryable, *_transport_errors()) as exc:
            reason = exc.reason if isinstance(exc, _Retryable) else type(exc).__name__
            if attempt == settings.max_attempts:
                raise DownloadError(
                    f"GET {url} failed after {attempt} attempts ({reason})",
                    expected="a JSON listing page",
                ) from exc
            wait = backoff_seconds(attempt, settings, getattr(exc, "retry_after", None))
            log.warning("GET %s: %s on attempt %d; retrying in %.1f s", url, reason, attempt, wait)
            _sleep(wait)
        except ValueError as exc:
            raise DownloadError(f"GET {url} did not return JSON ({exc})") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def list_objects(
    client: httpx.Client, settings: ClientSettings, page_size: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    """Every object of the dataset, following ``marker`` pagination to an EMPTY page.

    A short page does not end the listing: object stores cap pages below the client's
    ``limit`` (Swift at 10 000, some proxies far lower), so only an empty page does. A marker
    seen twice (a server that ignores it) is an error naming it, never an endless loop.
    """
    url = settings.dataset_url()
    objects: list[dict[str, Any]] = []
    marker = None
    seen: set[str] = set()
    while True:
        params: dict[str, Any] = {"limit": page_size}
        if marker:
            params["marker"] = marker
        page = _get_json(client, url, params, settings)
        batch = page.get("objects") if isinstance(page, dict) else None
        if not isinstance(batch, list):
            raise DownloadError(f"listing page of {url} has no 'objects' list")
        for item in batch:
            objects.append(
                {
                    "name": str(item["name"]),
                    "bytes": int(item["bytes"]),
                    "hash": str(item.get("hash") or ""),
                    "last_modified": str(item.get("last_modified") or ""),
                }
            )
        log.info("listing: page of %d objects (marker %s)", len(batch), marker or "-")
        if not batch:
            break
        marker = str(batch[-1]["name"])
        if marker in seen:
            raise DownloadError(
                f"listing of {url} repeated the marker {marker!r} (the server ignores it)",
                expected="each page to start after the previous page's last name",
            )
        seen.add(marker)
    return sorted(objects, key=lambda o: o["name"])


def required_names(volumes: Iterable[str]) -> list[str]:
    """Object names the given volumes need (plus the licence)."""
    names = [EBRAINS_LICENCE]
    for volume in volumes:
        names.extend(staging_names(volume).values())
    return names


def check_listing(objects: list[dict[str, Any]], volumes: Iterable[str]) -> None:
    """Raise one error listing every object the requested volumes need but the listing lacks."""
    present = {o["name"] for o in objects}
    missing = [name for name in required_names(volumes) if name not in present]
    if missing:
        shown = ", ".join(missing[:20]) + (
            f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        )
        raise DownloadError(
            f"the dataset listing lacks {len(missing)} required object(s): {shown}",
            expected="an image, a mask and a json per volume, and the licence",
        )


def write_listing(
    path: str | Path, objects: list[dict[str, Any]], settings: ClientSettings
) -> None:
    """Save the listing as provenance (no time or host of ours in it)."""
    write_json_atomic(
        path,
        {
            "api_base": settings.api_base,
            "dataset_id": settings.dataset_id,
            "count": len(objects),
            "bytes": sum(o["bytes"] for o in objects),
            "objects": objects,
        },
    )


def fetch_listing(
    out: str | Path, volumes: Iterable[str], settings: ClientSettings, page_size: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    """List the dataset, check the requested volumes are complete, save ``listing.json``."""
    volumes = [check_volume_id(v) for v in volumes]
    with make_client(settings) as client:
        objects = list_objects(client, settings, page_size)
    check_listing(objects, volumes)
    write_listing(out, objects, settings)
    log.info("listing: %d objects, %d bytes", len(objects), sum(o["bytes"] for o in objects))
    return objects


# --- one file ---------------------------------------------------------------------------------


def safe_relative(name: str) -> PurePosixPath:
    """A listing name as a relative path that cannot leave the cache folder."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or path.is_absolute()
        or any(part in ("..", "") for part in name.split("/"))
    ):
        raise DownloadError(f"object name {name!r} is not a safe relative path")
    return path


def object_url(settings: ClientSettings, name: str) -> str:
    return f"{settings.dataset_url()}/{quote(name)}"


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, entry: dict[str, Any]) -> str | None:
    """``None`` if ``path`` matches the listing entry, else what differs."""
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"size {size} bytes, expected {entry['bytes']}"
    expected = entry.get("hash", "").lower()
    if MD5_RE.match(expected):
        actual = _md5_file(path)
        if actual != expected:
            return f"md5 {actual}, expected {expected}"
    return None


class _Progress:
    """A tqdm bar on a terminal, a log line every ~10 % otherwise."""

    def __init__(self, name: str, total: int, start: int) -> None:
        self.name, self.total, self.done = name, total, start
        self.bar = None
        self.next_log = start + total // 10
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.next_log and self.total:
            log.info(
                "%s: %d / %d bytes (%.0f %%)",
                self.name,
                self.done,
                self.total,
                100 * self.done / self.total,
            )
            self.next_log = self.done + self.total // 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stream_once(
    client: httpx.Client, url: str, part: Path, entry: dict[str, Any], attempt: int
) -> None:
    """One GET (redirects by hand), appending to ``part`` from where it ends."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > entry["bytes"]:
        part.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request("GET", target, headers=headers)
        if target != url:
            request.headers.pop("Authorization", None)  # never to the object store
        response = client.send(request, stream=True)
        try:
            if response.is_redirect:
                target = urljoin(target, response.headers["Location"])
                continue
            _check_status(response, url, attempt)
            if offset and response.status_code == 206:
                span = response.headers.get("Content-Range", "")
                if not span.startswith(f"bytes {offset}-"):
                    offset = 0  # the server sent another range: start again
            elif offset:
                offset = 0  # no range support: the body is the whole file
            mode = "ab" if offset else "wb"
            progress = _Progress(entry["name"], entry["bytes"], offset)
            try:
                with open(part, mode) as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                        progress.update(len(chunk))
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                progress.close()
            received = part.stat().st_size
            if received < entry["bytes"]:
                raise _Retryable(f"body ended at {received} of {entry['bytes']} bytes")
            return
        finally:
            response.close()
    raise DownloadError(f"GET {url}: more than {MAX_REDIRECTS} redirects")


def download_file(
    client: httpx.Client,
    settings: ClientSettings,
    entry: dict[str, Any],
    cache_dir: Path,
    url: str | None = None,
) -> dict[str, Any]:
    """Fetch one listed object into ``cache_dir`` and verify it; skip it if already verified.

    ``url`` defaults to the object's data-proxy address.
    """
    rel = safe_relative(entry["name"])
    final = cache_dir / rel
    part = final.with_name(f".{final.name}.part")
    if final.exists():
        if verify_file(final, entry) is None:
            log.info("%s: already verified, not fetched", entry["name"])
            return {
                "name": entry["name"],
                "bytes": entry["bytes"],
                "fetched": 0,
                "sha256": sha256_file(final),
            }
        final.unlink()
    final.parent.mkdir(parents=True, exist_ok=True)
    url = url or object_url(settings, entry["name"])
    before = part.stat().st_size if part.exists() else 0
    # A part already at full length was killed between its last byte and the rename:
    # asking for the rest would be answered 416, so check it as it is.
    complete = part.exists() and before >= entry["bytes"] and verify_file(part, entry) is None
    if part.exists() and before >= entry["bytes"] and not complete:
        part.unlink()  # full length but wrong bytes: never resume from them
    if complete:
        log.info("%s: partial file complete and verified, not fetched again", entry["name"])
    last = ""
    for attempt in range(1, (0 if complete else settings.max_attempts) + 1):
        retry_after = None
        try:
            _stream_once(client, url, part, entry, attempt)
            problem = verify_file(part, entry)
            if problem is None:
                break
            part.unlink()  # wrong bytes: never resume from them
            last = problem
        except _Retryable as exc:
            last, retry_after = exc.reason, exc.retry_after
        except _transport_errors() as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt == settings.max_attempts:
            raise DownloadError(
                f"GET {url} failed after {attempt} attempts: {last}",
                expected=f"{entry['bytes']} bytes"
                + (f" with md5 {entry['hash']}" if MD5_RE.match(entry.get("hash", "")) else ""),
                path=final,
            )
        wait = backoff_seconds(attempt, settings, retry_after)
        log.warning("%s: %s on attempt %d; retrying in %.1f s", entry["name"], last, attempt, wait)
        _sleep(wait)
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, final)
    size = final.stat().st_size
    return {
        "name": entry["name"],
        "bytes": size,
        "fetched": size - before,
        "sha256": sha256_file(final),
    }


# --- one volume -------------------------------------------------------------------------------


def load_listing(path: str | Path) -> dict[str, dict[str, Any]]:
    """The saved listing as ``{name: entry}``."""
    import json

    try:
        data = json.loads(Path(path).read_text())
        return {o["name"]: o for o in data["objects"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"cannot read the saved listing ({exc})", path=path) from exc


def download_objects(
    names: list[str],
    listing_path: str | Path,
    cache_dir: str | Path,
    settings: ClientSettings,
    volume: str | None = None,
) -> list[dict[str, Any]]:
    """Fetch and verify the named objects into ``cache_dir``; log a summary."""
    listing = load_listing(listing_path)
    missing = [n for n in names if n not in listing]
    if missing:
        raise DownloadError(
            f"not in the saved listing: {', '.join(missing)}", volume=volume, path=listing_path
        )
    cache_dir = Path(cache_dir)
    records = []
    started = time.monotonic()
    with make_client(settings) as client:
        for name in names:
            try:
                records.append(download_file(client, settings, listing[name], cache_dir))
            except DownloadError as exc:
                if volume and not exc.volume:
                    raise DownloadError(
                        exc.check, volume=volume, path=exc.path, expected=exc.expected
                    ) from exc
                raise
    elapsed = max(time.monotonic() - started, 1e-9)
    fetched = sum(r["fetched"] for r in records)
    log.info(
        "summary: %d files, %d bytes verified, %d bytes fetched in %.2f s (%.1f MB/s)",
        len(records),
        sum(r["bytes"] for r in records),
        fetched,
        elapsed,
        fetched / elapsed / 1e6,
    )
    return records


def fetch_volume(
    volume: str,
    listing_path: str | Path,
    cache_dir: str | Path,
    staging_dir: str | Path,
    settings: ClientSettings,
) -> list[dict[str, Any]]:
    """Download one volume's image, mask and json, then hardlink them into staging."""
    names = staging_names(check_volume_id(volume))
    records = download_objects(list(names.values()), listing_path, cache_dir, settings, volume)
    for rel in names.values():
        link_or_copy(Path(cache_dir) / rel, Path(staging_dir) / rel)
    return records


def fetch_licence(
    listing_path: str | Path,
    cache_dir: str | Path,
    staging_dir: str | Path,
    settings: ClientSettings,
) -> list[dict[str, Any]]:
    """Download the licence file and place it in staging."""
    records = download_objects([EBRAINS_LICENCE], listing_path, cache_dir, settings)
    link_or_copy(Path(cache_dir) / EBRAINS_LICENCE, Path(staging_dir) / EBRAINS_LICENCE)
    return records


# --- a whole file by URL (the dataset ZIP) ----------------------------------------------------


def _content_length(client: httpx.Client, url: str, settings: ClientSettings) -> int:
    """Size announced by a HEAD request (redirects followed by hand, without Authorization)."""
    target = url
    for attempt in range(1, settings.max_attempts + 1):
        try:
            for _ in range(MAX_REDIRECTS + 1):
                request = client.build_request("HEAD", target)
                if target != url:
                    request.headers.pop("Authorization", None)
                response = client.send(request)
                if not response.is_redirect:
                    break
                target = urljoin(target, response.headers["Location"])
            _check_status(response, url, attempt)
            length = response.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise DownloadError(f"HEAD {url} gave no Content-Length; set zip.bytes")
            return int(length)
        except (_Retryable, *_transport_errors()) as exc:
            if attempt == settings.max_attempts:
                raise DownloadError(f"HEAD {url} failed after {attempt} attempts ({exc})") from exc
            _sleep(backoff_seconds(attempt, settings, getattr(exc, "retry_after", None)))
    raise AssertionError("unreachable")  # pragma: no cover


def download_url(
    url: str,
    out: str | Path,
    settings: ClientSettings,
    expected_bytes: int | None = None,
    expected_md5: str = "",
) -> dict[str, Any]:
    """Download one URL (e.g. the dataset ZIP) with the same guarantees as listed objects.

    The size is checked against ``expected_bytes`` (else the server's HEAD
    Content-Length) and the MD5 against ``expected_md5`` when given; the sha256
    is recorded. Resumes a partial download; skips a verified file.
    """
    out = Path(out)
    with make_client(settings) as client:
        size = expected_bytes if expected_bytes else _content_length(client, url, settings)
        entry = {"name": out.name, "bytes": size, "hash": expected_md5.lower()}
        record = download_file(client, settings, entry, out.parent, url=url)
    log.info("%s: %d bytes, sha256 %s", out.name, record["bytes"], record["sha256"])
    return record
