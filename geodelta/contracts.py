"""The language every part speaks: pydantic v2 models at the boundaries.

Inside perception we use plain numpy; these types cross module, tool, memory and API boundaries
and are what `summary.json` and `ask --json` serialise.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

# The fixed land-cover vocabulary (ARCHITECTURE section 3). "unknown" is not a class: it marks
# a region whose classes were not (or could not be) determined, and the answer must say so.
LandCover = Literal["water", "tree", "low_vegetation", "cropland", "bare_ground", "built_up", "other"]
VOCABULARY: tuple[str, ...] = ("water", "tree", "low_vegetation", "cropland", "bare_ground", "built_up", "other")
ClassOrUnknown = Literal["water", "tree", "low_vegetation", "cropland", "bare_ground", "built_up", "other", "unknown"]

# Nine cells of the scene frame, north up, row-major from the top-left.
Sector = Literal["north-west", "north", "north-east", "west", "centre", "east", "south-west", "south", "south-east"]
SECTORS: tuple[str, ...] = ("north-west", "north", "north-east", "west", "centre", "east", "south-west", "south", "south-east")

# nodata of every uint8 raster GeoDelta writes: change.tif (1 change, 0 no change) and land-cover class maps.
NODATA_U8 = 255
# progress(stage, done, total): the one callback shape every long stage reports through.
Progress = Callable[[str, int, int], None]

Direction = Literal["appear", "disappear", "convert", "any"]
# What a change of interest is about, for the maskers that have a head for it (auto routes "buildings" questions on
# aerial RGB to the building-change model); "any": every kind of land change.
Focus = Literal["any", "buildings"]
How = Literal["appeared", "disappeared", "converted", "expanded", "shrank", "changed"]
ReportItem = Literal["where", "how_much", "count", "what", "when", "map"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SceneArea(_Model):
    """Whole scene."""

    kind: Literal["scene"] = "scene"


class SectorArea(_Model):
    """One of the nine sectors of the scene frame."""

    kind: Literal["sector"] = "sector"
    sector: Sector


class BBoxArea(_Model):
    """A lon/lat box (west, south, east, north) in EPSG:4326."""

    kind: Literal["bbox"] = "bbox"
    bbox: tuple[float, float, float, float]

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        w, s, e, n = v
        if not (w < e and s < n):
            raise ValueError("bbox must be (west, south, east, north) with west < east and south < north")
        return v


Area = SceneArea | SectorArea | BBoxArea


class ChangeQuery(_Model):
    """The explicit change-of-interest a vague question is turned into (ReasonCD).

    An empty class list means "any class".
    """

    from_classes: list[LandCover] = Field(default_factory=list)
    to_classes: list[LandCover] = Field(default_factory=list)
    direction: Direction = "any"
    area: Area = Field(default_factory=SceneArea, discriminator="kind")
    min_area_m2: float = Field(default=0.0, ge=0)
    report: list[ReportItem] = Field(default_factory=lambda: list[ReportItem](["where", "how_much", "count"]))
    time_window: tuple[date, date] | None = None
    rationale: str = Field(default="", description="Why the question was read this way (shown to the user).")

    @property
    def focus(self) -> Focus:
        """"buildings" when the question is about built-up land appearing or going, whatever it was or became
        ("how many new buildings?", "were houses demolished?"); a conversion such as farmland -> built-up stays
        "any": building labels teach "a roof appeared", not "this field became a building site"."""
        built = ["built_up"]
        if (self.to_classes == built and not self.from_classes) or (self.from_classes == built and not self.to_classes):
            return "buildings"
        return "any"

    def wants(self, from_class: str, to_class: str) -> bool:
        """True when a region with this from -> to transition matches the query's classes."""
        ok_from = not self.from_classes or from_class in self.from_classes or from_class == "unknown"
        ok_to = not self.to_classes or to_class in self.to_classes or to_class == "unknown"
        return ok_from and ok_to


class SceneRef(_Model):
    """What was read from disk for one date, and the grid the pair was aligned to."""

    paths: list[str]
    sha256: list[str]
    crs: str | None = None
    bounds: tuple[float, float, float, float] | None = None
    resolution: tuple[float, float] | None = None
    width: int
    height: int
    dates: list[str | None] = Field(default_factory=list)
    bands: list[str] = Field(default_factory=list)


