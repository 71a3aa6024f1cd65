"""Compose the `Answer` deterministically from tool results: every number comes from a tool call.

A model may reword the text later (`check_rewording`), but only if its wording keeps the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage

from geodelta.contracts import Answer, ChangeQuery, Evidence, Region
from geodelta.errors import CLARIFICATION_EXIT
from geodelta.perception.describe.caption import LAND_PHRASE, format_area
from geodelta.tools.workspace import Workspace

# Classes that colour alone cannot tell apart: they need one of these band roles (NDVI / MNDWI / NDWI).
_NEEDS_BANDS = {"water": ("nir", "swir1"), "tree": ("nir",), "low_vegetation": ("nir",), "cropland": ("nir",)}


def roles_unknown_for(query: ChangeQuery, scene: dict[str, Any] | None) -> list[str]:
    """The asked classes that need NIR/SWIR when the scene's band roles were only assumed (a PNG or a TIFF
    without band names read as RGB) and include none of the bands those classes need."""
    if not scene or scene.get("band_roles_source") != "assumed":
        return []
    roles = set(scene.get("band_roles") or {})
    asked = list(dict.fromkeys([*query.from_classes, *query.to_classes]))
    return [c for c in asked if c in _NEEDS_BANDS and not roles & set(_NEEDS_BANDS[c])]


def tool_results(messages: list[AnyMessage]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Latest successful result per tool name: name -> (tool_call_id, parsed JSON)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for m in messages:
        if isinstance(m, ToolMessage) and m.status != "error":
            try:
                # a list content raises TypeError (caught below); tool messages always carry a name
                out[cast(str, m.name)] = (m.tool_call_id, json.loads(cast(str, m.content)))
            except (TypeError, json.JSONDecodeError):
                continue
    return out


def tool_errors(messages: list[AnyMessage]) -> list[str]:
    return [f"{m.name}: {m.content}" for m in messages if isinstance(m, ToolMessage) and m.status == "error"]


def error_exit_code(messages: list[AnyMessage]) -> int:
    """Exit status for a question the tools could not answer: the refusing error's code (2, bad input, by default)."""
    codes = [m.artifact.get("exit_code", 2) if isinstance(m.artifact, dict) else 2
             for m in messages if isinstance(m, ToolMessage) and m.status == "error"]
    return max(codes, default=2)


def _classes(names: Sequence[str]) -> str:
    return " or ".join(LAND_PHRASE.get(n, n) for n in names) if names else "any land"


def _scope(q: ChangeQuery) -> str:
    if q.area.kind == "sector":
        return f"in the {q.area.sector} of the scene"
    if q.area.kind == "bbox":
        w, s, e, n = q.area.bbox
        return f"inside the box {w:g},{s:g},{e:g},{n:g}"
    return "in the scene"


def _subject(q: ChangeQuery) -> str:
    """What the question asked about, in words ('farmland turned into built-up land')."""
    if q.from_classes and q.to_classes:
        return f"{_classes(q.from_classes)} turned into {_classes(q.to_classes)}"
    if q.to_classes:
        return f"new {_classes(q.to_classes)}"
    if q.from_classes:
        return f"{_classes(q.from_classes)} lost"
    return "change"


