"""The JSON response class of every service: orjson straight to bytes.

Routes that build plain dicts (the backend embeds stored timelines as ``orjson.Fragment``)
return it directly, so nothing is validated or serialised twice. FastAPI's own
ORJSONResponse is deprecated.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
