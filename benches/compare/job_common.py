"""Command line, email rules and bookkeeping shared by the DuckDB and Polars jobs.

Both jobs take the same arguments, keep their state the same way and print one JSON
report line, so the benchmark harness drives them identically. Only the data work
(segment, normalization, hashing, diff, request bodies) differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from criteo_client import CriteoClient

MAX_BATCH_IDENTIFIERS = 50_000  # identifiers per request, the cap that Criteo integrators apply

# Unicode White_Space characters plus the byte order mark. Emails are trimmed of these
# and rejected when one remains inside.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# The same set as a regular-expression class that RE2 (DuckDB) and Rust's regex (Polars) accept.
WHITESPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in WHITESPACE) + "]"
SHA256_HEX_PATTERN = "^[0-9a-f]{64}$"
# One @, a non-empty local part and a dot in the domain. Whitespace is checked separately.
EMAIL_PATTERN = r"^[^@]+@[^@]*\.[^@]*$"


@dataclass
class Report:
    tool: str
    members: int = 0
    identifiers: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    planned_added: int = 0
    planned_removed: int = 0
    added: int = 0
    removed: int = 0
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def print(self) -> None:
        print(json.dumps(self.__dict__), flush=True)


class PhaseTimer:
    """Record the wall time of consecutive phases into a report."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._start = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self._report.seconds[phase] = round(now - self._start, 3)
        self._start = now


def parse_args(description: str, add_arguments=None) -> argparse.Namespace:
    """Parse the arguments common to both jobs, plus those that `add_arguments(parser)` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--query", type=Path, required=True, help="segment SQL file reading table `customers`")
    parser.add_argument("--source", type=Path, required=True, help="Parquet file or folder of Parquet files for `customers`")
    parser.add_argument("--state", type=Path, required=True, help="folder that keeps snapshot.parquet between runs")
    parser.add_argument("--api-url", default="http://127.0.0.1:8080", help="base URL of the Criteo API or the sandbox")
    parser.add_argument("--audience-id", default="987654", help="contact-list audience segment to amend")
    parser.add_argument("--write-plan", type=Path, help="folder to write adds.parquet and removes.parquet into")
    parser.add_argument("--dry-run", action="store_true", help="compute the plan but send nothing and keep the snapshot")
    parser.add_argument("--threads", type=int, help="worker threads of the engine (default: all cores)")
    if add_arguments:
        add_arguments(parser)
    return parser.parse_args()


def read_segment_sql(path: Path) -> str:
    """Read a segment query and drop a trailing semicolon so it can be used as a subquery."""
    return path.read_text().strip().rstrip(";")


def source_glob(source: Path) -> str:
    return str(source / "*.parquet") if source.is_dir() else str(source)


def snapshot_path(state: Path) -> Path:
    return state / "snapshot.parquet"


def client_from_env(api_url: str) -> CriteoClient:
    try:
        return CriteoClient(api_url, os.environ["CRITEO_CLIENT_ID"], os.environ["CRITEO_CLIENT_SECRET"])
    except KeyError as missing:
        sys.exit(f"missing environment variable {missing}: set CRITEO_CLIENT_ID and CRITEO_CLIENT_SECRET")


def commit_snapshot(state: Path, write) -> None:
    """Replace the snapshot atomically: `write(path)` writes a temporary file that is then renamed."""
    state.mkdir(parents=True, exist_ok=True)
    temporary = state / "snapshot.parquet.tmp"
    write(temporary)
    os.replace(temporary, snapshot_path(state))


def deliver(client: CriteoClient, audience_id: str, batches, report: Report, operation: str) -> None:
    """Send (identifier count, JSON body) pairs in order and count what the API acknowledged."""
    for count, body in batches:
        client.amend_contact_list(audience_id, body)
        report.requests += 1
        if operation == "add":
            report.added += count
        else:
            report.removed += count
