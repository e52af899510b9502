"""Typed accessors for the services the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.activations.comparer import RunComparer
from backend.activations.exporter import RunExporter
from backend.activations.reads import RunReader
from backend.activations.service import ActivationService
from backend.features.catalog import SaeCatalog
from backend.features.explorer import FeatureExplorer
from backend.features.search import LabelSearch
from backend.features.service import FeatureService
from backend.health import HealthService
from backend.injection.proxy import InjectionProxy
from backend.settings import Settings


def get_activations(request: Request) -> ActivationService:
    return request.app.state.activations


def get_runs(request: Request) -> RunReader:
    return request.app.state.runs


def get_compare(request: Request) -> RunComparer:
    return request.app.state.compare


def get_export(request: Request) -> RunExporter:
    return request.app.state.export


def get_health(request: Request) -> HealthService:
    return request.app.state.health


def get_features(request: Request) -> FeatureService:
    return request.app.state.features


def get_catalog(request: Request) -> SaeCatalog:
    return request.app.state.catalog


def get_explorer(request: Request) -> FeatureExplorer:
    return request.app.state.explorer


def get_search(request: Request) -> LabelSearch:
    return request.app.state.search


def get_injection(request: Request) -> InjectionProxy:
    return request.app.state.injection


def get_public_base_url(request: Request) -> str:
    """The origin that links are built from: ``PUBLIC_BASE_URL``, else the request's own."""
    settings: Settings = request.app.state.settings
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


ActivationsDep = Annotated[ActivationService, Depends(get_activations)]
RunsDep = Annotated[RunReader, Depends(get_runs)]
CompareDep = Annotated[RunComparer, Depends(get_compare)]
ExportDep = Annotated[RunExporter, Depends(get_export)]
HealthDep = Annotated[HealthService, Depends(get_health)]
FeaturesDep = Annotated[FeatureService, Depends(get_features)]
CatalogDep = Annotated[SaeCatalog, Depends(get_catalog)]
ExplorerDep = Annotated[FeatureExplorer, Depends(get_explorer)]
SearchDep = Annotated[LabelSearch, Depends(get_search)]
InjectionDep = Annotated[InjectionProxy, Depends(get_injection)]
PublicBaseDep = Annotated[str, Depends(get_public_base_url)]
