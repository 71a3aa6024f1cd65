"""The audit hash chain: canonical JSON, row hashes and the walk that verifies them.

`hash = sha256(prev_hash + canonical JSON of the row)` where the row is every column except `hash`,
NULL columns left out (so a column added by a later migration keeps old rows verifying), keys
sorted, compact separators, ASCII (non-ASCII written as JSON escapes, so any Python string hashes).
Pure functions over dicts; no database here.

The plain chain detects an edit only if the attacker does not recompute every later hash. With a key
(GEODELTA_AUDIT_KEY) each row also stores `mac = HMAC-SHA256(key, hash)`, which cannot be recomputed
without the key. A cut-off tail leaves a valid shorter chain; `expect_head` (a head hash kept
elsewhere) detects it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

from geodelta.memory.models import GENESIS_HASH, VerifyResult

_UNHASHED = ("hash", "mac")  # computed from the rest of the row


def row_mac(key: bytes, row_hash_hex: str) -> str:
    """HMAC-SHA256 of a row's hash under the audit key (hex)."""
    return hmac.new(key, row_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, ASCII only (JSON escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 hex of prev_hash + canonical JSON of the row without `hash` and without NULL columns."""
    body = {k: v for k, v in row.items() if k not in _UNHASHED and v is not None}
    return hashlib.sha256((row["prev_hash"] + canonical_json(body)).encode("ascii")).hexdigest()


def verify_rows(rows: Iterable[Mapping[str, Any]], key: bytes | None = None,
                expect_head: str | None = None) -> VerifyResult:
    """Walk rows in id order; stop at the first row whose id, link, hash or (with `key`) HMAC does not check.

    Checks, in order: ids run 1, 2, 3 ... without gaps (a deleted row), `prev_hash` equals the
    previous row's `hash` (a removed or inserted link), the stored hash equals the recomputed one
    (an edited field), and with `key` the row's HMAC. Rows written before the key was set carry no
    MAC; after the first keyed row every row must carry one, and with a key at least one row must.
    `expect_head`: a head hash kept elsewhere must be a row of the chain (a truncated trail lacks it).
    """
    expected_id, prev, n, keyed, head_seen = 1, GENESIS_HASH, 0, 0, expect_head is None

    def bad(rid: Any, reason: str) -> VerifyResult:
        return VerifyResult(ok=False, n=n, first_bad_id=rid, reason=reason, head_hash=prev if n else None, keyed=keyed)

    for row in rows:
        rid = row["id"]
        if rid != expected_id:
            why = (f"missing id gap: expected id {expected_id}, found {rid} (rows deleted)"
                   if isinstance(rid, int) and rid > expected_id else f"id out of sequence: expected {expected_id}, found {rid}")
            return bad(rid, why)
        if row["prev_hash"] != prev:
            return bad(rid, f"prev_hash break: row {rid} does not link to row {rid - 1}")
        if row["hash"] != row_hash(row):
            return bad(rid, f"hash mismatch: row {rid} was edited")
        if key is not None:
            mac = row.get("mac")
            if mac is None and keyed:
                return bad(rid, f"row {rid} has no HMAC although earlier rows do (MACs stripped, rows rewritten)")
            if mac is not None:
                if not hmac.compare_digest(mac, row_mac(key, row["hash"])):
                    return bad(rid, f"HMAC mismatch: row {rid} was rewritten without the audit key (or the key differs)")
                keyed += 1
        head_seen = head_seen or row["hash"] == expect_head
        prev, expected_id, n = row["hash"], expected_id + 1, n + 1
    if key is not None and n and not keyed:
        return bad(None, "GEODELTA_AUDIT_KEY is set but no row carries an HMAC (written without the key, or MACs stripped)")
    if not head_seen:
        return bad(None, f"expected head {expect_head} is not in the trail: it was truncated or rewritten")
    return VerifyResult(ok=True, n=n, head_hash=prev if n else None, keyed=keyed)
