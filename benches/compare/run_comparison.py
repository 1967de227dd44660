"""Compare audience-sync with the same job written in DuckDB and in Polars.

For each tool the harness runs the day-1 sync, a first run in which every identifier is an
add. Then it runs the day-2 sync --repeat times, each from a fresh copy of that tool's
day-1 state, so that every repetition does the same work. Day-2 repetitions of the tools are interleaved
so that background load hits them alike. Each run is one process, timed by wall clock,
with its peak resident set size taken from wait4(2). Afterwards every tool computes the
day-2 plan once more without sending, and the harness checks that all of them produced
the same adds and removes. It prints the results as Markdown and writes them as JSON
under bench-data/results/.

    python benches/compare/run_comparison.py --rows 10000000 --repeat 5
    python benches/compare/run_comparison.py --memory-test --rows 100000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
SEGMENT = REPO / "queries" / "bench_segment.sql"
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
ADVERTISER_ID = "12345"
AUDIENCE_ID = "987654"
ALL_TOOLS = ["audience-sync", "polars", "polars-udf", "duckdb"]


@dataclass
class Measurement:
    wall_secs: float
    cpu_secs: float
    peak_rss_mib: float
    exit_code: int
    report: dict | None


@dataclass
class ToolResult:
    tool: str
    day1: Measurement | None = None
    day2: list[Measurement] = field(default_factory=list)


@dataclass
class Tool:
    """How to invoke one implementation of the job."""

    name: str
    api_url: str
    extract: Path
    work: Path
    binary: Path
    memory_limit_mib: int | None = None

    def run_command(self, source: Path, state: Path) -> list[str]:
        """Return the command that syncs `source` with the state in `state` and sends the plan."""
        if self.name == "audience-sync":
            return [str(self.binary), "run", str(self.activation()), *self.overrides(source, state)]
        return self.python_job(source, state)

    def plan_command(self, source: Path, state: Path, plan: Path) -> list[str]:
        """Return the command that writes the plan for `source` into `plan` without sending."""
        if self.name == "audience-sync":
            return [str(self.binary), "plan", str(self.activation()), "--write-plan", str(plan), *self.overrides(source, state)]
        return [*self.python_job(source, state), "--dry-run", "--write-plan", str(plan)]

    def python_job(self, source: Path, state: Path) -> list[str]:
        script = HERE / ("job_duckdb.py" if self.name == "duckdb" else "job_polars.py")
        command = [PYTHON, str(script), "--query", str(SEGMENT), "--source", str(source), "--state", str(state)]
        command += ["--api-url", self.api_url, "--audience-id", AUDIENCE_ID]
        if self.name.startswith("polars"):
            command += ["--sha256", "udf" if self.name == "polars-udf" else "plugin"]
        return command

    @staticmethod
    def overrides(source: Path, state: Path) -> list[str]:
        return ["--set", f"sources.customers={source}", "--set", f"state.url={state}"]

    def activation(self) -> Path:
        """Write the activation file for audience-sync. Each run overrides its source and state folders with --set."""
        path = self.work / "activation.toml"
        lines = [
            f'segment = "{SEGMENT}"',
            'key = "customer_id"',
            "[sources]",
            f'customers = "{self.extract / "day1"}"',
            "[identifiers]",
            'email = "email"',
            "[destination]",
            'kind = "criteo"',
            f'advertiser_id = "{ADVERTISER_ID}"',
            f'audience_id = "{AUDIENCE_ID}"',
            f'api_url = "{self.api_url}"',
            "[state]",
            f'url = "{self.work / "day1-state"}"',
        ]
        if self.memory_limit_mib:
            lines += ["[engine]", f"memory_limit_mib = {self.memory_limit_mib}"]
        path.write_text("\n".join(lines) + "\n")
        return path


def measure(command: list[str], log_path: Path) -> Measurement:
    """Run a command to completion and return its wall and CPU time, peak RSS and last stdout line as JSON."""
    env = {**os.environ, "CRITEO_CLIENT_ID": CLIENT_ID, "CRITEO_CLIENT_SECRET": CLIENT_SECRET}
    stdout_path = log_path.with_suffix(".stdout")
    with open(stdout_path, "wb") as stdout, open(log_path, "wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)

    report = None
    lines = stdout_path.read_text().strip().splitlines()
    if lines:
        try:
            report = json.loads(lines[-1])
        except json.JSONDecodeError:
            report = None
    # Linux reports ru_maxrss in KiB.
    cpu = usage.ru_utime + usage.ru_stime
    return Measurement(round(wall, 3), round(cpu, 3), round(usage.ru_maxrss / 1024, 1), process.returncode, report)


def describe_failure(tool: str, measurement: Measurement, log_path: Path) -> None:
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
    print(f"{tool} failed with exit code {measurement.exit_code}. Last lines of {log_path}:", file=sys.stderr)
    for line in tail:
        print(f"    {line}", file=sys.stderr)


def ensure_extract(rows: int, seed: int, data_dir: Path) -> Path:
    """Generate the extract unless a complete one with the same rows and seed exists."""
    extract = data_dir / f"extract-{rows}-seed{seed}"
    description = extract / "extract.json"
    if description.exists():
        recorded = json.loads(description.read_text())
        if recorded["rows"] == rows and recorded["seed"] == seed:
            print(f"reusing {extract}", file=sys.stderr)
            return extract
    shutil.rmtree(extract, ignore_errors=True)
    command = [PYTHON, str(HERE / "generate_extract.py"), "--rows", str(rows), "--seed", str(seed), "--out", str(extract)]
    subprocess.run(command, check=True)
    return extract


def warm_page_cache(extract: Path) -> None:
    """Read every extract file once so that no tool pays for the first cold read."""
    for path in sorted(extract.glob("day*/*.parquet")):
        with open(path, "rb") as file:
            while file.read(1 << 24):
                pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(kind: str, binary: Path, port: int, log_path: Path) -> subprocess.Popen:
    """Start the fake Criteo API on loopback and wait until it accepts connections."""
    if kind == "sandbox":
        # The sandbox's request log would otherwise keep every identifier sent in memory.
        command = [str(binary), "sandbox", "--listen", f"127.0.0.1:{port}", "--record-identifiers", "false"]
    else:
        command = [PYTHON, str(HERE / "stub_criteo.py"), "--listen", f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"), cwd=REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the {kind} server exited with code {server.returncode}, see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    sys.exit(f"the {kind} server did not listen on 127.0.0.1:{port} within 30 s, see {log_path}")


def fresh_copy(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def run_day1(tool: Tool, extract: Path) -> Measurement:
    state = tool.work / "day1-state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    log_path = tool.work / "day1.log"
    measurement = measure(tool.run_command(extract / "day1", state), log_path)
    if measurement.exit_code != 0:
        describe_failure(tool.name, measurement, log_path)
    return measurement


def run_day2(tool: Tool, extract: Path, repetition: int) -> Measurement:
    state = fresh_copy(tool.work / "day1-state", tool.work / "day2-state")
    log_path = tool.work / f"day2-{repetition}.log"
    measurement = measure(tool.run_command(extract / "day2", state), log_path)
    if measurement.exit_code != 0:
        describe_failure(tool.name, measurement, log_path)
    shutil.rmtree(state, ignore_errors=True)
    return measurement


def write_day2_plan(tool: Tool, extract: Path) -> Path | None:
    """Compute the day-2 plan from the day-1 state without sending, and return its folder."""
    state = fresh_copy(tool.work / "day1-state", tool.work / "plan-state")
    plan = tool.work / "plan"
    shutil.rmtree(plan, ignore_errors=True)
    log_path = tool.work / "plan.log"
    measurement = measure(tool.plan_command(extract / "day2", state, plan), log_path)
    shutil.rmtree(state, ignore_errors=True)
    if measurement.exit_code != 0:
        describe_failure(tool.name, measurement, log_path)
        return None
    return plan


def write_reference_plan(work: Path, extract: Path) -> Path:
    """Compute the day-2 plan with the per-row Python reference, which is slow and meant for small extracts."""
    plan = work / "plan"
    shutil.rmtree(plan, ignore_errors=True)
    command = [PYTHON, str(HERE / "reference.py"), "--query", str(SEGMENT), "--previous", str(extract / "day1")]
    command += ["--current", str(extract / "day2"), "--write-plan", str(plan)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return plan


def read_plan(plan: Path) -> dict[str, list[tuple[str, str]]]:
    result = {}
    for name in ("adds", "removes"):
        table = pq.read_table(plan / f"{name}.parquet", columns=["identifier_type", "identifier"])
        result[name] = sorted(zip(table.column("identifier_type").to_pylist(), table.column("identifier").to_pylist()))
    return result


def compare_plans(plans: dict[str, Path]) -> list[str]:
    """Return one line per difference between the tools' adds and removes; empty when all agree."""
    loaded = {tool: read_plan(path) for tool, path in plans.items()}
    if not loaded:
        return ["no tool wrote a plan"]
    baseline_tool, baseline = next(iter(loaded.items()))
    differences = []
    for tool, plan in loaded.items():
        for name in ("adds", "removes"):
            expected, actual = set(baseline[name]), set(plan[name])
            if expected != actual:
                differences.append(
                    f"{name}: {tool} has {len(actual - expected)} identifiers that {baseline_tool} lacks "
                    f"and lacks {len(expected - actual)} that {baseline_tool} has"
                )
    return differences


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(result: ToolResult) -> dict:
    succeeded = [m for m in result.day2 if m.exit_code == 0]
    day1 = result.day1
    added = (day1.report or {}).get("added") if day1 and day1.exit_code == 0 else None
    reports = [m.report or {} for m in succeeded]
    return {
        "tool": result.tool,
        "day1_wall_secs": day1.wall_secs if day1 and day1.exit_code == 0 else None,
        "day1_peak_rss_mib": day1.peak_rss_mib if day1 and day1.exit_code == 0 else None,
        "day1_identifiers_per_sec": round(added / day1.wall_secs) if added else None,
        "day1_added": added,
        "day2_runs": len(result.day2),
        "day2_failed": len(result.day2) - len(succeeded),
        "day2_median_wall_secs": median([m.wall_secs for m in succeeded]),
        "day2_median_cpu_secs": median([m.cpu_secs for m in succeeded]),
        "day2_min_wall_secs": min((m.wall_secs for m in succeeded), default=None),
        "day2_max_wall_secs": max((m.wall_secs for m in succeeded), default=None),
        "day2_median_peak_rss_mib": median([m.peak_rss_mib for m in succeeded]),
        "day2_added": reports[0].get("added") if reports else None,
        "day2_removed": reports[0].get("removed") if reports else None,
    }


