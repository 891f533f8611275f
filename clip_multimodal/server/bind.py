"""Where the service may listen without a token. Imports nothing heavy: the CLI checks this
before it loads a model or a web framework."""

from __future__ import annotations

import ipaddress

__all__ = ["InsecureBindError", "check_bind", "is_loopback"]


class InsecureBindError(ValueError):
    """Binding a non-loopback address without a token would expose the service to anyone."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as public


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a bearer token.

    Raises:
        InsecureBindError: `host` is not loopback and `token` is empty.
    """
    if not token and not is_loopback(host):
        raise InsecureBindError(
            f"refusing to bind {host} without a token: anyone on the network could use the "
            "service. Pass --token SECRET (or set CLIP_MULTIMODAL_TOKEN), or bind 127.0.0.1."
        )
