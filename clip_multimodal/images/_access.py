"""Which local files and URLs an image reference may reach: one allowlist for every caller.

The library reads any path and fetches any URL it is given, which is right for a developer's
own calls. Where a query comes from someone else (an HTTP request, an LLM agent's tool call, a
retriever a prompt can steer), an `AccessPolicy` says what may be read: files under given
folders, URLs on given hosts or under given prefixes, nothing else. The server, the LangChain
and LlamaIndex adapters and `load_image(..., policy=...)` all check with this module, and
`fetch_url` parses URLs with it, so the check and the fetch read a URL the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._kinds import SourceKind, classify, describe_source

__all__ = ["AccessDeniedError", "AccessPolicy", "parse_url"]


class AccessDeniedError(ImageLoadError):
    """An image reference (a path or URL) is outside what the access policy allows."""


def _refuse(source: str, reason: str) -> AccessDeniedError:
    try:
        desc = describe_source(source)
    except (OSError, ValueError, RuntimeError):  # too malformed to describe: print it escaped
        desc = ascii(source)[:160]
    return AccessDeniedError(desc, reason)


def parse_url(url: str) -> SplitResult:
    """Split an http(s) URL, refusing every form that parsers read differently.

    Backslashes, user info (`user@host`), a percent-encoded host, whitespace and control
    characters, a missing host and a bad port are refused: each lets one parser see another
    host than the next.

    Raises:
        AccessDeniedError: the URL is not a plain http(s) URL.
    """
    if "\\" in url or any(c.isspace() or not c.isprintable() for c in url):
        raise _refuse(url, "the URL contains a backslash, whitespace or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port  # parsing the port is where a malformed one raises
    except ValueError as exc:
        raise _refuse(url, f"malformed URL ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse(url, "unsupported scheme: only http(s) URLs can be fetched")
    if "@" in parts.netloc:
        raise _refuse(url, "URLs with user info (user@host) are refused")
    if "%" in parts.netloc:  # urllib unquotes the host, urlsplit does not
        raise _refuse(url, "a percent-encoded host is refused")
    if not parts.hostname:
        raise _refuse(url, "the URL names no host")
    if port == 0:
        raise _refuse(url, "the URL names port 0")
    return parts


def _clean_prefix(prefix: str) -> str:
    parts = parse_url(prefix)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"


@dataclass(frozen=True)
class AccessPolicy:
    """What image references may reach: local files under `roots`, URLs on `url_hosts` or
    under `url_prefixes`. The empty policy allows no path and no URL; image bytes, base64,
    data: URIs, PIL images and arrays reach nothing and are always allowed.

    Attributes:
        roots: folders whose files (after resolving links) may be read.
        url_hosts: host names (or IP addresses) whose http(s) URLs may be fetched.
        url_prefixes: URL prefixes (`https://images.example.com/public/`) that may be fetched.

    Example:
        >>> policy = AccessPolicy(roots=["~/Pictures"], url_hosts=["images.example.com"])
        >>> load_image("~/Pictures/dog.jpg", policy=policy)
    """

    roots: tuple[Path, ...] = ()
    url_hosts: tuple[str, ...] = ()
    url_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        roots: Iterable[str | os.PathLike[str]] = (),
        url_hosts: Iterable[str] = (),
        url_prefixes: Iterable[str] = (),
    ) -> None:
        resolved = tuple(Path(os.path.realpath(Path(r).expanduser())) for r in roots)
        hosts = tuple(h.strip().lower().strip("[]") for h in url_hosts if h.strip())
        object.__setattr__(self, "roots", resolved)
        object.__setattr__(self, "url_hosts", hosts)
        object.__setattr__(self, "url_prefixes", tuple(_clean_prefix(p) for p in url_prefixes))

    @property
    def allows_urls(self) -> bool:
        return bool(self.url_hosts or self.url_prefixes)

    def check_url(self, url: str) -> SplitResult:
        """The parsed URL, if the policy allows fetching it.

        Raises:
            AccessDeniedError: a malformed URL, or one on no allowed host or prefix.
        """
        parts = parse_url(url)
        host = (parts.hostname or "").lower()
        if host in self.url_hosts or self._under_prefix(parts):
            return parts
        if not self.allows_urls:
            raise _refuse(url, "fetching URLs is not allowed here")
        raise _refuse(url, f"host {host!r} is not on the URL allowlist")

    def _under_prefix(self, parts: SplitResult) -> bool:
        # A `..` segment could climb out of the prefix on the server: never matched.
        segments = unquote(parts.path).split("/")
        if ".." in segments or "." in segments:
            return False
        normal = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"
        return any(normal.startswith(prefix) for prefix in self.url_prefixes)

    def check_path(self, path: str | os.PathLike[str]) -> Path:
        """The resolved path, if it lies under an allowed root (links are followed first).

        Raises:
            AccessDeniedError: the path is outside every root, or cannot be resolved.
        """
        desc = os.fsdecode(path) if isinstance(path, os.PathLike) else path
        try:
            resolved = Path(os.path.realpath(Path(path).expanduser()))
        except (OSError, ValueError, RuntimeError) as exc:  # NUL, ~nosuchuser, surrogates
            raise _refuse(str(desc), f"cannot resolve the path ({exc})") from exc
        if any(resolved.is_relative_to(root) for root in self.roots):
            return resolved
        if not self.roots:
            raise _refuse(str(desc), "reading local files is not allowed here")
        raise _refuse(str(desc), "the file is outside the allowed folders")

    def check(self, source: Any, kind: SourceKind | None = None) -> None:
        """Check any image input: paths and URLs against the policy, everything else passes.

        Args:
            source: the input.
            kind: its `classify` result, if the caller has it already.

        Raises:
            AccessDeniedError: a path or URL the policy does not allow.
        """
        if isinstance(source, os.PathLike):
            self.check_path(source)
            return
        if not isinstance(source, str):
            return
        if kind is None:
            kind = classify(source)  # the loader's own reading of a str
        self._check_text(source, kind.kind)

    def _check_text(self, source: str, kind: str) -> None:
        if kind == "url":
            self.check_url(source)
        elif kind == "path":  # also a missing file or a device: whatever the loader would open
            self.check_path(source)
        elif kind == "document":  # an image inside a document: the document's file
            self.check_path(source.rsplit("#", 1)[0])