def number(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown_table(summaries: list[dict]) -> str:
    lines = [
        "| tool | day 1 wall (s) | day 1 identifiers/s | day 1 peak RSS (MiB) | day 2 median wall (s) | day 2 min–max (s) "
        "| day 2 median CPU (s) | day 2 median peak RSS (MiB) | day 2 adds | day 2 removes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        spread = f"{number(s['day2_min_wall_secs'])}–{number(s['day2_max_wall_secs'])}" if s["day2_min_wall_secs"] else "—"
        failed = f" ({s['day2_failed']} of {s['day2_runs']} failed)" if s["day2_failed"] else ""
        lines.append(
            f"| {s['tool']}{failed} | {number(s['day1_wall_secs'])} | {number(s['day1_identifiers_per_sec'], 0)} "
            f"| {number(s['day1_peak_rss_mib'], 0)} | {number(s['day2_median_wall_secs'])} | {spread} | {number(s['day2_median_cpu_secs'])} "
            f"| {number(s['day2_median_peak_rss_mib'], 0)} | {number(s['day2_added'], 0)} | {number(s['day2_removed'], 0)} |"
        )
    return "\n".join(lines)


def ratio_table(summaries: list[dict]) -> str:
    """Tabulate each other tool's medians divided by audience-sync's (above 1: audience-sync is faster or smaller)."""
    by_tool = {s["tool"]: s for s in summaries}
    ours = by_tool.get("audience-sync")
    if not ours or not ours["day2_median_wall_secs"]:
        return ""
    others = [summary for tool, summary in by_tool.items() if tool != "audience-sync"]
    if not others:
        return ""
    metrics = ["day1_wall_secs", "day2_median_wall_secs", "day2_median_cpu_secs", "day2_median_peak_rss_mib"]
    lines = [
        "| other tool ÷ audience-sync | day 1 wall | day 2 wall | day 2 CPU | day 2 peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for summary in others:
        cells = []
        for metric in metrics:
            if summary[metric] and ours[metric]:
                cells.append(f"{summary[metric] / ours[metric]:.2f}×")
            else:
                cells.append("—")
        lines.append(f"| {summary['tool']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(run: dict) -> str:
    """Tabulate the memory test's day-1 and day-2 runs of audience-sync."""
    lines = [
        "| run | exit code | wall (s) | CPU (s) | peak RSS (MiB) | adds | removes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, measurement in [("day 1", run["day1"]), *(("day 2", m) for m in run["day2"])]:
        report = measurement["report"] or {}
        lines.append(
            f"| {label} | {measurement['exit_code']} | {number(measurement['wall_secs'])} | {number(measurement['cpu_secs'])} "
            f"| {number(measurement['peak_rss_mib'], 0)} | {number(report.get('added'), 0)} | {number(report.get('removed'), 0)} |"
        )
    return "\n".join(lines)


def write_results(data_dir: Path, payload: dict) -> Path:
    results = data_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results / f"{payload['mode']}-{payload['rows']}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def compare(args: argparse.Namespace, extract: Path, api_url: str) -> dict:
    tools = [
        Tool(name, api_url, extract, args.data_dir / "runs" / f"{name}-{args.rows}", args.binary, args.memory_limit_mib)
        for name in args.tools
    ]
    results = {tool.name: ToolResult(tool.name) for tool in tools}
    for tool in tools:
        tool.work.mkdir(parents=True, exist_ok=True)
        print(f"day 1: {tool.name}", file=sys.stderr)
        results[tool.name].day1 = run_day1(tool, extract)

    ready = [tool for tool in tools if results[tool.name].day1.exit_code == 0]
    for repetition in range(1, args.repeat + 1):
        for tool in ready:
            print(f"day 2, repetition {repetition}: {tool.name}", file=sys.stderr)
            results[tool.name].day2.append(run_day2(tool, extract, repetition))

    plans = {}
    if args.check_reference:
        plans["reference"] = write_reference_plan(args.data_dir / "runs" / f"reference-{args.rows}", extract)
    for tool in ready:
        plan = write_day2_plan(tool, extract)
        if plan:
            plans[tool.name] = plan
    differences = compare_plans(plans)

    summaries = [summarize(results[tool.name]) for tool in tools]
    return {
        "summaries": summaries,
        "plans_compared": sorted(plans),
        "plan_differences": differences,
        "runs": {name: asdict(result) for name, result in results.items()},
    }


def memory_test(args: argparse.Namespace, extract: Path, api_url: str) -> dict:
    """Run audience-sync alone on day 1 and day 2 with a capped DataFusion memory pool."""
    work = args.data_dir / "runs" / f"memory-{args.rows}"
    tool = Tool("audience-sync", api_url, extract, work, args.binary, args.memory_limit_mib or 2048)
    tool.work.mkdir(parents=True, exist_ok=True)
    result = ToolResult(tool.name)
    print("day 1: audience-sync", file=sys.stderr)
    result.day1 = run_day1(tool, extract)
    if result.day1.exit_code == 0:
        print("day 2: audience-sync", file=sys.stderr)
        result.day2.append(run_day2(tool, extract, 1))
    return {"summaries": [summarize(result)], "memory_limit_mib": tool.memory_limit_mib, "runs": {tool.name: asdict(result)}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="customers in the day-1 extract")
    parser.add_argument("--seed", type=int, default=1, help="seed of the extract generator")
    parser.add_argument("--repeat", type=int, default=5, help="day-2 runs per tool")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma-separated subset of {','.join(ALL_TOOLS)}")
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "audience-sync", help="audience-sync executable")
    parser.add_argument("--server", choices=["sandbox", "stub"], default="sandbox", help="fake Criteo API: `audience-sync sandbox` or the Python stub")
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench-data", help="folder for extracts, run state and results")
    parser.add_argument("--memory-limit-mib", type=int, help="[engine] memory_limit_mib for audience-sync (memory test default: 2048)")
    parser.add_argument("--check-reference", action="store_true", help="also compare the plans with reference.py (per-row Python, slow)")
    parser.add_argument("--memory-test", action="store_true", help="run only audience-sync, day 1 and day 2 once, and report peak RSS")
    args = parser.parse_args()

    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(args.tools) - set(ALL_TOOLS))
    if unknown:
        parser.error(f"unknown tools {unknown}: expected a subset of {ALL_TOOLS}")
    needs_binary = args.server == "sandbox" or args.memory_test or "audience-sync" in args.tools
    if needs_binary and not args.binary.exists():
        parser.error(f"{args.binary} not found: build it with `cargo build --release`, or use --server stub --tools polars,duckdb")
    args.data_dir = args.data_dir.resolve()
    args.binary = args.binary.resolve()
    return args


def main() -> None:
    args = parse_args()
    load_at_start = os.getloadavg()
    extract = ensure_extract(args.rows, args.seed, args.data_dir)
    warm_page_cache(extract)

    port = free_port()
    server = start_server(args.server, args.binary, port, args.data_dir / f"{args.server}.log")
    api_url = f"http://127.0.0.1:{port}"
    try:
        outcome = memory_test(args, extract, api_url) if args.memory_test else compare(args, extract, api_url)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    payload = {
        "mode": "memory" if args.memory_test else "compare",
        "rows": args.rows,
        "seed": args.seed,
        "repeat": args.repeat,
        "server": args.server,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        **outcome,
    }
    path = write_results(args.data_dir, payload)

    if args.memory_test:
        print(f"\n{args.rows:,} customers, audience-sync with memory_limit_mib = {outcome['memory_limit_mib']}\n")
        print(memory_table(outcome["runs"]["audience-sync"]))
    else:
        print(f"\n{args.rows:,} customers, {args.repeat} day-2 runs per tool, server: {args.server}\n")
        print(markdown_table(outcome["summaries"]))
    ratios = ratio_table(outcome["summaries"])
    if ratios:
        print(f"\n{ratios}")
    if "plan_differences" in outcome:
        compared = ", ".join(outcome["plans_compared"])
        if outcome["plan_differences"]:
            print(f"\nPLANS DIFFER ({compared}):")
            for line in outcome["plan_differences"]:
                print(f"- {line}")
        else:
            print(f"\nDay-2 adds and removes are identical across {compared}.")
    print(f"\nresults: {path}")
    if outcome.get("plan_differences"):
        sys.exit(1)


if __name__ == "__main__":
    main()
