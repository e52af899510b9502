"""Typed accessors for the services the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.activations.service import ActivationService
from backend.features.service import FeatureService
from backend.injection.proxy import InjectionProxy


def get_activations(request: Request) -> ActivationService:
    return request.app.state.activations


def get_features(request: Request) -> FeatureService:
    return request.app.state.features


def get_injection(request: Request) -> InjectionProxy:
    return request.app.state.injection


ActivationsDep = Annotated[ActivationService, Depends(get_activations)]
FeaturesDep = Annotated[FeatureService, Depends(get_features)]
InjectionDep = Annotated[InjectionProxy, Depends(get_injection)]
