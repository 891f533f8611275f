"""Collection names: Chroma's naming rule, checked before a model loads or a store opens."""

from __future__ import annotations

import ipaddress
import re

from clip_multimodal.errors import InvalidCollectionNameError

__all__ = ["NAME_RULE", "check_collection_name"]

#: Chroma's rule for collection names, as its server and embedded store enforce it.
NAME_RULE = (
    "3 to 512 characters from A-Z a-z 0-9 . _ -, starting and ending with a letter or digit, "
    "with no '..', and not an IP address"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]")


def check_collection_name(name: str) -> str:
    """Return `name` if Chroma accepts it as a collection name.

    Chroma checks names only when a collection is created, after the caller has loaded its
    model; this answers at once, with the rule instead of Chroma's validation message.

    Raises:
        InvalidCollectionNameError: (a ValueError) naming the name and the rule.
    """
    valid = (
        isinstance(name, str)
        and 3 <= len(name) <= 512
        and _NAME.fullmatch(name) is not None
        and ".." not in name
        and not _is_ip_address(name)
    )
    if not valid:
        raise InvalidCollectionNameError(
            f"invalid collection name {name!r}: Chroma needs {NAME_RULE} "
            "(e.g. 'images' or 'my-photos.v2')"
        )
    return name


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
