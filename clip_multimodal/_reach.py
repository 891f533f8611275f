"""Whether a weights download can start, asked the way the download itself will ask.

A hub download goes through huggingface_hub's own HTTP session: its endpoint (HF_ENDPOINT, with
its scheme and port, as huggingface_hub read it), its proxies (HTTP_PROXY, HTTPS_PROXY,
NO_PROXY) and HF_HUB_OFFLINE. A URL download (OpenAI's weights, through open_clip) goes through
urllib's opener, with the same proxy variables. So each probe is one HEAD request through that
same stack, and any HTTP answer means the download can start.

No network shows as a name that does not resolve or a connection refused, and the probe fails
at once. There is no tight timer: a slow link gets as long as huggingface_hub's own metadata
request gives it (HF_HUB_ETAG_TIMEOUT, 10 s by default).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

__all__ = ["hub_offline", "hub_url", "why_hub_unreachable", "why_url_unreachable"]

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the user turned the hub off: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read
    now or when huggingface_hub was imported."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or flag.strip().upper() in _TRUE


def hub_url(repo: str, filename: str) -> str:
    """The URL huggingface_hub downloads `filename` of `repo` from (its endpoint, main)."""
    from huggingface_hub import hf_hub_url

    return str(hf_hub_url(repo, filename))


def why_hub_unreachable(url: str) -> str | None:
    """None when huggingface_hub's session gets an HTTP answer for `url`, else why not."""
    from huggingface_hub import get_session

    try:
        get_session().head(url, follow_redirects=False, timeout=_timeout())
    # The session's library (httpx or httpx2, by huggingface_hub's version) raises its own
    # types; whatever stops an answer, the download could not start either.
    except Exception as exc:
        return _reason(exc)
    return None


def why_url_unreachable(url: str) -> str | None:
    """None when urllib (open_clip's downloader) gets an HTTP answer for `url`, else why not."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_timeout()):
            return None
    except urllib.error.HTTPError:
        return None  # an answer, even an error status: the host is there
    except (OSError, ValueError) as exc:
        return _reason(exc)


def _timeout() -> float:
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "reason", None) or exc  # urllib wraps the socket error
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
