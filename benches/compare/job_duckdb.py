"""Sync a segment's hashed emails to a Criteo audience with DuckDB.

The whole data path is DuckDB SQL with built-in functions (regexp_replace,
nfc_normalize, lower, regexp_full_match, sha256, EXCEPT, json_object), so no Python
UDF is involved. Python only sends the request bodies that DuckDB builds.

    CRITEO_CLIENT_ID=sandbox-client CRITEO_CLIENT_SECRET=sandbox-secret \\
    python benches/compare/job_duckdb.py --query queries/bench_segment.sql \\
        --source bench-data/extract-1000000-seed1/day1 --state /tmp/state-duckdb --api-url http://127.0.0.1:8080
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from job_common import (
    EMAIL_PATTERN,
    MAX_BATCH_IDENTIFIERS,
    SHA256_HEX_PATTERN,
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

# Each segment row's email, normalized, with its identifier or the reason it was rejected.
# Trimming uses an anchored regexp_replace because trim(email, characters) took five times
# as long on the 10 M-row benchmark extract (DuckDB 2.0.1).
CANDIDATES_SQL = """
CREATE TEMP TABLE candidates AS
WITH segment AS ({segment}),
normalized AS (
    SELECT lower(nfc_normalize(regexp_replace(email, getvariable('surrounding_whitespace'), '', 'g'))) AS email
    FROM segment
),
classified AS (
    SELECT email, regexp_full_match(email, getvariable('sha256_hex')) AS is_hex FROM normalized
)
SELECT
    CASE
        WHEN email IS NULL THEN 'null'
        WHEN email = '' THEN 'empty'
        WHEN is_hex THEN NULL
        WHEN regexp_matches(email, getvariable('whitespace_class')) THEN 'inner_whitespace'
        WHEN NOT regexp_full_match(email, getvariable('email_pattern')) THEN 'malformed'
    END AS rejected,
    CASE
        WHEN rejected IS NOT NULL THEN NULL
        WHEN is_hex THEN email
        ELSE sha256(email)
    END AS identifier
FROM classified
"""

# JSON bodies of at most `batch_size` sorted identifiers each, in identifier order.
BODIES_SQL = """
SELECT count(*) AS identifier_count, json_object('data', json_object(
    'type', 'ContactlistAmendment',
    'attributes', json_object(
        'operation', $operation,
        'identifierType', 'email',
        'identifiers', list(identifier ORDER BY identifier)
    )
))::VARCHAR AS body
FROM (SELECT identifier, (row_number() OVER (ORDER BY identifier) - 1) // $batch_size AS batch FROM {table})
GROUP BY batch
ORDER BY batch
"""


def connect(threads: int | None) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    if threads:
        connection.execute(f"SET threads = {threads}")
    surrounding = f"^{WHITESPACE_CLASS}+|{WHITESPACE_CLASS}+$"
    connection.execute("SET VARIABLE surrounding_whitespace = ?", [surrounding])
    connection.execute("SET VARIABLE whitespace_class = ?", [WHITESPACE_CLASS])
    connection.execute("SET VARIABLE sha256_hex = ?", [SHA256_HEX_PATTERN.strip("^$")])
    connection.execute("SET VARIABLE email_pattern = ?", [EMAIL_PATTERN.strip("^$")])
    return connection


def build_plan(connection: duckdb.DuckDBPyConnection, query: Path, source: Path, state: Path, report: Report) -> None:
    """Create the temp tables current, adds and removes, and fill the report's counts."""
    connection.execute(f"CREATE VIEW customers AS SELECT * FROM read_parquet('{source_glob(source)}')")
    connection.execute(CANDIDATES_SQL.format(segment=read_segment_sql(query)))
    connection.execute("CREATE TEMP TABLE current AS SELECT DISTINCT identifier FROM candidates WHERE identifier IS NOT NULL")

    previous = snapshot_path(state)
    if previous.exists():
        connection.execute(f"CREATE VIEW previous AS SELECT identifier FROM read_parquet('{previous}')")
    else:
        connection.execute("CREATE VIEW previous AS SELECT NULL::VARCHAR AS identifier WHERE false")
    connection.execute("CREATE TEMP TABLE adds AS SELECT identifier FROM current EXCEPT SELECT identifier FROM previous")
    connection.execute("CREATE TEMP TABLE removes AS SELECT identifier FROM previous EXCEPT SELECT identifier FROM current")

    report.members = connection.execute("SELECT count(*) FROM candidates").fetchone()[0]
    report.identifiers = connection.execute("SELECT count(*) FROM current").fetchone()[0]
    rows = connection.execute("SELECT rejected, count(*) FROM candidates WHERE rejected IS NOT NULL GROUP BY ALL ORDER BY 1")
    report.rejected = dict(rows.fetchall())
    report.planned_added = connection.execute("SELECT count(*) FROM adds").fetchone()[0]
    report.planned_removed = connection.execute("SELECT count(*) FROM removes").fetchone()[0]


def write_plan(connection: duckdb.DuckDBPyConnection, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for table in ("adds", "removes"):
        connection.execute(
            f"COPY (SELECT 'email' AS identifier_type, identifier FROM {table} ORDER BY identifier) "
            f"TO '{out / table}.parquet' (FORMAT parquet)"
        )


def request_bodies(connection: duckdb.DuckDBPyConnection, table: str, operation: str):
    """Yield (identifier count, body) for each request, fetching one body at a time."""
    result = connection.execute(BODIES_SQL.format(table=table), {"operation": operation, "batch_size": MAX_BATCH_IDENTIFIERS})
    while (row := result.fetchone()) is not None:
        yield row[0], row[1].encode()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    report = Report(tool="duckdb")
    timer = PhaseTimer(report)
    connection = connect(args.threads)

    build_plan(connection, args.query, args.source, args.state, report)
    timer.lap("plan")
    if args.write_plan:
        write_plan(connection, args.write_plan)
        timer.lap("write_plan")
    if args.dry_run:
        report.print()
        return

    client = client_from_env(args.api_url)
    deliver(client, args.audience_id, request_bodies(connection, "adds", "add"), report, "add")
    deliver(client, args.audience_id, request_bodies(connection, "removes", "remove"), report, "remove")
    timer.lap("deliver")

    commit_snapshot(
        args.state,
        lambda path: connection.execute(f"COPY (SELECT identifier FROM current ORDER BY identifier) TO '{path}' (FORMAT parquet)"),
    )
    timer.lap("commit")
    report.print()


if __name__ == "__main__":
    main()
