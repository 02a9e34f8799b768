"""Fast JSON for the hot read path (device pages).

Device routes build their body here instead of through response models: a
page of 100 devices is the relay's most frequent read, and validating 100
models only to serialise them again costs more than the database query.
The routes still declare their response model, so the OpenAPI document is
unchanged, and the tests check these bodies against it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

_OPTIONS = orjson.OPT_UTC_Z


def json_response(payload: Any) -> Response:
    return Response(orjson.dumps(payload, option=_OPTIONS), media_type="application/json")
