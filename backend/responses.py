"""The JSON response class of every backend route: orjson straight to bytes.

Routes build plain dicts (timelines embedded as ``orjson.Fragment``) and return this directly,
so nothing is validated or serialised twice. (FastAPI's own ORJSONResponse is deprecated.)
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
