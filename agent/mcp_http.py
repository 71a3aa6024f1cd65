"""Streamable HTTP transport of `geodelta mcp`: loopback by default, a bearer token to go further.

Policy: the server binds 127.0.0.1 unless told otherwise; binding any other address needs
GEODELTA_MCP_TOKEN, and whenever a token is set every HTTP request must carry
`Authorization: Bearer <token>` (401 otherwise). The guard is a plain ASGI wrapper (not Starlette's
BaseHTTPMiddleware, which buffers the streamed responses MCP relies on).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from geodelta.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a bearer token (ConfigError, one actionable line)."""
    if host not in LOOPBACK and not token:
        raise ConfigError(f"binding the MCP server to {host} exposes it beyond this machine: set GEODELTA_MCP_TOKEN "
                          "to a secret that clients send as 'Authorization: Bearer <token>', or bind 127.0.0.1")


class BearerGuard:
    """ASGI wrapper: HTTP requests without `Authorization: Bearer <token>` get 401; lifespan passes through."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                            "with the server's GEODELTA_MCP_TOKEN"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_http(server: Any, host: str, port: int, token: str | None) -> None:
    """Serve FastMCP's streamable HTTP app at http://host:port/mcp with uvicorn (guarded when a token is set)."""
    import uvicorn

    check_bind(host, token)
    app = server.streamable_http_app()
    guarded = BearerGuard(app, token) if token else app
    config = uvicorn.Config(guarded, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
