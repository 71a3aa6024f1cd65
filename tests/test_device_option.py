"""Issue 13 item 3, bug 1: the device of the tools' Settings reaches the learned masker.

Perception used to build its own `Settings()` (GEODELTA_DEVICE from the environment), so
`Assistant(Settings(device="cpu"))` never reached the learned model. Here the environment says `cuda`
on a machine without a CUDA GPU (so resolving it is a ConfigError) while the tools' settings say `cpu`:
detection must run, on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geodelta.settings import Settings
from geodelta.tools import ToolContext, build_tools


def test_the_tools_device_setting_reaches_the_learned_masker(tmp_path: Path, demo_pair, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")  # without torch the learned masker never resolves a device
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU, where GEODELTA_DEVICE=cuda is unusable")
    monkeypatch.setenv("GEODELTA_DEVICE", "cuda")  # what a Settings() built inside perception would read
    ctx = ToolContext.create(Settings(db=tmp_path / "gd.db", out=tmp_path / "out", device="cpu"))
    ctx.allow(*demo_pair)
    tools = {t.name: t for t in build_tools(ctx)}
    sid = tools["load_scene"].invoke({"before": str(demo_pair[0]), "after": str(demo_pair[1])})["scene_id"]
    res = tools["detect_changes"].invoke({"scene_id": sid, "method": "learned"})
    assert res["method"] == "learned" and res["n_regions"] >= 0
    params = ctx.workspace.analysis(res["analysis_id"]).params
    assert params["runtime"] == "onnx"  # the shipped model on the CPU
