"""Which local files and URLs an image reference may reach (see `clip_multimodal.images`).

The policy lives with the image inputs it checks; this module keeps its public import path.
"""

from clip_multimodal.images._access import AccessDeniedError, AccessPolicy, parse_url

__all__ = ["AccessDeniedError", "AccessPolicy", "parse_url"]
