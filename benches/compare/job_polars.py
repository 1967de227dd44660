"""Sync a segment's hashed emails to a Criteo audience with Polars.

The segment runs through Polars' SQL context on a lazy Parquet scan. Normalization runs
as native expressions on the streaming engine, and dedup, the diff (anti joins) and the
request bodies (struct.json_encode) run in memory on the collected segment emails.
Polars has no built-in SHA-256, so hashing is one of:

- `--sha256 plugin` (default): the polars-hash plugin (`chash.sha2_256`), compiled Rust.
- `--sha256 udf`: a Python UDF calling hashlib over each batch.

    CRITEO_CLIENT_ID=sandbox-client CRITEO_CLIENT_SECRET=sandbox-secret \\
    python benches/compare/job_polars.py --query queries/bench_segment.sql \\
        --source bench-data/extract-1000000-seed1/day1 --state /tmp/state-polars --api-url http://127.0.0.1:8080
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

# Polars sizes its thread pool when it is imported, so --threads is applied before that.
if "--threads" in sys.argv[:-1]:
    os.environ["POLARS_MAX_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import polars as pl  # noqa: E402
import polars_hash  # noqa: E402

from job_common import (  # noqa: E402
    EMAIL_PATTERN,
    MAX_BATCH_IDENTIFIERS,
    SHA256_HEX_PATTERN,
    WHITESPACE,
    WHITESPACE_CLASS,
    PhaseTimer,
    Report,
    client_from_env,
    commit_snapshot,
    deliver,
    parse_args,
    read_segment_sql,
    snapshot_path,
    source_glob,
)


def sha256_udf(emails: pl.Series) -> pl.Series:
    """Hash each string of a batch with hashlib (the Python UDF variant)."""
    return pl.Series([hashlib.sha256(e.encode()).hexdigest() for e in emails], dtype=pl.String)


def sha256_expression(method: str) -> pl.Expr:
    if method == "plugin":
        return polars_hash.col("email").chash.sha2_256()
    return pl.col("email").map_batches(sha256_udf, return_dtype=pl.String, is_elementwise=True)


def candidates(query: Path, source: Path) -> pl.LazyFrame:
    """Return each segment row's normalized email and the reason it is rejected (null if valid)."""
    customers = pl.scan_parquet(source_glob(source))
    segment = pl.SQLContext(customers=customers).execute(read_segment_sql(query), eager=False)
    email = pl.col("email").str.strip_chars(WHITESPACE).str.normalize("NFC").str.to_lowercase()
    rejected = (
        pl.when(pl.col("email").is_null())
        .then(pl.lit("null"))
        .when(pl.col("email") == "")
        .then(pl.lit("empty"))
        .when(pl.col("email").str.contains(SHA256_HEX_PATTERN))
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("email").str.contains(WHITESPACE_CLASS))
        .then(pl.lit("inner_whitespace"))
        .when(~pl.col("email").str.contains(EMAIL_PATTERN))
        .then(pl.lit("malformed"))
    )
    return segment.select(email.alias("email")).with_columns(rejected.alias("rejected"))


def current_identifiers(rows: pl.LazyFrame, method: str) -> pl.LazyFrame:
    """Return the distinct identifiers: 64-hex values as they are, other valid emails hashed."""
    valid = rows.filter(pl.col("rejected").is_null())
    is_hex = pl.col("email").str.contains(SHA256_HEX_PATTERN)
    hashed = valid.filter(~is_hex).select(sha256_expression(method).alias("identifier"))
    already_hashed = valid.filter(is_hex).select(pl.col("email").alias("identifier"))
    return pl.concat([hashed, already_hashed]).unique()


def previous_identifiers(state: Path) -> pl.LazyFrame:
    path = snapshot_path(state)
    if path.exists():
        return pl.scan_parquet(path)
    return pl.LazyFrame(schema={"identifier": pl.String})


def request_bodies(identifiers: pl.DataFrame, operation: str):
    """Yield (identifier count, body) for each request of at most MAX_BATCH_IDENTIFIERS sorted identifiers."""
    attributes = pl.struct(
        operation=pl.lit(operation),
        identifierType=pl.lit("email"),
        identifiers=pl.col("identifier"),
    )
    bodies = (
        identifiers.lazy()
        .with_row_index("position")
        .group_by((pl.col("position") // MAX_BATCH_IDENTIFIERS).alias("batch"), maintain_order=True)
        .agg(pl.col("identifier"))
        .select(
            pl.col("identifier").list.len().alias("identifier_count"),
            pl.struct(data=pl.struct(type=pl.lit("ContactlistAmendment"), attributes=attributes)).struct.json_encode().alias("body"),
        )
        .collect()
    )
    for count, body in bodies.iter_rows():
        yield count, body.encode()


def add_polars_arguments(parser) -> None:
    parser.add_argument(
        "--sha256",
        choices=["plugin", "udf"],
        default="plugin",
        help="hash with the polars-hash plugin or with a hashlib Python UDF",
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_polars_arguments)
    report = Report(tool="polars" if args.sha256 == "plugin" else "polars-udf")
    timer = PhaseTimer(report)

    # The segment's emails are collected once because both outputs need them, and
    # pl.collect_all over the lazy frame scanned the source twice (Polars 2.1.0).
    rows = candidates(args.query, args.source).collect(engine="streaming")
    current = current_identifiers(rows.lazy(), args.sha256).collect().sort("identifier")
    rejected = rows.group_by("rejected").len()

    previous = previous_identifiers(args.state).collect()
    adds = current.join(previous, on="identifier", how="anti").sort("identifier")
    removes = previous.join(current, on="identifier", how="anti").sort("identifier")

    report.members = int(rejected["len"].sum())
    report.identifiers = current.height
    report.rejected = {reason: count for reason, count in rejected.sort("rejected").iter_rows() if reason is not None}
    report.planned_added = adds.height
    report.planned_removed = removes.height
    timer.lap("plan")

    if args.write_plan:
        args.write_plan.mkdir(parents=True, exist_ok=True)
        for name, frame in (("adds", adds), ("removes", removes)):
            frame.select(pl.lit("email").alias("identifier_type"), "identifier").write_parquet(args.write_plan / f"{name}.parquet")
        timer.lap("write_plan")
    if args.dry_run:
        report.print()
        return

    client = client_from_env(args.api_url)
    deliver(client, args.audience_id, request_bodies(adds, "add"), report, "add")
    deliver(client, args.audience_id, request_bodies(removes, "remove"), report, "remove")
    timer.lap("deliver")

    commit_snapshot(args.state, current.write_parquet)
    timer.lap("commit")
    report.print()


if __name__ == "__main__":
    main()
