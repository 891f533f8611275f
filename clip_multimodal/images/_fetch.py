"""Fetching an image over http(s) with the stdlib only: a timeout, a byte cap, a Content-Type
check, and redirects that stay on allowed hosts."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Collection
from typing import Any

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._access import AccessPolicy, parse_url
from clip_multimodal.images._kinds import describe_source
from clip_multimodal.images._limits import CHUNK, read_capped, too_many_bytes

__all__ = ["fetch_url"]

_RAW_MIME = "application/octet-stream"


def _check_url(url: str, policy: AccessPolicy | None) -> None:
    """Refuse ambiguous URLs always, and URLs the policy does not allow (AccessDeniedError)."""
    if policy is None:
        parse_url(url)
    else:
        policy.check_url(url)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs on allowed hosts (the stdlib also allows ftp)."""

    def __init__(self, policy: AccessPolicy | None) -> None:
        self.policy = policy

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        try:
            _check_url(newurl, self.policy)
        except ImageLoadError as exc:
            reason = f"redirect to {newurl} refused: {exc.reason}"
            raise urllib.error.HTTPError(newurl, code, reason, headers, fp) from exc
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(policy: AccessPolicy | None) -> urllib.request.OpenerDirector:
    # Built by hand so that no file:, ftp: or data: handler is ever installed.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _SafeRedirects(policy),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _check_response(resp: Any, desc: str, max_bytes: int) -> None:
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype == _RAW_MIME):
        raise ImageLoadError(
            desc, f"the server sent Content-Type {ctype or 'none'!r}, not an image; check the URL"
        )
    length = resp.headers.get("Content-Length") or ""
    if length.isdigit() and int(length) > max_bytes:
        raise too_many_bytes(desc, int(length), max_bytes)


def fetch_url(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allowed_hosts: Collection[str] | None = None,
) -> bytes:
    """Download an image over http(s) with a timeout, a byte cap and a Content-Type check.

    Args:
        url: an http:// or https:// URL; other schemes (file://, ftp://) are refused.
        max_bytes: refuse bodies longer than this, without reading past it.
        timeout: seconds allowed to connect, for each read, and for the whole body.
        allowed_hosts: if given, the only host names the URL (and redirects) may name.

    Raises:
        ImageLoadError: on any failure, naming the URL and the reason.
    """
    policy = None if allowed_hosts is None else AccessPolicy(url_hosts=allowed_hosts)
    _check_url(url, policy)  # first: a malformed URL is refused before anything parses it
    desc = describe_source(url)
    request = urllib.request.Request(
        url, headers={"Accept": "image/*", "User-Agent": "clip-multimodal"}
    )
    try:
        with _opener(policy).open(request, timeout=timeout) as resp:
            _check_response(resp, desc, max_bytes)
            return read_capped(resp.read1, desc, max_bytes, chunk=CHUNK, timeout=timeout)
    except ImageLoadError:
        raise  # our own reason (too large, not an image), not wrapped a second time
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ImageLoadError(desc, f"HTTP {exc.code}: {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ImageLoadError(desc, f"timed out after {timeout:g}s") from exc
        raise ImageLoadError(desc, f"cannot fetch ({exc.reason})") from exc
    except TimeoutError as exc:
        raise ImageLoadError(desc, f"timed out after {timeout:g}s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ImageLoadError(desc, f"cannot fetch ({exc})") from exc
