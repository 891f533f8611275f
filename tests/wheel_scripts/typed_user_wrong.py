"""A user's mistake mypy can only catch when the packages' types are visible (py.typed)."""

from __future__ import annotations

from clip_multimodal import CLIPEncoder

count: int = CLIPEncoder("clip-multimodal-demo").model_id
