"""Question -> `ChangeQuery` without an LLM: a lexicon plus wordllama word-embedding similarity.

`parse_question(text, previous)` reads a vague question ("where did farmland get built over?") into
the explicit change-of-interest (ReasonCD's first stage) and says why (`matched`, `rationale`), with
a confidence per field; a field it is unsure of is asked back (`clarify`), the reading offered as the
guess. Steps: area and size (intent_areas), phenomena rewritten to canonical words and class mentions
found (intent_roles, intent_vocab), scope (negation, exclusion, place and clause words), then from / to
roles from connectors and cues. Deterministic: the same text always gives the same result. Offline:
wordllama's weights and tokenizer ship inside its wheel (intent_vocab).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from geodelta.agent import intent_concepts as C
from geodelta.agent import intent_lexicon as L
from geodelta.agent import intent_vocab as V
from geodelta.agent.intent_areas import AreaReading, read_area, read_min_area
from geodelta.agent.intent_roles import placement_reverse, rewrite_phenomena, scope
from geodelta.agent.intent_vocab import load_wordllama
from geodelta.contracts import VOCABULARY, ChangeQuery

__all__ = ["ASK_BELOW", "IntentResult", "load_wordllama", "parse_question", "warm_up"]

# A field whose confidence is below this is asked back (the reading is offered as the guess).
ASK_BELOW = 0.55


@dataclass(frozen=True)
class IntentResult:
    """The reading of one question: a query (None when it cannot be resolved), or a question back."""

    query: ChangeQuery | None
    clarify: str | None = None
    confidence: float = 0.0
    matched: dict[str, Any] = field(default_factory=dict)
    field_confidence: dict[str, float] = field(default_factory=dict)  # "from", "to", "direction" -> 0..1


def warm_up() -> None:
    """Load wordllama and embed the lexicon now (about a second), so the first question is as fast as the rest."""
    V.embedding_table()
    V.known_set()
    V.by_first_letter()
    parse_question("where did farmland get built over in the north, at least 1 ha?")  # first-call costs (regexes, pydantic)


@dataclass
class _Mention:
    start: int
    end: int
    classes: tuple[str, ...]
    role: str | None
    text: str
    fire: bool = False
    fixed: bool = False  # the role came from the lexicon ("deforestation"), not from the sentence
    state: bool = False  # made from absence ("without any plants"): the state after the change
    sim: float = 1.0  # 1 for a lexicon phrase; the cosine similarity for an embedding match


def _mentions(tokens: list[str], matched: dict[str, Any]) -> tuple[list[_Mention], list[str], set[int]]:
    """Longest-first phrase matching, then embedding similarity for leftover content words."""
    lex = V.lexicon()
    stems = [V.stem(t) for t in tokens]
    mentions: list[_Mention] = []
    oov: list[str] = []
    used: set[int] = set()
    i = 0
    while i < len(tokens):
        for n in (4, 3, 2, 1):
            e = lex.get(tuple(stems[i:i + n])) if i + n <= len(tokens) else None
            if e is None:
                continue
            text = " ".join(tokens[i:i + n])
            used.update(range(i, i + n))
            if e.kind == "oov":
                oov.append(e.label)
            elif e.kind == "transition":
                mentions.append(_Mention(i, i + n, e.classes, "from", text))
                mentions.append(_Mention(i, i + n, e.to, "to", text))
            elif e.kind != "appear_phrase":
                mentions.append(_Mention(i, i + n, e.classes, e.role, text, fire=e.kind == "fire"))
            if e.kind != "appear_phrase":
                matched.setdefault("classes", {})[text] = list(e.to or e.classes) if e.kind != "transition" else {"from": list(e.classes), "to": list(e.to)}
            i += n
            break
        else:
            tok = tokens[i]
            if tok.isalpha() and len(tok) >= 4 and tok not in V.known_set() and V.stem(tok) not in V.known_set():
                key, sim = V.nearest(tok)
                if key is not None and V.accept(tok, key[0], sim):
                    e = lex[key]
                    mentions.append(_Mention(i, i + 1, e.classes, e.role, tok, fire=e.kind == "fire", sim=sim))
                    matched.setdefault("embedding", {})[tok] = {"nearest": key[0], "similarity": round(sim, 3)}
                    matched.setdefault("classes", {})[tok] = list(e.classes)
                    used.add(i)
            i += 1
    return mentions, oov, used


def _merge(mentions: list[_Mention], tokens: list[str]) -> list[_Mention]:
    """Join neighbours naming the same classes, or joined by and/or/commas, when their roles agree."""
    groups: list[_Mention] = []
    for m in mentions:
        if groups:
            g = groups[-1]
            gap = tokens[g.end:m.start]
            same = set(g.classes) == set(m.classes)
            conj = (not gap and same) or (gap and set(gap) <= L.CONJUNCTIONS and set(gap) & {"and", "or", ",", "&", "plus", "nor"})
            if (same or conj) and (g.role is None or m.role is None or g.role == m.role) and not (g.start == m.start):
                classes = tuple(c for c in VOCABULARY if c in set(g.classes) | set(m.classes))
                groups[-1] = _Mention(g.start, m.end, classes, g.role or m.role, f"{g.text} {m.text}", g.fire or m.fire,
                                      state=g.state or m.state, sim=min(g.sim, m.sim))
                continue
        groups.append(m)
    return groups


def _connector(tokens: list[str], a: _Mention, b: _Mention) -> str | None:
    """'forward' (a before, b after), 'reverse' (b before, a after) or None, from the words between."""
    gap = " ".join(tokens[a.end:b.start])
    words = gap.split()
    if any(p in gap for p in C.PASSIVE_PHRASES):
        return "forward"
    if any(w in L.REVERSE_WORDS and "by" in words[i + 1:i + 3] for i, w in enumerate(words)):
        return "forward"  # passive voice: "X was wiped out by Y", "X got swallowed up by Y"
    if any(p in gap for p in L.REVERSE_PHRASES):
        return "reverse"
    if any(p in gap for p in L.FORWARD_PHRASES):
        return "forward"
    if placement_reverse(words, tokens[b.end:b.end + 3]):
        return "reverse"
    if {"into", "onto", "on", "over", "upon"} & set(words) and L.EXPANSION_VERBS & set(tokens[: b.start]):
        return "reverse"
    if L.REVERSE_WORDS & set(words):
        return "reverse"
    if L.FORWARD_WORDS & set(words) or "->" in words:
        return "forward"
    if L.REVERSE_PREPOSITIONS & set(words):
        return "reverse"
    return None


def _assign_roles(groups: list[_Mention], tokens: list[str], cues: dict[str, int]) -> dict[str, float]:
    """Give every group a role ('from' before / 'to' after) from connectors, fixed roles and cues.

    Returns how sure the roles ("roles": which mention is before / after) and the direction are: 1 when
    words decided them, lower when only word order (0.6) or the absence of any cue (0.5) did.
    """
    conf, dir_conf = 1.0, 1.0
    for a, b in zip(groups, groups[1:]):
        if a.role and b.role:
            continue
        conn = _connector(tokens, a, b)
        if conn is None and a.role is None and b.role is None and not b.state:
            conf = min(conf, 0.6)
        if conn == "forward" or (conn is None and a.role is None and b.role is None):
            a.role, b.role = a.role or "from", b.role or "to"
            if a.role == b.role:  # a fixed role wins; the other side takes the opposite
                (a if b.role and a.role == b.role and a.role != "from" else b).role = "from" if a.role == "to" else "to"
        elif conn == "reverse":
            a.role, b.role = a.role or "to", b.role or "from"
        else:
            fixed = a.role or b.role
            other = "from" if fixed == "to" else "to"
            a.role, b.role = a.role or other, b.role or other
    if len(groups) == 1 and groups[0].role is None:
        g = groups[0]
        before, after = set(tokens[max(0, g.start - 3):g.start]), set(tokens[g.end:g.end + 3])
        near = " ".join(tokens[max(0, g.start - 5):g.end + 4])
        tail = tokens[g.end:g.end + 4]
        verb_at = next((i for i, t in enumerate(tail) if t in L.REVERSE_WORDS), None)
        if verb_at is not None and verb_at + 1 < len(tail) and tail[verb_at + 1] not in ("by", "with", ".", "?", ",") \
                and not L.REVERSE_WORDS & before:
            g.role = "to"  # "where did water replace land": the mention is the new thing
        elif L.REVERSE_WORDS & (before | after) or any(p in near for p in L.REVERSE_PHRASES):
            g.role = "from"  # "what replaced the orchards", "where the lake used to be"
        elif g.state or cues["appear"] > cues["disappear"]:
            g.role = "to"
        elif cues["disappear"]:
            g.role = "from"
        elif L.FORWARD_WORDS & before and not L.FORWARD_WORDS & after:  # "what became forest"
            g.role = "to"
        else:  # "what did the farmland become", "how did the forest change"
            g.role = "from"
            if not (cues["generic"] or L.FORWARD_WORDS & after):
                dir_conf = 0.5
    return {"roles": conf, "direction": min(conf, dir_conf)}


def _cues(tokens: list[str], used: set[int]) -> dict[str, int]:
    text = " ".join(tokens)
    appear = sum(t in L.APPEAR or (t in L.GROWTH_COMPARATIVES and nxt != "than")
                 for i, (t, nxt) in enumerate(zip(tokens, [*tokens[1:], ""])) if i not in used)
    appear += sum(p in text for p in L.APPEAR_PHRASES)
    disappear = sum(t in L.DISAPPEAR for i, t in enumerate(tokens) if i not in used)
    if any(p in text for p in L.APPEAR_PHRASES):
        disappear -= sum(t in ("go", "went", "gone") for t in tokens)
    generic = sum(t in L.GENERIC_CHANGE for t in tokens)
    return {"appear": appear, "disappear": max(disappear, 0), "generic": generic}


def _report(text: str) -> list[str]:
    found = [item for item, cues in L.REPORT_CUES.items() if any(re.search(rf"\b{c}", text) for c in cues)]
    return found or ["where", "how_much", "count"]


def _classes(groups: list[_Mention], role: str) -> list[str]:
    chosen = {c for g in groups if g.role == role for c in g.classes}
    return [c for c in VOCABULARY if c in chosen]


def _label(classes: Sequence[str]) -> str:
    return " or ".join(c.replace("_", " ") for c in classes) if classes else "any class"


def _rationale(q: ChangeQuery, area: AreaReading) -> str:
    what = {"appear": f"new {_label(q.to_classes)} (from {_label(q.from_classes)})",
            "disappear": f"{_label(q.from_classes)} that disappeared (to {_label(q.to_classes)})",
            "convert": f"{_label(q.from_classes)} converted to {_label(q.to_classes)}",
            "any": f"any change from {_label(q.from_classes)} to {_label(q.to_classes)}"}[q.direction]
    size = f", regions of at least {q.min_area_m2:g} m²" if q.min_area_m2 else ""
    return f"Read as {what}, {area.describe()}{size}."


def parse_question(text: str, previous: ChangeQuery | None = None) -> IntentResult:
    """Read a question into a `ChangeQuery`; with `previous`, an elliptic follow-up inherits its fields.

    Returns `clarify` (a question to ask back) when the area does not exist, a class is outside the
    vocabulary, or nothing in the text is about land change.
    """
    matched: dict[str, Any] = {}
    raw = " ".join(text.split())
    area, rest = read_area(raw.lower())
    min_area, rest = read_min_area(rest)
    if area.note:
        matched["area"] = area.note
    if min_area is not None:
        matched["min_area"] = min_area[1]
    tokens = V.tokenise(rewrite_phenomena(_split_mixes(rest), matched), matched)
    if any(p in " ".join(tokens) for p in L.STABLE_PHRASES):
        return IntentResult(None, "I find changes between the two images, not what stayed the same. Which change should I "
                            "look for (e.g. 'where was forest lost?')? Everything outside the changes I find stayed the same.",
                            0.1, matched)
    if L.OFF_TOPIC & set(tokens):
        return IntentResult(None, "I only answer questions about how the land changed between two images, e.g. "
                            "'where did farmland get built over?'. What change should I look for?", 0.1, matched)
    mentions, oov, used = _mentions(tokens, matched)
    mentions = _question_sentence(tokens, scope(tokens, mentions, matched), matched)
    cues = _cues(tokens, used)
    groups = _merge(mentions, tokens)
    for g in groups:
        g.fixed = g.role is not None
    role_conf = _assign_roles(groups, tokens, cues)
    frm, to = _classes(groups, "from"), _classes(groups, "to")
    if any(g.fire for g in groups) and not frm:
        frm = list(L.FIRE_FROM)
    has_content = bool(groups) or cues["appear"] or cues["disappear"]
    if frm and to:
        direction = "convert"
    elif to:
        direction = "appear"
    elif frm:
        named_loss = (cues["disappear"] or any(g.fixed for g in groups) or not cues["generic"]) and role_conf["direction"] >= ASK_BELOW
        direction = "disappear" if named_loss else "any"
    else:
        direction = "appear" if cues["appear"] > cues["disappear"] else "disappear" if cues["disappear"] else "any"
    inherited = previous is not None and not has_content
    if inherited and previous is not None:  # inherited implies previous; said again for the type checker
        frm, to, direction = list(previous.from_classes), list(previous.to_classes), previous.direction
        matched["inherited"] = ["from_classes", "to_classes", "direction"]
    report = _report(" ".join(tokens))
    if inherited and previous is not None and not any(re.search(rf"\b{c}", " ".join(tokens)) for cues_ in L.REPORT_CUES.values() for c in cues_):
        report = list(previous.report)
    area_model = area.area
    if area_model is None and previous is not None and (inherited or _is_follow_up(tokens)):
        area_model = previous.area.model_dump(mode="json")
    min_m2 = min_area[0] if min_area is not None else (previous.min_area_m2 if previous is not None and (inherited or _is_follow_up(tokens)) else 0.0)

    if area.impossible:
        return IntentResult(None, area.impossible, 0.1, matched)
    if oov:
        what = sorted(set(oov))[0]
        q = ChangeQuery(from_classes=frm or ["other"], to_classes=to, direction="convert" if to else "disappear",
                        area=area_model or {"kind": "scene"}, min_area_m2=min_m2, report=report,
                        rationale=f"{what.capitalize()} is not a land-cover class here; the closest is 'other'.")
        ask = (f"I cannot map {what}: my classes are {', '.join(c.replace('_', ' ') for c in VOCABULARY)}. "
               f"Shall I look for changes of the class 'other' (or water and bare ground appearing) instead?")
        matched["out_of_vocabulary"] = sorted(set(oov))
        return IntentResult(q, ask, 0.3, matched)
    if not has_content and not cues["generic"] and not inherited and area.area is None and min_area is None:
        return IntentResult(None, "I answer questions about how land cover changed between two images, e.g. "
                            "'where did farmland get built over?' or 'did the lake shrink?'. What change should I look for?",
                            0.1, matched)
    q = ChangeQuery(from_classes=frm, to_classes=to, direction=direction, area=area_model or {"kind": "scene"},
                    min_area_m2=min_m2, report=report)
    q = q.model_copy(update={"rationale": _rationale(q, area if area.area is not None or area_model is None else AreaReading(area_model))})
    matched["roles"] = {g.text: g.role for g in groups}
    fields = _field_confidence(groups, role_conf, inherited)
    matched["field_confidence"] = fields
    confidence = 0.9 if groups else (0.8 if inherited else 0.6)
    confidence -= 0.05 * len(matched.get("typos", {})) + 0.1 * len(matched.get("embedding", {})) + (0.1 if area.note else 0)
    confidence = round(max(min(confidence, *fields.values()), 0.2), 2)
    unsure = sorted(f for f, c in fields.items() if c < ASK_BELOW)
    if unsure:
        ask = (f"I am not sure of the {' and '.join(unsure)} of this question. {q.rationale} Is that what you mean? "
               "Answer yes, or say what changed into what (e.g. 'forest to cropland').")
        return IntentResult(q, ask, confidence, matched, fields)
    return IntentResult(q, None, confidence, matched, fields)


def _field_confidence(groups: list[_Mention], role_conf: dict[str, float], inherited: bool) -> dict[str, float]:
    """Confidence per field: the weakest class match on that side, and how surely the roles were given."""
    if inherited:
        return {"from": 1.0, "to": 1.0, "direction": 1.0}
    side = {r: min([g.sim for g in groups if g.role == r] or [1.0]) for r in ("from", "to")}
    return {"from": round(min(side["from"], role_conf["roles"]), 2), "to": round(min(side["to"], role_conf["roles"]), 2),
            "direction": round(role_conf["direction"], 2)}


def _question_sentence(tokens: list[str], mentions: list[_Mention], matched: dict[str, Any]) -> list[_Mention]:
    """"I farm here. Which fields flooded?": with several sentences, only the question's mentions count,
    unless the question points back with a pronoun ("We manage the reservoir. Has it shrunk?")."""
    ends = [i for i, t in enumerate(tokens) if t in (".", "?")]
    if not mentions or not any(e < len(tokens) - 1 for e in ends):
        return mentions
    bounds = [-1, *ends, len(tokens)]
    spans = [(a + 1, b) for a, b in zip(bounds, bounds[1:]) if b > a + 1]
    question = next((sp for sp in reversed(spans) if sp[1] < len(tokens) and tokens[sp[1]] == "?"), spans[-1])
    inside = [m for m in mentions if question[0] <= m.start < question[1]]
    pronoun = {"it", "they", "them", "its", "their", "this", "that", "these", "those"} & set(tokens[question[0]:question[1]])
    if inside and len(inside) < len(mentions) and not pronoun:
        matched["context_only"] = [m.text for m in mentions if m not in inside]
        return inside
    return mentions


def _split_mixes(text: str) -> str:
    """"woodland-shrub", "tree-grass": two class words joined by a hyphen name a mix of both ("and")."""
    def mix(m: re.Match[str]) -> str:
        a, b = (V.lexicon().get(V.key([w])) for w in m.groups())
        both = a is not None and b is not None and a.kind == b.kind == "class" and a.classes != b.classes
        return f"{m.group(1)} and {m.group(2)}" if both else m.group(0)

    return re.sub(r"\b([a-z]+)-([a-z]+)\b", mix, text)


def _is_follow_up(tokens: list[str]) -> bool:
    """Elliptic follow-ups ("and in the north?", "what about ...", "of that") keep the previous scope."""
    text = " ".join(tokens)
    return bool(tokens) and (tokens[0] in ("and", "also", "only", "just", "now") or any(
        p in text for p in ("what about", "how about", "of that", "of those", "of them", "the ones", "same")))
