"""`load_scene`: open a before/after pair the user named and align it to one grid."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.tools.context import ToolContext
from geodelta.tools.results import SceneResult


class LoadSceneArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    before: str = Field(description="Path of the BEFORE image, exactly as the user gave it.")
    after: str = Field(description="Path of the AFTER image, exactly as the user gave it.")
    aoi: tuple[float, float, float, float] | None = Field(default=None, description="Optional lon/lat crop (W, S, E, N).")
    bands: str | None = Field(default=None, description="Band roles in file order when the files carry none, exactly as "
                              "the user declared them, e.g. 'swir1,nir,green' (roles: blue, green, red, nir, swir1, swir2).")


def make(ctx: ToolContext) -> BaseTool:
    def load_scene(before: str, after: str, aoi: tuple[float, float, float, float] | None = None, bands: str | None = None) -> dict:
        """Open the BEFORE and AFTER images the user named (GeoTIFF, PNG/JPEG/BMP, ENVI or a Sentinel-2 band
        folder), put them on one grid and return a scene_id with the grid's size, CRS, bands, band roles and dates."""
        b, a = ctx.check(before), ctx.check(after)
        sid, pair = ctx.workspace.add_scene(b, a, aoi, bands or ctx.bands)
        ref_b, ref_a = pair.scene_ref("before"), pair.scene_ref("after")
        if ctx.memory is not None:
            ctx.memory.add_scene(ref_b)
            ctx.memory.add_scene(ref_a)
        g = pair.grid
        return SceneResult(
            scene_id=sid, width=g.width, height=g.height, crs=g.crs.to_string() if g.crs else None,
            georeferenced=g.georeferenced, bands=pair.band_names, band_roles=pair.band_roles,
            band_roles_source=pair.roles_source,
            dates=[ref_b.dates[0] if ref_b.dates else None, ref_a.dates[0] if ref_a.dates else None],
            sha256={"before": ref_b.sha256, "after": ref_a.sha256},
        ).to_json()

    return StructuredTool.from_function(load_scene, name="load_scene", args_schema=LoadSceneArgs, description=load_scene.__doc__)
