"""What every tool needs at run time, passed in explicitly (no globals read inside tools)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodelta.settings import Settings
from geodelta.tools.paths import check_path
from geodelta.tools.workspace import Workspace


@dataclass
class ToolContext:
    """Settings, the on-disk workspace, the allowed path roots, and an optional progress sink."""

    settings: Settings
    workspace: Workspace
    allowed: list[Path] = field(default_factory=list)
    progress: Callable[[str, int, int], None] | None = None
    memory: Any = None  # geodelta.memory.Memory when the agent runs with one
    bands: str | None = None  # band roles the user declared for this question (load_scene's default)
    # A multimodal model that may word the caption (kept only when grounded on the quadruples); None: the template.
    captioner: Any = None

    @classmethod
    def create(cls, settings: Settings, memory: Any = None) -> ToolContext:
        ws = Workspace(settings.out)
        ws.root.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, workspace=ws, allowed=[ws.root], memory=memory)

    def allow(self, *paths: str | Path | None) -> None:
        """Add files or folders the user named to the allowed roots."""
        for p in paths:
            if p:
                rp = Path(p).expanduser().resolve()
                if rp not in self.allowed:
                    self.allowed.append(rp)

    def check(self, path: str | Path) -> Path:
        return check_path(path, self.allowed)
