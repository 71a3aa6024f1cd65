"""The embedded planner's vocabulary: the phrase table, typo correction and the word-embedding fallback.

`geodelta.agent.intent` reads questions with it. The phrase table joins `intent_lexicon` (core words,
roles, transitions) and `intent_concepts` (the broader concept lexicon); words it does not know are
typo-corrected (difflib, then one swapped pair of letters) or matched by wordllama similarity to its
single-word phrases. wordllama's 16 MB weights and tokenizer ship inside its wheel and are loaded from
the package folder: nothing is fetched at run time.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geodelta.agent import intent_concepts as C
from geodelta.agent import intent_lexicon as L

# Cosine similarity (wordllama l2_supercat, 256-d) above which an unknown word is read as the nearest
# lexicon phrase; 0.5 keeps plural/derived forms ("woodlands" 0.87, "urbanization" 0.84) and rejects
# function words (< 0.35) on the tune split. Typos go through difflib first (ratio >= 0.84).
EMBED_MIN_SIM = 0.5
# Between 0.5 and 0.8 similarity is as often a false friend ("harvested" -> harbor 0.58, "logistics" ->
# logging 0.57, "inland" -> heathland 0.68) as a derived form; below EMBED_SURE_SIM a match must also share
# a stem of EMBED_MIN_PREFIX letters ("loggers" -> logging, "villas" -> village, "farmed" -> farming).
EMBED_SURE_SIM = 0.8
EMBED_MIN_PREFIX = 4
# 0.88: "forrest" -> forest (0.92), "resevoir" -> reservoir (0.94) and "wetlnd" -> wetland (0.92) pass;
# real words one letter from a lexicon word ("hardest" -> harvest 0.857) do not.
TYPO_MIN_RATIO = 0.88


@functools.cache
def load_wordllama():
    """wordllama's bundled model, loaded from the installed package folder (no network, once per process).

    `WordLlama.load(disable_download=True)` alone looks for the tokenizer in the wrong folder; passing the
    package folder as `cache_dir` resolves both the weights and the tokenizer config from the wheel.
    """
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def stem(word: str) -> str:
    """Light plural stemming so "lakes", "marshes", "paddies" hit the lexicon."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def key(words: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(stem(w) for w in words)


@dataclass(frozen=True)
class Entry:
    kind: str  # "class" | "role" | "fire" | "transition" | "oov" | "appear_phrase"
    classes: tuple[str, ...] = ()
    role: str | None = None
    to: tuple[str, ...] = ()
    label: str = ""


@functools.cache
def lexicon() -> dict[tuple[str, ...], Entry]:
    """Stemmed phrase -> entry; role-bearing phrases win over plain class phrases."""
    lex: dict[tuple[str, ...], Entry] = {}
    for classes, text in L.CLASS_PHRASES.items():
        singles, *multi = text.split(",")  # "w1 w2 ..., phrase one, phrase two"
        for p in [[w] for w in singles.split()] + [m.split() for m in multi]:
            lex[key(p)] = Entry("class", tuple(classes))
    for classes, text in [*C.CONCEPT_PHRASES.items(), *C.REGIONAL_PHRASES.items()]:  # never overrides the core
        for p in (t.split() for t in text.split(",")):
            lex.setdefault(key(p), Entry("class", tuple(classes)))
    for s, (classes, role) in L.ROLE_PHRASES.items():
        lex[key(s.split())] = Entry("role", classes, role)
    for s in L.FIRE_PHRASES:
        lex[key(s.split())] = Entry("fire", ("bare_ground",), "to")
    for s, (frm, to) in L.TRANSITION_PHRASES.items():
        lex[key(s.split())] = Entry("transition", frm, "from", to)
    for s, label in L.OUT_OF_VOCABULARY.items():
        lex[key(s.split())] = Entry("oov", ("other",), None, label=label)
    for s in L.APPEAR_PHRASES:
        lex[key(s.split())] = Entry("appear_phrase")
    return lex