def compose(messages: list[AnyMessage], history: list[AnyMessage], workspace: Workspace, *, thread_id: str | None, audit_id: str | None) -> Answer:
    """Build the Answer for the current turn; `history` is the whole thread (follow-ups reuse detections)."""
    results = tool_results(messages)
    earlier = tool_results(history)
    q_id, q_res = results.get("set_query") or earlier.get("set_query") or ("", {"query": {}})
    query = ChangeQuery.model_validate(q_res["query"])
    errors = tool_errors(messages)
    last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    clarify = last_ai.additional_kwargs.get("geodelta_clarify") if last_ai else None

    if "describe_changes" not in results:
        why = clarify or ("; ".join(errors) if errors else "the analysis did not run")
        status, code = ("clarification", CLARIFICATION_EXIT) if clarify else ("failed", error_exit_code(messages))
        return Answer(text=f"I could not answer: {why}", query=query, clarification=clarify, caveats=errors, thread_id=thread_id,
                      audit_id=audit_id, status=status, exit_code=code)

    d_id, desc = results["describe_changes"]
    an = workspace.analysis(desc["analysis_id"])
    by_id = {r.id: r for r in an.regions}
    regions: list[Region] = [by_id[i] for i in desc["region_ids"] if i in by_id]
    geo = "total_area_m2" in desc
    total = desc.get("total_area_m2", desc.get("total_area_px", 0))
    area_txt = format_area(m2=total) if geo else format_area(px=int(total))
    evidence = [
        Evidence(tool_call_id=q_id, tool="set_query", claim="change of interest", value=_subject(query) + " " + _scope(query)),
        Evidence(tool_call_id=d_id, tool="describe_changes", claim="regions matching the query", value=desc["n_regions"]),
        Evidence(tool_call_id=d_id, tool="describe_changes", claim="total area " + ("m²" if geo else "px"), value=total),
    ]
    caveats: list[str] = []
    lc = results.get("classify_land_cover") or earlier.get("classify_land_cover")
    classes_known = bool(lc and lc[1].get("classes_known"))
    if lc:
        evidence.append(Evidence(tool_call_id=lc[0], tool="classify_land_cover", claim="mean class confidence", value=lc[1].get("mean_class_confidence")))
        if lc[1].get("caveat"):  # the rule set's own honesty note (landcover.CAVEATS)
            caveats.append(lc[1]["caveat"])
    if not classes_known:
        caveats.append("Land-cover classes are unknown for this scene, so the regions are not filtered by class: every change in scope is counted.")
    det = results.get("detect_changes") or earlier.get("detect_changes")
    if det:
        evidence.append(Evidence(tool_call_id=det[0], tool="detect_changes", claim=f"changed fraction of the scene ({det[1]['method']})", value=det[1].get("changed_fraction")))
        if det[1].get("chosen_method"):  # method auto: which masker ran and the measured reason
            evidence.append(Evidence(tool_call_id=det[0], tool="detect_changes", claim="change method chosen by auto", value=det[1].get("method_reason") or det[1]["chosen_method"]))
    scene = results.get("load_scene") or earlier.get("load_scene")
    unknown = roles_unknown_for(query, scene[1] if scene else None)
    if unknown:
        caveats.append(f"The band roles of these images are not known (no band names: read as red, green, blue), and "
                       f"{_classes(unknown)} needs near-infrared or SWIR bands: if the images are not true colour, declare "
                       "their bands in file order, e.g. --bands swir1,nir,green (bands= in the API).")

    n = desc["n_regions"]
    subject, scope = _subject(query), _scope(query)
    if n == 0 and unknown:
        text = (f"I cannot tell whether there was {subject} {scope}: the images' band roles are unknown (read as red, "
                f"green, blue) and {_classes(unknown)} needs near-infrared or SWIR. Declare the bands (e.g. --bands "
                "swir1,nir,green) and ask again.")
    elif n == 0:
        text = f"No {subject} was found {scope}."
        if desc.get("n_regions_all"):
            text += f" ({desc['n_regions_all']} changed areas of other kinds were detected.)"
    else:
        text = f"{n} area{'s' if n != 1 else ''} of {subject}, {area_txt} in total, {'were' if n != 1 else 'was'} found {scope}."
        if desc.get("n_objects"):  # a question about buildings: separate objects, touching ones split
            k = desc["n_objects"]
            text += (f" They hold {k} separate building{'s' if k != 1 else ''} (touching ones split at narrow necks of "
                     "the change mask).")
            evidence.append(Evidence(tool_call_id=d_id, tool="describe_changes", claim="separate buildings in those areas",
                                     value=k))
    # The per-sector breakdown is in the caption; each number it states is cited here.
    for quad in desc["quadruples"][:3]:
        evidence.append(Evidence(tool_call_id=d_id, tool="describe_changes", claim=f"area in the {quad['where']['sector']} ({quad['what']['from']} -> {quad['what']['to']})", value=quad.get("total_area_m2", quad.get("total_area_px"))))
    text += _when(results.get("detect_series"), query, evidence, caveats)
    cap = results.get("caption_changes")
    if cap and n > 0:  # with nothing found the caption only restates "No ..." (or contradicts "cannot tell")
        text += " " + cap[1]["caption"]
    maps = dict(results["render_map"][1]["maps"]) if "render_map" in results else {}
    if "detect_series" in results:
        maps["timeline"] = results["detect_series"][1]["timeline_png"]
    confs = [r.confidence for r in regions]
    confidence = sum(confs) / len(confs) if confs else 0.0
    if classes_known and lc:
        confidence *= float(lc[1].get("mean_class_confidence") or 0.0) or 1.0
    if errors:
        caveats.extend(errors)
    return Answer(
        text=text,
        query=query,
        regions=regions,
        quadruples=desc["quadruples"],
        maps=maps,
        justification=evidence,
        confidence=round(min(max(confidence, 0.0), 1.0), 3),
        caveats=caveats,
        audit_id=audit_id,
        thread_id=thread_id,
    )


def _when(series: tuple[str, dict[str, Any]] | None, query: ChangeQuery, evidence: list[Evidence], caveats: list[str]) -> str:
    """' Most of it changed between DATE and DATE (N ha).' from a detect_series result: the interval in which
    most of the answer's regions first changed (`asked`), else where most of the scene first changed."""
    if not series:
        return ""
    s_id, res = series
    asked = res.get("asked")
    if asked and asked.get("main_interval"):
        iv = asked["by_interval"][asked["main_interval"] - 1]
        value, start, end = iv.get("m2", iv["px"]), iv["start"], iv["end"]
        area = format_area(m2=iv["m2"]) if "m2" in iv else format_area(px=iv["px"])
        subject = "Most of it"
    elif res.get("main_interval") and not asked:
        iv = res["intervals"][res["main_interval"] - 1]
        value = iv["first_change_m2"] if iv.get("first_change_m2") is not None else iv["first_change_px"]
        start, end = iv["start"], iv["end"]
        area = format_area(m2=value) if iv.get("first_change_m2") is not None else format_area(px=int(value))
        subject = "Most of the change in the scene"
    else:
        return ""
    evidence.append(Evidence(tool_call_id=s_id, tool="detect_series", claim=f"area that first changed between {start} and {end}", value=value))
    if query.from_classes or query.to_classes:
        caveats.append("Dates come from change between consecutive images, without land-cover classes per date: a region "
                       "is dated by when its pixels first changed, whatever they changed into then.")
    return f" {subject} changed between {start} and {end} ({area})."


def check_rewording(original: str, reworded: str) -> bool:
    """True when a model's rewording keeps exactly the numbers of the composed text."""
    from geodelta.perception.describe.grounding import numbers_in

    return sorted(numbers_in(original)) == sorted(numbers_in(reworded))
