"""Who may talk to the card agent: the checks every request passes before a handler
runs, as one aiohttp middleware (`AccessPolicy.middleware`).

In order, each refusal a JSON error (`error.result` in parentheses):
 1. Host is one of this agent's loopback names on the port the request arrived on —
    127.0.0.1:PORT, localhost:PORT, [::1]:PORT (plus the listen address when a
    non-loopback listen was explicitly allowed); anything else is 421 (`host_refused`).
    This is what stops DNS rebinding: a page on evil.example that re-resolves to
    127.0.0.1 still sends `Host: evil.example:PORT`;
 2. `Sec-Fetch-Site: cross-site` is refused (`cross_site_refused`), except from an
    allowed origin (a kiosk UI on its own origin is cross-site by definition);
 3. an `Origin` header must be one of `--allow-origin`, exactly (`origin_refused`);
    there is no wildcard and `null` is never allowed;
 4. OPTIONS is a CORS preflight: answered 204 for an allowed origin asking for GET or
    POST with at most Authorization, Content-Type and X-Request-Id
    (`preflight_refused` otherwise); browsers send no credentials on a preflight, so
    it is answered before the token check and reveals nothing;
 5. `Authorization: Bearer <token>` matches the install's token, compared with
    hmac.compare_digest (401 `token_missing` / `token_invalid`, WWW-Authenticate:
    Bearer);
 6. a POST has `Content-Type: application/json` (415 `content_type_refused`).
Every answer carries `X-Request-Id`, `Vary: Origin` and `Cache-Control: no-store`
(person data must not sit in a browser cache); an allowed origin also gets
Access-Control-Allow-Origin with that exact origin, so its UI can read the answer.
Refusals are written to the audit log without any request content.
"""

from __future__ import annotations

import hmac
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from terminals.agent import answers, audit, limits
from terminals.agent.results import AgentError, AgentResult

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
PREFLIGHT_METHODS = ("GET", "POST")
PREFLIGHT_HEADERS = ("authorization", "content-type", "x-request-id")
PREFLIGHT_HEADERS_ANSWER = "Authorization, Content-Type, X-Request-Id"
_REQUEST_ID_RE = re.compile(rf"^[A-Za-z0-9._-]{{1,{limits.REQUEST_ID_CHARS_MAX}}}$")


def normalize_origin(value: str) -> str:
    """An `--allow-origin` value as browsers serialise an Origin: scheme://host[:port],
    lower case, no default port, nothing else. Refuses wildcards, `null`, paths."""
    text = value.strip()
    parts = urllib.parse.urlsplit(text)
    if "*" in text or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: an origin is http(s)://host[:port], exactly, no wildcard")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{value!r}: an origin has no path, query, fragment or user")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id when it is short and plain, else a new one."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID_RE.match(given) else secrets.token_hex(8)


