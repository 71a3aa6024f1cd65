"""`geodelta mcp` driven by the official MCP SDK's own client, over stdio and streamable HTTP on 127.0.0.1.

Real parts only: the installed `geodelta` script as a subprocess, the bundled demo scene copied into a
temporary allowed root, a real SQLite memory file whose audit chain is read back afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

from geodelta.agent.mcp_service import allowed_roots, check_allowed  # noqa: E402
from geodelta.errors import ToolInputError  # noqa: E402
from geodelta.memory import Memory  # noqa: E402
from geodelta.settings import Settings  # noqa: E402

GEODELTA = str(Path(sys.executable).with_name("geodelta"))
QUESTION = "Where did farmland get built over?"
AREA = r"\d[\d.,]* ?(ha|km²|m²)"
pytestmark = pytest.mark.slow


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An allowed root holding a copy of the bundled demo pair (geodelta/data/demo)."""
    demo = resources.files("geodelta.data") / "demo"
    for name in ("taizhou_before_2000-03-17_landsat7_etm.tif", "taizhou_after_2003-02-06_landsat7_etm.tif"):
        shutil.copy(str(demo / name), tmp_path / name)
    return tmp_path


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEODELTA_")}
    return env | {"GEODELTA_DB": str(root / "gd.db"), "GEODELTA_ALLOWED_ROOTS": str(root)} | extra


def _pair(root: Path) -> dict[str, str]:
    return {"before": str(root / "taizhou_before_2000-03-17_landsat7_etm.tif"),
            "after": str(root / "taizhou_after_2003-02-06_landsat7_etm.tif")}


def _text(res) -> str:
    return " ".join(getattr(c, "text", "") for c in res.content)


async def _conversation(s: ClientSession, root: Path) -> dict:
    """list tools, ask with progress, follow up in the same thread, a refused path, resources, audit_verify."""
    import re

    await s.initialize()
    tools = {t.name: t for t in (await s.list_tools()).tools}
    assert set(tools) == {"ask", "detect", "plan", "audit_verify"}
    assert {"question", "before", "after", "images", "thread_id"} <= set(tools["ask"].inputSchema["properties"])
    steps: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(message or "")

    first = await s.call_tool("ask", {"question": QUESTION, **_pair(root)}, progress_callback=on_progress)
    assert not first.isError, _text(first)
    assert re.search(AREA, _text(first)), _text(first)
    answer = first.structuredContent
    assert answer["query"]["to_classes"] == ["built_up"] and answer["regions"]
    assert all(Path(p).is_file() for p in answer["maps"].values()) and "html" in answer["maps"]
    assert any("detect_changes" in m for m in steps) and any("render_map" in m for m in steps), steps

    follow = await s.call_tool("ask", {"question": "and how much of that is in the north?", "thread_id": answer["thread_id"]})
    assert not follow.isError, _text(follow)
    f = follow.structuredContent
    assert f["thread_id"] == answer["thread_id"] and f["query"]["area"] == {"kind": "sector", "sector": "north"}
    assert 0 < len(f["regions"]) < len(answer["regions"]) and all(r["sector"] == "north" for r in f["regions"])

    refused = await s.call_tool("ask", {"question": QUESTION, "before": "/etc/passwd", "after": _pair(root)["after"]})
    assert refused.isError and "outside the allowed roots" in _text(refused)

    plan = await s.call_tool("plan", {"question": "where did forest turn into water?"})
    assert plan.structuredContent["to_classes"] == ["water"]

    scenes = json.loads((await s.read_resource("geodelta://scenes")).contents[0].text)
    assert any(_pair(root)["before"] in sc["ref"]["paths"] for sc in scenes)
    history = json.loads((await s.read_resource(f"geodelta://history/{answer['thread_id']}")).contents[0].text)
    assert [h["question"] for h in history] == [QUESTION, "and how much of that is in the north?"]

    verify = await s.call_tool("audit_verify", {})
    assert verify.structuredContent["ok"] is True and verify.structuredContent["n"] > 10
    return {"answer": answer, "follow": f}


def _audit_has_mcp_calls(db: Path) -> None:
    """Every MCP call, the refused one included, is in the audit chain like any other call."""
    with Memory(db) as mem:
        rows = list(mem.raw_events())
        assert mem.verify().ok
    tools = [r["tool"] for r in rows if r["kind"] == "tool_call" and (r["tool"] or "").startswith("mcp.")]
    assert tools.count("mcp.ask") == 3 and "mcp.plan" in tools and "mcp.audit_verify" in tools
    errors = [r for r in rows if r["kind"] == "error" and r["tool"] == "mcp.ask"]
    assert len(errors) == 1 and "outside the allowed roots" in errors[0]["error"]
    assert any(r["kind"] == "tool_call" and r["tool"] == "detect_changes" for r in rows)  # the agent's own calls


