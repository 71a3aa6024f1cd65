"""`geodelta mcp`: GeoDelta's tools for MCP-capable chat apps and agents, built with the official MCP SDK.

Tools: `ask` (question + image paths or STAC Items + optional thread id -> the Answer JSON with map
paths), `detect`, `plan`, `audit_verify`. Resources: `geodelta://scenes` and
`geodelta://history/{thread_id}`. Long work sends MCP progress notifications (one per pipeline step,
when the client asked for progress). Transports: stdio (the default; stdout carries only JSON-RPC,
anything else printed goes to stderr) and streamable HTTP (`agent/mcp_http.py`).
"""

# No `from __future__ import annotations`: FastMCP evaluates the tool signatures, whose types (Context,
# CallToolResult) are bound inside build_server once the optional SDK is imported.
import json
import os
import sys
from io import TextIOWrapper
from typing import Any, Literal

from geodelta.agent.mcp_service import McpService
from geodelta.errors import ConfigError, GeoDeltaError
from geodelta.settings import Settings

INSTRUCTIONS = (
    "GeoDelta answers questions about how the land changed between two or more dates of imagery "
    "(GeoTIFF/COG, PNG/JPEG, ENVI, Sentinel-2 band folders, local STAC Item JSON). Call `ask` with the "
    "question and the BEFORE/AFTER paths; pass the returned thread_id to ask a follow-up about the same scene. "
    "Numbers in answers come from tools and cite tool call ids; map files are paths on the server's disk."
)


def _sdk():
    try:
        from mcp.server.fastmcp import Context, FastMCP
        from mcp.types import CallToolResult, TextContent
    except ImportError as e:  # the [mcp] extra is not installed
        raise ConfigError("`geodelta mcp` needs the MCP SDK: pip install 'geodelta[mcp]'") from e
    return Context, FastMCP, CallToolResult, TextContent


def _area_line(answer: dict[str, Any]) -> str:
    """The answer's own text plus where its maps and thread are, for chat apps that show text only."""
    lines = [answer.get("text", "")]
    if answer.get("clarification"):
        lines.append(f"(a question back: reply with ask(thread_id={answer.get('thread_id')!r}, ...))")
    for kind, path in (answer.get("maps") or {}).items():
        lines.append(f"{kind}: {path}")
    if answer.get("thread_id"):
        lines.append(f"thread_id: {answer['thread_id']} · audit_id: {answer.get('audit_id')}")
    return "\n".join(line for line in lines if line)