def endpoint_of(request: web.Request) -> str:
    """The route's path for the audit line; never the raw path a client made up."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


@dataclass(frozen=True)
class AccessPolicy:
    token: str = field(repr=False)
    allow_origins: frozenset[str] = frozenset()
    extra_host_names: frozenset[str] = frozenset()  # e.g. the LAN address of a listen

    @classmethod
    def build(
        cls, token: str, *, allow_origins: Iterable[str] = (), extra_host_names: Iterable[str] = ()
    ) -> AccessPolicy:
        return cls(
            token,
            frozenset(normalize_origin(o) for o in allow_origins),
            frozenset(h.lower() for h in extra_host_names),
        )

    # -- the checks, in order ----------------------------------------------------------

    def _check_host(self, request: web.Request) -> None:
        host = request.headers.get("Host", "").lower()
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if not sockname:
            raise AgentError.of(AgentResult.host_refused, "the connection has no local address")
        port = sockname[1]
        names = (*LOOPBACK_NAMES, *self.extra_host_names)
        if host not in {f"{name}:{port}" for name in names}:
            raise AgentError.of(
                AgentResult.host_refused,
                f"Host {host[:64]!r} is not this agent: use 127.0.0.1:{port},"
                f" localhost:{port} or [::1]:{port}",
            )

    @staticmethod
    def _check_site(request: web.Request, allowed_origin: str | None) -> None:
        if request.headers.get("Sec-Fetch-Site") == "cross-site" and allowed_origin is None:
            raise AgentError.of(
                AgentResult.cross_site_refused, "requests from other sites' pages are refused"
            )
        if "Origin" in request.headers and allowed_origin is None:
            raise AgentError.of(
                AgentResult.origin_refused,
                "requests from web pages are refused unless their origin is allowed",
            )

    def _check_token(self, request: web.Request) -> None:
        given = request.headers.get("Authorization")
        if given is None:
            raise AgentError.of(
                AgentResult.token_missing, "Authorization: Bearer <the agent's token> is required"
            )
        scheme, _, value = given.partition(" ")
        presented = value.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented, self.token.encode("ascii")
        ):
            raise AgentError.of(AgentResult.token_invalid, "the bearer token is not this agent's")

    @staticmethod
    def _check_body_type(request: web.Request) -> None:
        if request.method == "POST" and request.content_type != "application/json":
            raise AgentError.of(
                AgentResult.content_type_refused, "POST needs Content-Type: application/json"
            )

    # -- the middleware ----------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_of(request)
        request[REQUEST_ID] = request_id
        origin = request.headers.get("Origin")
        allowed_origin = origin if origin in self.allow_origins else None
        try:
            self._check_host(request)
            self._check_site(request, allowed_origin)
            if request.method == "OPTIONS":
                response: web.StreamResponse = self._preflight(request, allowed_origin)
            else:
                self._check_token(request)
                self._check_body_type(request)
                response = await handler(request)
        except AgentError as exc:
            audit.refused(endpoint_of(request), request_id, exc)
            response = answers.error_response(exc, request_id, _challenge_header(exc))
        except web.HTTPException as exc:
            refusal = _http_refusal(exc)
            audit.refused(endpoint_of(request), request_id, refusal)
            response = answers.error_response(refusal, request_id)
        _decorate(response, allowed_origin, request_id)
        return response

    @staticmethod
    def _preflight(request: web.Request, allowed_origin: str | None) -> web.Response:
        if allowed_origin is None:
            raise AgentError.of(AgentResult.preflight_refused, "Origin: not an allowed origin")
        exception = request.match_info.http_exception
        if isinstance(exception, web.HTTPNotFound):
            raise AgentError.of(AgentResult.not_found, f"no such endpoint: {request.path[:64]!r}")
        method = request.headers.get("Access-Control-Request-Method", "")
        if method not in PREFLIGHT_METHODS:
            raise AgentError.of(
                AgentResult.preflight_refused, "Access-Control-Request-Method: GET or POST"
            )
        asked = request.headers.get("Access-Control-Request-Headers", "")
        wanted = {h.strip().lower() for h in asked.split(",") if h.strip()}
        if not wanted <= set(PREFLIGHT_HEADERS):
            raise AgentError.of(
                AgentResult.preflight_refused,
                f"Access-Control-Request-Headers: {PREFLIGHT_HEADERS_ANSWER} only",
            )
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ", ".join(PREFLIGHT_METHODS)
        response.headers["Access-Control-Allow-Headers"] = PREFLIGHT_HEADERS_ANSWER
        response.headers["Access-Control-Max-Age"] = str(limits.PREFLIGHT_MAX_AGE_S)
        if request.headers.get("Access-Control-Request-Private-Network") == "true":
            response.headers["Access-Control-Allow-Private-Network"] = "true"  # Chrome's PNA
        return response


def _challenge_header(exc: AgentError) -> dict[str, str]:
    if exc.result == AgentResult.token_missing.name:
        return {"WWW-Authenticate": 'Bearer realm="yikatong-agent"'}
    if exc.result == AgentResult.token_invalid.name:
        return {"WWW-Authenticate": 'Bearer realm="yikatong-agent", error="invalid_token"'}
    return {}


def _http_refusal(exc: web.HTTPException) -> AgentError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return AgentError.of(
            AgentResult.body_too_large, f"body: at most {limits.BODY_MAX_BYTES} bytes"
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return AgentError.of(AgentResult.method_not_allowed, f"method: use {allowed}")
    return AgentError.of(AgentResult.not_found, "no such endpoint")


def _decorate(response: web.StreamResponse, allowed_origin: str | None, request_id: str) -> None:
    headers = response.headers
    headers["X-Request-Id"] = request_id
    headers["Cache-Control"] = "no-store"
    headers.add("Vary", "Origin")
    if allowed_origin is not None:
        headers["Access-Control-Allow-Origin"] = allowed_origin
        headers["Access-Control-Expose-Headers"] = "Retry-After, X-Request-Id"