def test_stdio_session_with_the_sdk_client(root: Path) -> None:
    async def main() -> dict:
        params = StdioServerParameters(command=GEODELTA, args=["mcp"], cwd=str(root), env=_env(root))
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            return await _conversation(s, root)

    asyncio.run(asyncio.wait_for(main(), 600))
    _audit_has_mcp_calls(root / "gd.db")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_http(root: Path, port: int, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen([GEODELTA, "mcp", "--transport", "http", "--port", str(port)], cwd=root,
                            env=_env(root, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("HTTP server did not start in 60 s")


def test_http_session_needs_the_bearer_token(root: Path) -> None:
    port, token = _free_port(), "s3cret-token"
    proc = _start_http(root, port, GEODELTA_MCP_TOKEN=token)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"accept": "application/json, text/event-stream"}
        missing = httpx.post(url, json=init, headers=headers, timeout=10)
        wrong = httpx.post(url, json=init, headers=headers | {"authorization": "Bearer nope"}, timeout=10)
        assert missing.status_code == wrong.status_code == 401 and "bearer token" in missing.json()["error"]

        async def main() -> dict:
            async with streamablehttp_client(url, headers={"Authorization": f"Bearer {token}"}) as (r, w, _), \
                    ClientSession(r, w) as s:
                return await _conversation(s, root)

        asyncio.run(asyncio.wait_for(main(), 600))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    _audit_has_mcp_calls(root / "gd.db")


def test_http_beyond_loopback_needs_a_token(root: Path) -> None:
    res = subprocess.run([GEODELTA, "mcp", "--transport", "http", "--host", "0.0.0.0"], cwd=root, env=_env(root),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "GEODELTA_MCP_TOKEN" in res.stderr and len(res.stderr.strip().splitlines()) <= 2


def test_allowed_roots_and_stac_assets(tmp_path: Path, data_dir: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir(), outside.mkdir()
    s = Settings(allowed_roots=f"{inside}{os.pathsep}{outside / 'sub'}")
    assert allowed_roots(s, tmp_path) == [inside.resolve(), (outside / "sub").resolve()]
    assert allowed_roots(Settings(allowed_roots=""), tmp_path) == [tmp_path.resolve()]
    naip = sorted((data_dir / "naip").glob("m_*.tif"))[0]
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "n", "properties": {"datetime": "2009-08-18T00:00:00Z"},
            "geometry": None, "links": [], "assets": {"image": {"href": str(naip), "eo:bands": [{"common_name": "red"}]}}}
    (inside / "item.json").write_text(json.dumps(item))
    with pytest.raises(ToolInputError, match="points at .* outside the allowed roots"):
        check_allowed(str(inside / "item.json"), [inside])
    assert check_allowed(str(inside / "item.json"), [inside, naip.parent]) == (inside / "item.json").resolve()
    with pytest.raises(ToolInputError, match="outside the allowed roots"):
        check_allowed(str(inside / ".." / "out" / "x.tif"), [inside])


def test_detect_on_stac_items_over_loopback_http_without_token(tmp_path: Path, data_dir: Path) -> None:
    """No token needed on 127.0.0.1; STAC Items are accepted by the MCP tools like any image path."""
    naip = sorted((data_dir / "naip").glob("m_*.tif"))
    if len(naip) < 2:
        pytest.skip("naip/ not found")
    items = []
    for tif in (naip[0], naip[-1]):
        d = tif.stem.rsplit("_", 1)[1]
        doc = {"type": "Feature", "stac_version": "1.1.0", "id": tif.stem, "geometry": None, "links": [],
               "properties": {"datetime": f"{d[:4]}-{d[4:6]}-{d[6:]}T00:00:00Z"},
               "assets": {"image": {"href": str(tif), "type": "image/tiff; application=geotiff", "roles": ["data"],
                                    "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue", "nir")]}}}
        items.append(tmp_path / f"{tif.stem}.json")
        items[-1].write_text(json.dumps(doc))
    port = _free_port()
    proc = _start_http(tmp_path, port, GEODELTA_ALLOWED_ROOTS=f"{tmp_path}{os.pathsep}{naip[0].parent}")
    steps: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(message or "")

    async def main():
        async with streamablehttp_client(f"http://127.0.0.1:{port}/mcp") as (r, w, _), ClientSession(r, w) as s:
            await s.initialize()
            return await s.call_tool("detect", {"before": str(items[0]), "after": str(items[1])}, progress_callback=on_progress)

    try:
        res = asyncio.run(asyncio.wait_for(main(), 600))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not res.isError, _text(res)
    summary = res.structuredContent
    assert summary["inputs"]["bands"] == ["blue", "green", "red", "nir"]
    assert summary["inputs"]["before"]["dates"] == ["2009-08-18"] and summary["inputs"]["after"]["dates"] == ["2020-08-31"]
    assert summary["change"]["changed_m2"] > 0 and " ha in " in _text(res)
    assert Path(summary["outputs"]["summary"]).is_file() and steps and any(m.startswith("change") for m in steps), steps