def plain_json(value: Any) -> Any:
    """`value` with numpy arrays (and tuples) turned into lists, recursively: what json.dumps can write."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


class Region(_Model):
    """One connected change region (S2M's mask component)."""

    id: int
    polygon: dict[str, Any] = Field(description="GeoJSON geometry, EPSG:4326 when georeferenced, pixels otherwise.")
    bbox_px: tuple[int, int, int, int] = Field(description="col_min, row_min, col_max, row_max (inclusive-exclusive).")
    centroid_px: tuple[float, float] = Field(description="col, row")
    centroid_lonlat: tuple[float, float] | None = None
    sector: Sector
    area_m2: float | None = None
    area_px: int
    from_class: ClassOrUnknown = "unknown"
    to_class: ClassOrUnknown = "unknown"
    how: How = "changed"
    confidence: float = Field(ge=0, le=1)
    class_confidence: float | None = Field(default=None, ge=0, le=1)
    refined_by: str | None = None
    first_interval: int | None = None
    n_objects: int | None = Field(default=None, ge=1, description="Separate objects in the region (touching "
                                  "buildings split); counted when the question is about buildings.")
    # (the polygon dict it was built from, shapely geometry): describe, render and the map need the geometry,
    # and rebuilding it from the dict (shapely's shape()) cost seconds per stage at 10,000 regions.
    _shape: tuple[Any, Any] | None = PrivateAttr(default=None)

    @field_serializer("polygon")
    def _polygon_lists(self, polygon: dict[str, Any]) -> dict[str, Any]:
        return plain_json(polygon)  # ring arrays (describe.geometry.geojson_dicts) -> lists, in every dump

    def __eq__(self, other: object) -> bool:
        """Field-by-field, with the polygon compared as JSON (its rings may be arrays or lists)."""
        if not isinstance(other, Region):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def geometry(self) -> Any:
        """`polygon` as a shapely geometry, built once per polygon (a model_copy that replaces `polygon` rebuilds it).

        describe sets it when it creates the region (`with_geometry`), so no stage pays for shape()."""
        cached = self._shape
        if cached is None or cached[0] is not self.polygon:
            from shapely.geometry import shape  # lazy: contracts stays importable without the geo stack loaded

            cached = self._shape = (self.polygon, shape(self.polygon))
        return cached[1]

    def with_geometry(self, geom: Any) -> Region:
        """Attach `geom` (the shapely geometry `polygon` was written from) and return self."""
        self._shape = (self.polygon, geom)
        return self


class Where(_Model):
    sector: Sector
    bbox: tuple[float, float, float, float] = Field(description="lon/lat (W,S,E,N) or pixel (c0,r0,c1,r1) bbox of the group")
    lonlat: tuple[float, float] | None = None


class What(_Model):
    # "from" is a Python keyword: the field is `from_`, read and written as "from" in every JSON we produce
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    from_: ClassOrUnknown = Field(default="unknown", alias="from")
    to: ClassOrUnknown = "unknown"


class Quadruple(_Model):
    """S2M (where, what, how, how many): one group of regions per sector, class pair and how."""

    where: Where
    what: What
    how: How
    how_many: int = Field(ge=0)
    total_area_m2: float | None = None
    total_area_px: int | None = None
    region_ids: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_area(self) -> Quadruple:
        if self.total_area_m2 is None and self.total_area_px is None:
            raise ValueError("a quadruple needs total_area_m2 or total_area_px")
        return self

    def to_json(self) -> dict[str, Any]:
        """The S2M JSON shape of summary.json (`what.from`, not `from_`; no null area field)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# GDAL's block cache during detection, MiB. GDAL's default is 5 % of RAM (1.2 GB on a 24 GB machine), and a
# detection reads every block about once, so a big cache only holds memory: `geodelta detect` on the 20000 px
# NAIP mosaic peaked at 2.97 GB RSS with GDAL's default and 1.89 GB with 256 MiB, in about the same time.
GDAL_CACHE_MB = 256


class DetectOptions(_Model):
    """How one detection runs, typed once: the CLI, the tools and the API build it, the pipeline takes it whole,
    and the analysis record keeps it, so a later step (refine) uses what the detection used, not a default.
    Where it runs (a Dask client or scheduler address) is not an option of the result: `engine_opts` stays
    a separate runtime argument."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(default="auto", description="Change masker (registry name, see `geodelta detect --help`).")
    min_area_m2: float = Field(default=0.0, ge=0, description="Drop regions smaller than this (m²).")
    # 16 px on every scene, georeferenced or not: removing smaller 4-connected components kept or raised held-out
    # pixel F1 (OSCD 0.419 -> 0.434; Landsat 0.885 -> 0.880 the one loss) and raised object F1 in every domain
    # (OMBRIA 0.076 -> 0.097, Landsat 0.605 -> 0.642), while the 4000 px NAIP mosaic's region count fell by ~60 %.
    min_area_px: int = Field(default=16, ge=0, description="Drop regions smaller than this many pixels (any scene).")
    tile: int = Field(default=1024, ge=32, description="Window size in pixels: peak memory follows it.")
    engine: str = Field(default="local", description="Execution engine of the change stage: local or dask.")
    device: str | None = Field(default=None, description="Torch device of torch models (auto|cpu|cuda); None: auto.")
    precision: Literal["int8", "float"] | None = Field(default=None, description="Precision of the learned ONNX models "
                                                       "on the CPU: int8 (~2x faster) or float; None: each model's measured default.")
    focus: Focus = Field(default="any", description="What the change of interest is about (auto picks by it too).")
    masker_opts: dict[str, Any] = Field(default_factory=dict, description="Masker options, e.g. the learned weights.")
    gdal_cache_mb: int | None = Field(default=GDAL_CACHE_MB, ge=16, description="GDAL's block cache while detecting "
                                      "(MiB, in every process that reads); None: GDAL's own setting (GDAL_CACHEMAX).")


class _Sparse(_Model):
    """A record whose unset optional fields are left out of its JSON (absent, not null): readers test `in`."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class MethodInfo(_Sparse):
    name: str
    params: dict[str, Any] = Field(default_factory=dict, description="The fitted masker's JSON-able parameters.")
    chosen: str | None = Field(default=None, description="What `auto` picked ...")
    reason: str | None = Field(default=None, description="... and why (the measured held-out table).")


class ChangeTotals(_Sparse):
    changed_px: int = Field(ge=0)
    valid_px: int = Field(ge=0)
    changed_m2: float | None = Field(default=None, ge=0, description="Only on a grid with a metric pixel area.")


class Summary(_Model):
    """summary.json of one detection: totals, quadruples and the largest regions (a few kB at any scale; every
    region with its polygon is in `regions_file`), and what makes it reproducible (inputs' sha256, options)."""

    geodelta_version: str
    query: ChangeQuery
    options: DetectOptions
    method: MethodInfo
    inputs: dict[str, Any] = Field(description="before / after SceneRef, bands, band_roles, band_roles_source.")
    grid: dict[str, Any] = Field(description="crs, transform (6 affine terms), width, height, georeferenced.")
    change: ChangeTotals
    n_regions: int = Field(ge=0)
    regions: list[dict[str, Any]] = Field(description="The largest regions, without polygons.")
    regions_file: str
    quadruples: list[dict[str, Any]] = Field(description="S2M quadruples (region_ids capped; how_many keeps the count).")
    caption: str
    classes_known: bool
    outputs: dict[str, str] = Field(description="Output kind -> file name in the output folder.")
    timings_s: dict[str, float] = Field(default_factory=dict)


class Evidence(_Model):
    """One number in an answer and the tool call that produced it."""

    tool_call_id: str
    tool: str
    claim: str
    value: float | int | str | None = None


class Answer(_Model):
    """What `ask` returns; numbers come from tools, never from a model."""

    text: str
    query: ChangeQuery
    regions: list[Region] = Field(default_factory=list)
    quadruples: list[Quadruple] = Field(default_factory=list)
    maps: dict[str, str] = Field(default_factory=dict)
    justification: list[Evidence] = Field(default_factory=list)
    confidence: float = Field(default=0.0, ge=0, le=1)
    caveats: list[str] = Field(default_factory=list)
    audit_id: str | None = None
    thread_id: str | None = None
    clarification: str | None = None
    status: Literal["answered", "clarification", "failed"] = Field(
        default="answered", description="answered (no change found included), asked back, or could not answer.")
    exit_code: int = Field(default=0, description="The `geodelta ask` exit status this answer maps to (see geodelta.errors).")


def utcnow() -> datetime:
    return datetime.now(UTC)
