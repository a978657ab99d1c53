"""The route template a request matched (`/v1/documents/{doc_id}`), for logs and metrics."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import Match
from starlette.types import Scope

UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template; read it after the app ran, when routing has set it.

    A request answered before routing (an early 401, a preflight) is matched here, so it is
    still counted under its route; an unknown path is `<unmatched>`, never the raw path, which
    would let any client mint new metric series.
    """
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    app = scope.get("app")
    routes = getattr(app, "routes", None)
    if routes is None:
        return UNMATCHED
    for context in iter_route_contexts(routes):
        match, _ = context.matches(scope)
        if match is not Match.NONE and context.path:
            return context.path
    return UNMATCHED
