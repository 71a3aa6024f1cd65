"""Scope passes of the embedded planner: phenomena, negation, exclusion, place and clause words, modifiers.

`geodelta.agent.intent` finds class mentions (lexicon, then embeddings); these passes decide which of
them are the change of interest before from / to roles are given:
- `rewrite_phenomena`: "the shore retreated" names a transition without naming both classes; it is
  rewritten to canonical words the lexicon knows ("sea advance" = water appearing).
- `scope`: "ground without any plants" is bare ground (absence); "vegetation other than crops" narrows
  the mention before; "ignore the roads" drops one; "houses along the road" (place) and "grow back after
  logging" (cause / time) keep only the mention of interest; "short, low-growing plants" narrows
  vegetation to low vegetation.
- `placement_reverse`: "a road cut across the fields", "settlements appeared in the forest": the second
  mention is what was there before.
Mentions are any objects with `start`, `end`, `classes`, `role` (dataclasses; `dataclasses.replace` is used).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from geodelta.agent import intent_concepts as C

VEGETATION = frozenset(("tree", "low_vegetation", "cropland"))
_FILLER = frozenset("the a an any all some of single more its their our my that this those these xposs new old".split())
POSSESSIVE = "xposs"  # the tokeniser's mark for "'s" / "s'" ("the villages' fields": villages only say whose)
_PHENOMENA = tuple((re.compile(p), r) for p, r in C.PHENOMENA)


def rewrite_phenomena(text: str, matched: dict[str, Any]) -> str:
    """Lower-cased text with phenomenon wordings replaced by canonical ones; what fired goes to `matched`."""
    for rx, repl in _PHENOMENA:
        new = rx.sub(repl, text)
        if new != text:
            matched.setdefault("phenomena", []).append(repl.strip().replace("\\1 ", ""))
            text = new
    return text


def _before(tokens: list[str], start: int, skip: frozenset[str] = _FILLER) -> tuple[int, str]:
    """Index just past the last non-filler token before `start`, and the text of the 5 tokens up to it."""
    j = start
    while j > 0 and tokens[j - 1] in skip:
        j -= 1
    return j, " ".join(tokens[max(0, j - 5):j])


def _ends_with(window: str, phrases: tuple[str, ...] | frozenset[str]) -> str | None:
    """The longest phrase the window ends with; trailing filler of a phrase is ignored, since `_before` skipped it
    in the window ("at the edge of the forest": the window ends "at the edge")."""
    for p in sorted(phrases, key=len, reverse=True):
        words = p.split()
        while len(words) > 1 and words[-1] in _FILLER:
            words.pop()
        core = " ".join(words)
        if window == core or window.endswith(" " + core):
            return p
    return None


def _narrow(tokens: list[str], m: Any) -> tuple[str, ...] | None:
    """low_vegetation or tree when modifiers narrow a mixed vegetation mention ("short, low-growing plants")."""
    if not {"tree", "low_vegetation"} <= set(m.classes):
        return None
    mods = set()
    j = m.start
    while j > 0 and tokens[j - 1] in C.LOW_MODIFIERS | C.TALL_MODIFIERS | {",", "and", "very", "mostly"}:
        mods.add(tokens[j - 1])
        j -= 1
    if mods & C.LOW_MODIFIERS and not mods & C.TALL_MODIFIERS:
        return ("low_vegetation",)
    if mods & C.TALL_MODIFIERS and not mods & C.LOW_MODIFIERS:
        return ("tree",)
    return None


def scope(tokens: list[str], mentions: list[Any], matched: dict[str, Any]) -> list[Any]:
    """Keep the mentions that are the change of interest, narrowed or turned to bare ground where the words say so.

    A mention made from absence ("without any plants") gets `state=True`: it is the state after the change.
    """
    kept: list[Any] = []
    notes: dict[str, str] = {}
    for k, m in enumerate(mentions):
        text = " ".join(tokens[m.start:m.end])
        later = any(o.start >= m.end for o in mentions[k + 1:])
        if m.end < len(tokens) and tokens[m.end] == POSSESSIVE and later:
            notes[text] = "owner only (possessive)"
            continue
        last = kept[-1] if kept else None
        if (last is not None and m.role == "to" and text in C.CREATION and set(last.classes) != set(m.classes)
                and last.role is None and set(tokens[last.end:m.start]) <= C.CREATION_GAP
                and (text in ("built", "build", "constructed") or later)):
            kept[-1] = dataclasses.replace(last, role="to")  # "pitches were built (on the fields)": the pitches are new
            notes[text] = f"says '{' '.join(tokens[last.start:last.end])}' is new"
            continue
        j, window = _before(tokens, m.start)
        prev_tok = tokens[j - 1] if j > 0 else ""
        after = tokens[m.end] if m.end < len(tokens) else ""
        excl = _ends_with(window, C.EXCLUDE_PHRASES)
        if prev_tok in C.ABSENCE and not excl and set(tokens[m.end:m.end + 3]) & C.LOSS_AFTER and m.role is None:
            m = dataclasses.replace(m, role="from")  # "no grass left": the grass was lost
        elif prev_tok in C.ABSENCE and not excl:
            if set(m.classes) <= VEGETATION:
                kept.append(dataclasses.replace(m, classes=("bare_ground",), role=None, state=True))
                notes[text] = "absence of vegetation: bare ground"
            else:
                notes[text] = "absent: not a class of interest"
            continue
        if excl or after in C.EXCLUDE_AFTER:
            out = C.EXCLUDED_AS.get(tuple(sorted(m.classes)), m.classes)
            if last is not None and excl and m.start - last.end <= len(excl.split()) + 3 and set(out) < set(last.classes):
                kept[-1] = dataclasses.replace(last, classes=tuple(c for c in last.classes if c not in out))
                notes[text] = f"excluded from the mention before ('{excl}')"
            else:
                notes[text] = f"excluded ('{excl or after}')"
            continue
        loc = _ends_with(window, C.LOCATIVE_PHRASES)
        if loc and m.role is None:  # "what changed around the lake": the lake only says where
            notes[text] = f"place only ('{loc}')"
            continue
        clause = _ends_with(window, C.CLAUSE_PHRASES)
        if clause and kept and not getattr(m, "fire", False):
            notes[text] = f"cause or time only ('{clause}')"
            continue
        narrowed = _narrow(tokens, m)
        if narrowed:
            notes[text] = f"narrowed to {narrowed[0]}"
            m = dataclasses.replace(m, classes=narrowed)
        kept.append(m)
    kept = _compound_heads(tokens, kept, notes)
    if notes:
        matched["scope"] = notes
    return kept


def _compound_heads(tokens: list[str], mentions: list[Any], notes: dict[str, str]) -> list[Any]:
    """"village pond", "woody wetlands": two plain class words side by side are one noun; the last is its head."""
    out: list[Any] = []
    for m in mentions:
        last = out[-1] if out else None
        if (last is not None and last.end == m.start and last.role is None and m.role is None and not last.state
                and not tokens[m.end - 1].endswith(("ed", "ing"))
                and not getattr(last, "fire", False) and not getattr(m, "fire", False) and set(last.classes) != set(m.classes)):
            notes[" ".join(tokens[last.start:last.end])] = f"modifier of '{' '.join(tokens[m.start:m.end])}'"
            out[-1] = m
            continue
        out.append(m)
    return out


def placement_reverse(gap_words: list[str], after: Sequence[str] = ()) -> bool:
    """True for "X appeared in / cut across / was built through Y" and "a road through the woods appeared":
    Y is what X replaced (`after`: the few words after Y)."""
    if not C.PLACEMENT_WORDS & set(gap_words):
        return False
    return bool(C.APPEAR_VERBS & set(gap_words)) or bool((C.APPEAR_VERBS - {"cut"}) & set(after))
