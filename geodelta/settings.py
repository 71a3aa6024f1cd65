"""Run-time settings: env prefix GEODELTA_, optional TOML file; every default works offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from geodelta.contracts import GDAL_CACHE_MB, DetectOptions

_CHECKOUT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _default_data_dir() -> Path:
    """`../shared/data` next to the checkout (the workplace layout)."""
    return _CHECKOUT_DATA


def _default_gdal_cache_mb() -> int | None:
    """GDAL_CACHE_MB, unless the user set GDAL's own GDAL_CACHEMAX: then GDAL's setting is left to it."""
    return None if os.environ.get("GDAL_CACHEMAX") else GDAL_CACHE_MB


class Settings(BaseSettings):
    """All knobs in one typed object, passed explicitly into the graph and the tools."""

    model_config = SettingsConfigDict(env_prefix="GEODELTA_", toml_file=None, extra="ignore")

    data: Path = Field(default_factory=_default_data_dir, description="Folder of labelled real data (../shared/data).")
    db: Path = Field(default=Path("~/.geodelta/geodelta.db"), description="SQLite file for memory, audit and threads.")
    audit_key: SecretStr | None = Field(default=None, description="HMAC key for the audit chain (GEODELTA_AUDIT_KEY): "
                                        "rewriting the trail then needs the key. Keep it outside the database's machine.")
    out: Path = Field(default=Path("geodelta-out"), description="Default output folder for maps and summaries.")

    # perception
    method: str = Field(default="auto", description="Change masker: a name in the masker registry.")
    tile_size: int = Field(default=1024, ge=64, description="Window edge in pixels; peak memory follows it.")
    min_area_m2: float = Field(default=0.0, ge=0)
    min_area_px: int = Field(default=16, ge=0, description="Drop regions smaller than this many pixels, on every "
                             "scene: speckle, not change (see DetectOptions.min_area_px).")
    gdal_cache_mb: int | None = Field(default_factory=_default_gdal_cache_mb, ge=16, description="GDAL's block "
                                      "cache while detecting, MiB (default 256; GDAL_CACHEMAX when that is set).")

    # models
    backend: str = Field(default="embedded", description="Planner: a name in the model-backend registry.")
    openai_base_url: str = "http://localhost:11434/v1"
    openai_model: str = "qwen2.5vl"
    openai_api_key: str = "not-needed"
    openai_timeout_s: float = Field(default=60.0, gt=0)
    openai_max_retries: int = Field(default=1, ge=0)
    fallback_to_embedded: bool = False
    max_corrections: int = Field(default=2, ge=0, description="Corrective retries for malformed tool calls.")
    vlm_path: Path | None = None
    vlm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    vlm_max_new_tokens: int = Field(default=512, ge=1, description="Token budget of one local-model reply.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["int8", "float"] | None = Field(default=None, description="The learned change models on the "
                                                       "CPU: int8 (quantised, ~2x faster) or float; unset: each model's measured default.")
    sam_checkpoint: Path | None = None
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"

    # MCP server (`geodelta mcp`, agent/mcp_server.py)
    allowed_roots: str = Field(default="", description="Folders MCP clients may name files in, separated by "
                               "os.pathsep (':' on Linux/macOS); empty: the folder the server runs in.")
    mcp_token: str | None = Field(default=None, description="Bearer token every HTTP request must carry; "
                                  "required to bind the HTTP transport beyond loopback.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from geodelta.perception.change.registry import list_maskers  # cheap: names only

        if value not in list_maskers():
            raise ValueError(f"unknown change method {value!r}: choose one of {', '.join(list_maskers())}")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from geodelta.agent.models import list_backends  # cheap: lazy "module:function" entries

        if value not in list_backends():
            raise ValueError(f"unknown backend {value!r}: choose one of {', '.join(list_backends())}")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # An optional ~/.geodelta/config.toml (or GEODELTA_CONFIG) sits below env vars and init args.
        import os

        toml_path = Path(os.environ.get("GEODELTA_CONFIG", "~/.geodelta/config.toml")).expanduser()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def db_path(self) -> Path:
        return self.db.expanduser()

    def detect_options(self, **given: Any) -> DetectOptions:
        """DetectOptions from these settings (window size, minimum region, device, precision, GDAL cache), with
        what the caller `given` (method, min_area_m2, focus, engine, ...; None: not given) taking precedence: the
        CLI, the tools and the MCP service build them here, so one setting reaches every entry point."""
        base = {"min_area_px": self.min_area_px, "tile": self.tile_size, "device": self.device,
                "precision": self.precision, "gdal_cache_mb": self.gdal_cache_mb}
        return DetectOptions(**(base | {k: v for k, v in given.items() if v is not None}))
