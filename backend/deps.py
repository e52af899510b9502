"""Typed accessors for the services the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.activations.reads import RunReader
from backend.activations.service import ActivationService
from backend.features.service import FeatureService
from backend.health import HealthService
from backend.injection.proxy import InjectionProxy
from backend.settings import Settings


def get_activations(request: Request) -> ActivationService:
    return request.app.state.activations


def get_runs(request: Request) -> RunReader:
    return request.app.state.runs


def get_health(request: Request) -> HealthService:
    return request.app.state.health


def get_features(request: Request) -> FeatureService:
    return request.app.state.features


def get_injection(request: Request) -> InjectionProxy:
    return request.app.state.injection


def get_public_base_url(request: Request) -> str:
    """The origin that links are built from: ``PUBLIC_BASE_URL``, else the request's own."""
    settings: Settings = request.app.state.settings
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


ActivationsDep = Annotated[ActivationService, Depends(get_activations)]
RunsDep = Annotated[RunReader, Depends(get_runs)]
HealthDep = Annotated[HealthService, Depends(get_health)]
FeaturesDep = Annotated[FeatureService, Depends(get_features)]
InjectionDep = Annotated[InjectionProxy, Depends(get_injection)]
PublicBaseDep = Annotated[str, Depends(get_public_base_url)]
