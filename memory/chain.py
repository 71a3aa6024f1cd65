"""The audit hash chain: canonical JSON, row hashes and the walk that verifies them.

`hash = sha256(prev_hash + canonical JSON of the row)` where the row is every column except `hash`,
NULL columns left out (so a column added by a later migration keeps old rows verifying), keys
sorted, compact separators, ASCII (non-ASCII written as JSON escapes, so any Python string hashes).
Pure functions over dicts; no database here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from geodelta.memory.models import GENESIS_HASH, VerifyResult


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, ASCII only (JSON escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 hex of prev_hash + canonical JSON of the row without `hash` and without NULL columns."""
    body = {k: v for k, v in row.items() if k != "hash" and v is not None}
    return hashlib.sha256((row["prev_hash"] + canonical_json(body)).encode("ascii")).hexdigest()


def verify_rows(rows: Iterable[Mapping[str, Any]]) -> VerifyResult:
    """Walk rows in id order; stop at the first row whose id, link or hash does not check.

    Checks, in order: ids run 1, 2, 3 ... without gaps (a deleted row), `prev_hash` equals the
    previous row's `hash` (a removed or inserted link), the stored hash equals the recomputed one
    (an edited field). Truncating the tail leaves a valid shorter chain: compare `head_hash` with
    one kept elsewhere to detect that.
    """
    expected_id, prev, n = 1, GENESIS_HASH, 0
    for row in rows:
        rid = row["id"]
        if rid != expected_id:
            why = (f"missing id gap: expected id {expected_id}, found {rid} (rows deleted)"
                   if isinstance(rid, int) and rid > expected_id else f"id out of sequence: expected {expected_id}, found {rid}")
            return VerifyResult(ok=False, n=n, first_bad_id=rid, reason=why, head_hash=prev)
        if row["prev_hash"] != prev:
            return VerifyResult(ok=False, n=n, first_bad_id=rid, reason=f"prev_hash break: row {rid} does not link to row {rid - 1}", head_hash=prev)
        if row["hash"] != row_hash(row):
            return VerifyResult(ok=False, n=n, first_bad_id=rid, reason=f"hash mismatch: row {rid} was edited", head_hash=prev)
        prev, expected_id, n = row["hash"], expected_id + 1, n + 1
    return VerifyResult(ok=True, n=n, head_hash=prev if n else None)
