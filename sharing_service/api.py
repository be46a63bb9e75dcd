"""The agency HTTP API (FastAPI): ask, never take.

Every error is ``{"error": {"code", "message"}}`` with a 4xx status. An agency
authenticates with ``Authorization: Bearer dbk_...``; each agency has a token
bucket (``sharing.agency_rate_per_min`` or its own limit) and gets 429 with
``Retry-After`` beyond it. Nothing here reveals which homes were asked.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from doorbell.core import __version__
from doorbell.core.errors import DoorbellError
from sharing_service.context import AgencyInfo, Refused
from sharing_service.core import SharingCore
from sharing_service.ratelimit import RateLimiter
from sharing_service.schemas import (
    ErrorBody,
    Health,
    RequestCreate,
    RequestCreated,
    RequestList,
    RequestStatus,
    SharedClipList,
    Transparency,
)

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request"},
    401: {"model": ErrorBody, "description": "missing or invalid API key"},
    404: {"model": ErrorBody, "description": "no such request (or not this agency's)"},
    422: {"model": ErrorBody, "description": "refused by the sharing rules or invalid input"},
    429: {"model": ErrorBody, "description": "rate limit exceeded; see Retry-After"},
}


class HttpRefusal(DoorbellError):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   fields: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse({"error": body}, status_code=status, headers=headers)


HealthCheck = Callable[[], tuple[bool, dict[str, str]]]
StatusCall = Callable[[str | None, str], JSONResponse]
_STATUS_PATH = re.compile(r"/v1/requests/([^/]+)")  # the route's {request_id}: one path segment


class StatusFastPath:
    """``GET /v1/requests/{id}`` (the agencies' poll, the hottest call) as a bare ASGI route.

    The FastAPI route stays registered (it documents the call in openapi.json and is
    the same code), but this answers first: no routing through every route, no
    dependency resolution, no request object. The key check, the rate limit and the
    read still run in ONE worker-thread call, off the event loop (they may wait for
    a database lock; /healthz must not). Errors are the API's usual JSON bodies.
    """

    def __init__(self, app: ASGIApp, call: StatusCall) -> None:
        self.app, self.call = app, call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            m = _STATUS_PATH.fullmatch(scope["path"])
            if m is not None:
                auth = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
                response = await run_in_threadpool(self.call, auth, m.group(1))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RedactShareTokens(logging.Filter):
    """Keeps share-link tokens (bearer capabilities) out of access logs: ``/v1/shares/…``."""

    _rx = re.compile(r"(/v1/shares/)[A-Za-z0-9_-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._rx.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._rx.sub(r"\1…", record.msg)
        return True


def create_app(core: SharingCore, health: HealthCheck | None = None) -> FastAPI:
    """The agency API; ``health`` answers /healthz (the service's: database, broker, draining)."""
    app = FastAPI(
        title="Doorbell sharing service: agency API",
        version=__version__,
        description=("Police agencies can ask for doorbell footage; only the owners can give it. "
                     "A request names a case, a legal basis, an attestation that it does not target "
                     "lawful protest, a window of at most 12 h and a radius of at most 800 m. Owners "
                     "approve clip by clip with a signed decision; the agency then gets short-lived "
                     "download links. Responses never reveal which homes were asked or who declined."),
        responses=ERRORS,
    )
    limiter = RateLimiter(core.db, core.settings.agency_rate_per_min)  # in the database: one limit per agency
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactShareTokens) for f in access.filters):
        access.addFilter(RedactShareTokens())
    bearer = HTTPBearer(auto_error=False, description="API key issued by 'doorbell sharing agency add'")

    @app.exception_handler(HttpRefusal)
    async def _api_error(_r: Request, exc: HttpRefusal) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(Refused)
    async def _refused(_r: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        fields, code = [], "invalid_field"
        for err in exc.errors()[:20]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            kind, field = err.get("type"), loc.split(".")[0]
            if kind == "missing":
                code = "missing_field" if code == "invalid_field" else code
            elif field == "attest_not_protest" and code == "invalid_field":
                code = "attestation_required"
            elif field == "radius_m" and kind == "less_than_equal" and code == "invalid_field":
                code = "radius_too_large"
            if err.get("type") in ("json_invalid", "model_attributes_type", "dict_type") and not loc:
                code = "invalid_json"
            fields.append({"field": loc or "<body>", "reason": str(err.get("msg", "invalid"))})
        msg = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5])
        return error_response(422 if code != "invalid_json" else 400, code, msg, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, "internal", "internal error (logged)")

    # One hop to the thread pool per call, not two: the key check (and the rate limit, which
    # writes to the database and may wait for a lock there, so never on the event loop) runs in
    # the same worker-thread call as a status read, on the same connection. Handlers return their
    # JSON directly: the response models document the API (OpenAPI) and the values are built to
    # match them, so FastAPI's per-response validation would only repeat the work.
    def authorize(creds: HTTPAuthorizationCredentials | None, conn: Connection | None = None) -> AgencyInfo:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HttpRefusal(401, "unauthorized", "send 'Authorization: Bearer <API key>'",
                           {"WWW-Authenticate": "Bearer"})
        info = core.agencies.authenticate(creds.credentials, conn)
        if info is None:
            raise HttpRefusal(401, "unauthorized", "invalid API key", {"WWW-Authenticate": "Bearer"})
        wait = limiter.take(info, conn)
        if wait > 0:
            raise HttpRefusal(429, "rate_limited", "too many requests", {"Retry-After": str(max(1, int(wait + 0.999)))})
        return info

    def agency(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> AgencyInfo:
        return authorize(creds)

    @app.post("/v1/requests", status_code=201, response_model=RequestCreated, tags=["requests"],
              summary="Ask owners in an area for footage from a time window")
    def create_request(body: RequestCreate, who: AgencyInfo = Depends(agency)) -> JSONResponse:
        return JSONResponse(core.agencies.create_request(who, body), status_code=201)

    @app.get("/v1/requests", response_model=RequestList, tags=["requests"], summary="This agency's requests")
    def list_requests(who: AgencyInfo = Depends(agency)) -> JSONResponse:
        return JSONResponse({"requests": core.agencies.list_requests(who)})

    def status(creds: HTTPAuthorizationCredentials | None, request_id: str) -> JSONResponse:
        # one database connection for the key check and the read
        return JSONResponse(core.agencies.hot_read(
            lambda conn: core.agencies.request_status(authorize(creds, conn), request_id, conn)))

    def status_call(authorization: str | None, request_id: str) -> JSONResponse:
        """StatusFastPath's worker-thread call: the bearer parsing of HTTPBearer(auto_error=False), then
        :func:`status`, with the exception handlers' answers for its refusals."""
        scheme, credentials = get_authorization_scheme_param(authorization)
        creds = (HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
                 if authorization and scheme and credentials and scheme.lower() == "bearer" else None)
        try:
            return status(creds, request_id)
        except HttpRefusal as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except Refused as exc:
            return error_response(exc.status, exc.code, exc.message)

    @app.get("/v1/requests/{request_id}", response_model=RequestStatus, tags=["requests"],
             summary="Status of one request (time-based; reveals nothing about homes)")
    def get_request(request_id: str,
                    creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:
        # answered by StatusFastPath before routing; kept for openapi.json and any path the fast one declines
        return status(creds, request_id)

    @app.get("/v1/requests/{request_id}/clips", response_model=SharedClipList, tags=["clips"],
             summary="Clips shared under a request, with short-lived download links")
    def list_clips(request_id: str, who: AgencyInfo = Depends(agency)) -> dict[str, Any]:
        return core.agencies.shared_clips(who, request_id)

    @app.get("/v1/requests/{request_id}/clips/{clip_id}/download", status_code=302, tags=["clips"],
             response_class=RedirectResponse, responses={302: {"description": "redirect to a presigned URL"}},
             summary="Redirect to a fresh short-lived link for one shared clip")
    def download(request_id: str, clip_id: str, who: AgencyInfo = Depends(agency)) -> RedirectResponse:
        return RedirectResponse(core.agencies.download_url(who, request_id, clip_id), status_code=302,
                                headers={"Cache-Control": "no-store"})

    @app.get("/v1/transparency", response_model=Transparency, tags=["public"],
             summary="Per-agency monthly figures; no home identifiers, home counts with differential privacy")
    def transparency() -> dict[str, Any]:
        return core.transparency.figures()

    @app.get("/v1/shares/{token}", tags=["public"],
             summary="A share link's clip: short-lived links and, for sealed clips, the re-wrapped headers",
             description=("No login: the token is the capability. The clip's key is in the link's URL fragment "
                          "and never reaches this service. Each access is audited in the owner's log; a "
                          "revoked, expired or unknown token is a 404; rate-limited per token (429)."))
    def open_share(token: str) -> JSONResponse:
        answer = core.shares.open(token)
        return JSONResponse(answer, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    @app.get("/healthz", tags=["public"], response_model=Health,
             responses={503: {"model": Health, "description": "draining (SIGTERM) or the database is down"}},
             summary="Health for a load balancer: 200 while serving, 503 while draining or without database")
    def healthz() -> JSONResponse:
        ok, state = health() if health is not None else (True, {"status": "ok"})
        return JSONResponse(state, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    mount_owner_app(app)
    app.add_middleware(StatusFastPath, call=status_call)
    return app


def mount_owner_app(app: FastAPI) -> None:
    """The owner's browser app (static files, built into doorbell/clients/web/dist) at ``/app/``.

    No API of its own: the app talks to the broker over MQTT. Skipped, with a
    log line, when the app was not built (a source checkout without npm).
    """
    from importlib import resources

    from fastapi.staticfiles import StaticFiles

    dist = Path(str(resources.files("doorbell.clients.web"))) / "dist"
    if not (dist / "index.html").is_file():
        log.info("owner web app not built (%s): /app/ is not served", dist)
        return
    app.mount("/app", StaticFiles(directory=dist, html=True), name="owner-app")
    app.add_middleware(OwnerAppHeaders)


class OwnerAppHeaders:
    """Security headers on the owner app's responses (``/app...``), unless a response sets its own.

    Pure ASGI: every other call (the agencies' API) passes straight through; the
    ``@app.middleware("http")`` it replaces wrapped every call in a task and a stream.
    """

    HEADERS = {b"x-content-type-options": b"nosniff", b"referrer-policy": b"no-referrer", b"x-frame-options": b"DENY",
               b"cross-origin-opener-policy": b"same-origin", b"cache-control": b"no-cache"}

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/app"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _v in message.get("headers", [])}
                extra = [(k, v) for k, v in self.HEADERS.items() if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
