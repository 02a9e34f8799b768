"""Live events: a Server-Sent Events stream per hotel and per organisation."""

from __future__ import annotations

from fastapi import APIRouter

from bellhop_cloud.api.boundary import BoundaryRoute

router = APIRouter(tags=["events"], route_class=BoundaryRoute)
