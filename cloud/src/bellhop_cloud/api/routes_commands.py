"""Remote commands: sent down a hotel's bridge, waited for or queued."""

from __future__ import annotations

from fastapi import APIRouter

from bellhop_cloud.api.boundary import BoundaryRoute

router = APIRouter(tags=["commands"], route_class=BoundaryRoute)
