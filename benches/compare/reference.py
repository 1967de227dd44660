"""Compute the expected email plan of a segment with plain, per-row Python.

This is the slow, obviously-correct version of the job that the benchmark tools run.
It evaluates the segment SQL with DuckDB (plain SQL only), normalizes and hashes every
email with the Python standard library one row at a time, and diffs the two days'
identifier sets. Use it on small extracts to check the other implementations:

    python benches/compare/reference.py --query queries/vip_customers.sql \\
        --previous examples/data/day1 --current examples/data/day2 --write-plan /tmp/plan
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import unicodedata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

BOM = "\ufeff"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_space(char: str) -> bool:
    """Return whether `char` has the Unicode White_Space property or is a BOM."""
    # str.isspace also accepts the ASCII separators U+001C..U+001F, which are not
    # White_Space, so they are excluded to match Rust's char::is_whitespace.
    return char == BOM or (char.isspace() and not "\x1c" <= char <= "\x1f")


def normalize_email(raw: str | None) -> tuple[str | None, str | None]:
    """Normalize one raw email and return (identifier, None) or (None, rejection reason).

    The identifier is the lower-case hex SHA-256 of the trimmed, NFC, lower-cased
    address, or the value itself when it already is 64 hex digits.
    """
    if raw is None:
        return None, "null"
    start, end = 0, len(raw)
    while start < end and is_space(raw[start]):
        start += 1
    while end > start and is_space(raw[end - 1]):
        end -= 1
    value = unicodedata.normalize("NFC", raw[start:end]).lower()

    if not value:
        return None, "empty"
    if SHA256_HEX.fullmatch(value):
        return value, None
    if any(is_space(c) for c in value):
        return None, "inner_whitespace"
    local, at, domain = value.partition("@")
    if not at or "@" in domain or not local or "." not in domain:
        return None, "malformed"
    return hashlib.sha256(value.encode("utf-8")).hexdigest(), None


def read_segment(query_path: Path, source: Path) -> pa.Table:
    """Run the segment SQL with the source folder or file registered as `customers`."""
    pattern = str(source / "*.parquet") if source.is_dir() else str(source)
    connection = duckdb.connect()
    connection.execute(f"CREATE VIEW customers AS SELECT * FROM read_parquet('{pattern}')")
    return connection.sql(query_path.read_text()).to_arrow_table()


def email_identifiers(segment: pa.Table) -> tuple[set[str], collections.Counter]:
    identifiers: set[str] = set()
    rejected: collections.Counter = collections.Counter()
    for raw in segment.column("email").to_pylist():
        identifier, reason = normalize_email(raw)
        if identifier is None:
            rejected[reason] += 1
        else:
            identifiers.add(identifier)
    return identifiers, rejected


def write_plan(adds: set[str], removes: set[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, identifiers in (("adds", adds), ("removes", removes)):
        values = sorted(identifiers)
        table = pa.table({"identifier_type": ["email"] * len(values), "identifier": values})
        pq.write_table(table, out / f"{name}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query", type=Path, required=True, help="segment SQL reading table `customers`")
    parser.add_argument("--previous", type=Path, help="previous day's extract (file or folder); omit for a first run")
    parser.add_argument("--current", type=Path, required=True, help="current day's extract (file or folder)")
    parser.add_argument("--write-plan", type=Path, help="folder for adds.parquet and removes.parquet")
    args = parser.parse_args()

    previous: set[str] = set()
    if args.previous:
        previous, _ = email_identifiers(read_segment(args.query, args.previous))
    segment = read_segment(args.query, args.current)
    current, rejected = email_identifiers(segment)
    adds, removes = current - previous, previous - current

    if args.write_plan:
        write_plan(adds, removes, args.write_plan)
    summary = {
        "members": segment.num_rows,
        "identifiers": len(current),
        "rejected": dict(sorted(rejected.items())),
        "adds": len(adds),
        "removes": len(removes),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
