"""The FastAPI dependencies every route shares: the running service and its settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from clip_multimodal.server.service import Service
from clip_multimodal.server.settings import ServerSettings

__all__ = ["ServiceDep", "SettingsDep", "current_service", "current_settings"]


def current_service(request: Request) -> Service:
    """The `Service` that `create_app` put on the app."""
    service: Service = request.app.state.service
    return service


def current_settings(request: Request) -> ServerSettings:
    return current_service(request).settings


ServiceDep = Annotated[Service, Depends(current_service)]
SettingsDep = Annotated[ServerSettings, Depends(current_settings)]
