//! Runs the seeded fault-injection campaign against `audience-sync sandbox` and prints a
//! summary table; exits 1 when a scenario failed.
//!
//! ```text
//! cargo build --bin audience-sync
//! cargo run --example fault_campaign -- --seed 1 --scenarios 300
//! cargo run --example fault_campaign -- --scenario-seed 1234 --kind kill-9   # replay one
//! ```
//!
//! Options: `--binary PATH` (default `target/debug/audience-sync`), `--seed N`,
//! `--scenarios N`, `--kind NAME` (repeatable; default every kind), `--scenario-seed N`
//! (replays one scenario), `--quiet`.
//!
//! This is a Rust example rather than a Python script because scenarios write Parquet
//! sources, and moto is the only Python package the tests install. The scenario code is
//! also shared with `tests/reliability.rs`, which runs a few seeded scenarios on every
//! `cargo test`.

#[path = "../tests/campaign/mod.rs"]
mod campaign;

use std::path::PathBuf;
use std::time::Instant;

use campaign::{CampaignOptions, Kind, SandboxProcess, Summary};

fn usage(message: &str) -> ! {
    eprintln!(
        "{message}\nusage: fault_campaign [--binary PATH] [--seed N] [--scenarios N] [--kind NAME]... \
         [--scenario-seed N] [--quiet]\nkinds: {}",
        Kind::ALL.map(Kind::name).join(", ")
    );
    std::process::exit(2)
}

fn parse_number(flag: &str, value: Option<String>) -> u64 {
    let value = value.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
    value.parse().unwrap_or_else(|_| usage(&format!("{flag} expects a whole number, got `{value}`")))
}

#[tokio::main]
async fn main() {
    let mut options = CampaignOptions {
        binary: PathBuf::from("target/debug/audience-sync"),
        seed: 1,
        scenarios: 300,
        kinds: Vec::new(),
        verbose: true,
    };
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--binary" => options.binary = PathBuf::from(args.next().unwrap_or_else(|| usage("--binary needs a path"))),
            "--seed" => options.seed = parse_number("--seed", args.next()),
            "--scenarios" => options.scenarios = parse_number("--scenarios", args.next()) as usize,
            "--scenario-seed" => replay = Some(parse_number("--scenario-seed", args.next())),
            "--kind" => {
                let name = args.next().unwrap_or_else(|| usage("--kind needs a name"));
                options.kinds.push(Kind::parse(&name).unwrap_or_else(|| usage(&format!("unknown kind `{name}`"))));
            }
            "--quiet" => options.verbose = false,
            other => usage(&format!("unknown option `{other}`")),
        }
    }
    if options.kinds.is_empty() {
        options.kinds = Kind::ALL.to_vec();
    }
    // Runs start in each scenario's folder, so a relative path would not resolve there.
    options.binary = std::fs::canonicalize(&options.binary).unwrap_or_else(|_| {
        usage(&format!("{} does not exist; build it with `cargo build --bin audience-sync`", options.binary.display()))
    });

    let started = Instant::now();
    let summary = match replay {
        Some(seed) => {
            let sandbox = SandboxProcess::start(&options.binary).await;
            let outcome = campaign::run_scenario(&options.binary, &sandbox, 0, options.kinds[0], seed).await;
            Summary { outcomes: vec![outcome] }
        }
        None => campaign::run_campaign(&options).await,
    };

    println!(
        "\nfault campaign: binary {}, seed {}, {} scenarios, {:.0} s\n",
        options.binary.display(),
        options.seed,
        summary.outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", summary.table());
    let failures = summary.failures();
    for outcome in &failures {
        println!(
            "FAILED scenario {} ({}), replay with --kind {} --scenario-seed {}: {}",
            outcome.index,
            outcome.kind.name(),
            outcome.kind.name(),
            outcome.seed,
            outcome.failure.as_deref().unwrap_or_default()
        );
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