@functools.cache
def known_words() -> tuple[str, ...]:
    """Every word the parser knows, sorted (difflib typo correction is then deterministic)."""
    words = {w for k in lexicon() for w in k} | L.APPEAR | L.DISAPPEAR | L.GENERIC_CHANGE | L.STOPWORDS
    words |= L.FORWARD_WORDS | L.REVERSE_WORDS | L.EXPANSION_VERBS | set(L.VERTICAL) | set(L.HORIZONTAL)
    words |= set(L.COMPOUND_SECTORS) | L.CENTRE | L.PART_WORDS | L.OFF_WORLD | L.OFF_TOPIC | C.PLACE_WORDS | C.PEOPLE_AND_WEATHER
    words |= {"xposs"} | C.LOW_MODIFIERS | C.TALL_MODIFIERS | C.ABSENCE | C.APPEAR_VERBS | C.PLACEMENT_WORDS
    words |= {w for p in (*C.EXCLUDE_PHRASES, *C.LOCATIVE_PHRASES, *C.CLAUSE_PHRASES) for w in p.split()}
    return tuple(sorted(words))


@functools.cache
def embedding_table() -> tuple[tuple[tuple[str, ...], ...], np.ndarray]:
    """Single-word lexicon phrases and their unit-norm wordllama embeddings, shape (n, 256) float32."""
    keys = tuple(sorted(k for k, e in lexicon().items() if len(k) == 1 and e.kind in ("class", "role", "fire")))
    emb = load_wordllama().embed([k[0] for k in keys], norm=True)
    return keys, emb


def nearest(word: str) -> tuple[tuple[str, ...] | None, float]:
    keys, emb = embedding_table()
    v = load_wordllama().embed([word], norm=True)[0]
    sims = emb @ v
    i = int(np.argmax(sims))
    return keys[i], float(sims[i])


def accept(word: str, phrase: str, sim: float) -> bool:
    """An embedding match is kept when it is very close, or close and sharing a stem (see EMBED_SURE_SIM)."""
    prefix = len(next((a for a in (word[:n] for n in range(len(word), 0, -1)) if phrase.startswith(a)), ""))
    return sim >= EMBED_SURE_SIM or (sim >= EMBED_MIN_SIM and prefix >= EMBED_MIN_PREFIX)


TOKEN = re.compile(r"[a-z]+|->|,|&|(?<![0-9])[.?!;](?![0-9])")  # sentence ends are kept ("?" or ".")


def tokenise(text: str, matched: dict[str, Any]) -> list[str]:
    """Lower-case word tokens; unknown words of 5+ letters are typo-corrected against the lexicon."""
    out = []
    known = known_set()
    text = re.sub(r"(?<=[a-z])(?:'s|s')(?=[\s,.?!;:]|$)", " xposs ", text.lower().replace("’", "'").replace("'d ", " did "))
    for tok in TOKEN.findall(text):
        if tok.isalpha() and len(tok) >= 5 and tok not in known and stem(tok) not in known:
            close = correct(tok)
            if close:
                matched.setdefault("typos", {})[tok] = close
                tok = close
        out.append("?" if tok == "?" else "." if tok in ".!;" else tok)
    return out


@functools.cache
def known_set() -> frozenset[str]:
    return frozenset(known_words())


@functools.cache
def by_first_letter() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for w in known_words():
        out.setdefault(w[0], []).append(w)
    return {k: tuple(v) for k, v in out.items()}


@functools.lru_cache(maxsize=4096)
def correct(tok: str) -> str | None:
    """The known word an unknown one is a typo of (difflib ratio, then one swapped pair), or None; cached."""
    same_start = by_first_letter().get(tok[0], ())  # typos rarely change the first letter; 15x fewer candidates
    close = difflib.get_close_matches(tok, same_start, n=1, cutoff=TYPO_MIN_RATIO) or \
        difflib.get_close_matches(stem(tok), same_start, n=1, cutoff=TYPO_MIN_RATIO)
    close = close or one_edit(tok) or one_edit(stem(tok))
    if close and tok.startswith(close[0]) and tok[len(close[0]):] in _SUFFIXES:
        return None  # an inflection of a known word ("reclaimed" of "reclaim"), not a typo: its sense may differ
    return close[0] if close else None


_SUFFIXES = frozenset("s es ed d ing er ers ly ment ments".split())


def one_edit(word: str) -> list[str]:
    """A known word that is `word` with two neighbouring letters swapped ("feilds" -> field, "biulding" -> building).

    difflib's ratio misses swaps in short words; substitutions are left to difflib (one substituted letter
    turns real words into lexicon words: "level" -> levee).
    """
    if len(word) < 5:
        return []
    known = known_set()
    swaps = sorted({word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)} & known)
    return swaps[:1]