def build_server(service: McpService, *, host: str = "127.0.0.1", port: int = 8765):
    """The FastMCP server over `service`; `host` / `port` only matter for the HTTP transport."""
    import anyio
    import anyio.from_thread
    import anyio.to_thread

    Context, FastMCP, CallToolResult, TextContent = _sdk()
    server = FastMCP("geodelta", instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING")

    async def call(ctx: Any, fn: Any, *args: Any, text: Any = None, progress: bool = False, **kwargs: Any) -> Any:
        """Run a blocking service call in a worker thread; with `progress`, its steps become progress notifications."""
        step = 0

        def report(message: str) -> None:
            nonlocal step
            step += 1  # MCP progress must increase with every notification
            anyio.from_thread.run(ctx.report_progress, step, None, message)

        if progress:
            kwargs["progress"] = report
        try:
            result = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except GeoDeltaError as exc:
            return CallToolResult(content=[TextContent(type="text", text=f"error: {exc}")], isError=True)
        body = text(result) if text else json.dumps(result, indent=2)
        return CallToolResult(content=[TextContent(type="text", text=body)], structuredContent=_structured(result))

    @server.tool()
    async def ask(question: str, ctx: Context, before: str | None = None, after: str | None = None,
                  images: list[str] | None = None, thread_id: str | None = None) -> CallToolResult:
        """Answer a question about how the land changed, e.g. "Where did farmland get built over?".

        before / after: paths of the two dates (GeoTIFF/COG, PNG/JPEG/BMP, ENVI, a Sentinel-2 band folder, or a
        local STAC Item JSON); images: more than two dates, oldest first. thread_id: continue an earlier
        conversation (a follow-up needs no paths). Returns the Answer JSON: text, query, regions, quadruples,
        maps (paths of png/html/tif/geojson), justification (tool call ids), confidence, audit_id, thread_id."""
        return await call(ctx, service.ask, question, before=before, after=after, images=images, thread_id=thread_id,
                          progress=True, text=_area_line)

    @server.tool()
    async def detect(before: str, after: str, ctx: Context, method: str = "irmad", min_area_m2: float = 0.0,
                     aoi: list[float] | None = None) -> CallToolResult:
        """Find where the land changed between two images without the agent (like `geodelta detect`).

        method: irmad (default), cva or learned; min_area_m2: drop smaller regions (m²); aoi: [west, south,
        east, north] in lon/lat degrees. Returns the summary (caption, changed area, S2M quadruples, number of
        regions) and the paths of change.tif, overlay.png, map.html, regions.geojson/gpkg and summary.json."""
        return await call(ctx, service.detect, before, after, method=method, min_area_m2=min_area_m2, aoi=aoi,
                          progress=True, text=_detect_text)

    @server.tool()
    async def plan(question: str, ctx: Context) -> CallToolResult:
        """Show the explicit change of interest (ChangeQuery: from/to classes, direction, area, minimum size)
        a question is turned into; runs no detection."""
        return await call(ctx, service.plan, question)

    @server.tool()
    async def audit_verify(ctx: Context) -> CallToolResult:
        """Verify the tamper-evident audit trail (a SHA-256 hash chain over every event): ok, number of events,
        and the first bad row when it does not verify."""
        return await call(ctx, service.audit_verify)

    @server.resource("geodelta://scenes", name="scenes", mime_type="application/json")
    def scenes() -> str:
        """Scenes GeoDelta has read: files, sha256, CRS, bounds, resolution, dates, bands."""
        return json.dumps(service.scenes(), indent=2)

    @server.resource("geodelta://history/{thread_id}", name="history", mime_type="application/json")
    def history(thread_id: str) -> str:
        """The questions and answers of one conversation thread, with their audit ids."""
        return json.dumps(service.history(thread_id), indent=2, default=str)

    return server


def _structured(result: Any) -> dict[str, Any] | None:
    return result if isinstance(result, dict) else None


def _detect_text(summary: dict[str, Any]) -> str:
    change = summary.get("change", {})
    area = f"{change['changed_m2'] / 1e4:,.1f} ha" if "changed_m2" in change else f"{change.get('changed_px', 0):,} px"
    lines = [summary.get("caption", ""), f"changed: {area} in {summary.get('n_regions', 0)} regions"]
    lines += [f"{k}: {v}" for k, v in summary.get("outputs", {}).items()]
    return "\n".join(lines)


async def serve_stdio(server: Any) -> None:
    """stdio transport with stdout reserved for JSON-RPC: file descriptor 1 is pointed at stderr for
    everything else (prints, GDAL, progress bars), the protocol writes to a duplicate of the original."""
    import anyio
    from mcp.server.stdio import stdio_server

    protocol_out = TextIOWrapper(os.fdopen(os.dup(sys.stdout.fileno()), "wb"), encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    low = server._mcp_server  # FastMCP.run_stdio_async without its own stdout wrapper
    async with stdio_server(stdout=anyio.wrap_file(protocol_out)) as (read, write):
        await low.run(read, write, low.create_initialization_options())


def serve(transport: Literal["stdio", "http"] = "stdio", *, host: str = "127.0.0.1", port: int = 8765,
          settings: Settings | None = None) -> None:
    """Run `geodelta mcp` until the client disconnects (stdio) or the process is stopped (HTTP)."""
    import anyio

    settings = settings or Settings()
    if transport not in ("stdio", "http"):
        raise ConfigError(f"unknown MCP transport {transport!r}: use stdio or http")
    if transport == "http":
        from geodelta.agent.mcp_http import check_bind

        check_bind(host, settings.mcp_token)
    _sdk()
    service = McpService(settings)
    try:
        server = build_server(service, host=host, port=port)
        if transport == "stdio":
            anyio.run(serve_stdio, server)
        else:
            from geodelta.agent.mcp_http import serve_http

            print(f"GeoDelta MCP server on http://{host}:{port}/mcp (roots: {os.pathsep.join(map(str, service.roots))})",
                  file=sys.stderr, flush=True)
            anyio.run(serve_http, server, host, port, settings.mcp_token)
    finally:
        service.close()
