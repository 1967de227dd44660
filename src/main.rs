//! The `audience-sync` command: parses arguments, sets up logging, calls the library, and
//! maps the outcome to an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use audience_sync::config::{Activation, ConfigError, Credentials, DestinationSettings, LoadOptions};
use audience_sync::destination::{CriteoClient, audience};
use audience_sync::error::ExitCode;
use audience_sync::report::{RunReport, Status};
use audience_sync::run::{self, Command, RunOptions};
use audience_sync::sandbox;
use audience_sync::snapshot::StateStore;

#[derive(Parser)]
#[command(name = "audience-sync", version, about = "Keep Criteo audiences in step with SQL segments")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "AUDIENCE_SYNC_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Sync the audience with the segment: send who entered and who left, then commit.
    Run(RunArgs),
    /// Compute and print the plan; send and write nothing.
    Plan(PlanArgs),
    /// Validate settings, SQL, state and destination access without side effects, and print
    /// the effective settings with secrets masked.
    Check(ActivationArgs),
    /// Inspect or reset an activation's state.
    #[command(subcommand)]
    State(StateCommand),
    /// List or create Criteo audiences.
    #[command(subcommand)]
    Audiences(AudiencesCommand),
    /// Run a local fake of the Criteo API for trying audience-sync without an account.
    Sandbox(sandbox::SandboxArgs),
}

#[derive(Args, Clone)]
struct ActivationArgs {
    /// Activation file (TOML).
    activation: PathBuf,
    /// Project file with `[defaults]`; by default `audience-sync.toml` next to the activation.
    #[arg(long, env = "AUDIENCE_SYNC_PROJECT")]
    project: Option<PathBuf>,
    /// Override a setting for this run, e.g. `--set sources.customers=s3://bucket/2026-12-01/`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Also write the JSON report to this file.
    #[arg(long, env = "AUDIENCE_SYNC_REPORT")]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    activation: ActivationArgs,
    /// Let this run remove more than `guards.max_removal_ratio` of the audience, or empty it.
    #[arg(long)]
    allow_removals: bool,
    /// Send every current identifier as an add and remove nothing.
    #[arg(long)]
    full_resync: bool,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    activation: ActivationArgs,
    /// Write `adds.parquet` and `removes.parquet` (identifiers as they would be sent) here.
    #[arg(long, value_name = "DIR")]
    write_plan: Option<PathBuf>,
    /// Evaluate the removal guards as if `--allow-removals` were given.
    #[arg(long)]
    allow_removals: bool,
    /// Plan a full resync.
    #[arg(long)]
    full_resync: bool,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Print the latest manifest and the lock, if any.
    Show(ActivationArgs),
    /// Delete the activation's state; the next run re-adds every identifier.
    Reset {
        #[command(flatten)]
        activation: ActivationArgs,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Remove the lock left by a run that died.
    Unlock(ActivationArgs),
}

#[derive(Subcommand)]
enum AudiencesCommand {
    /// List the contact-list audiences of an advertiser.
    List(AudienceApiArgs),
    /// Create a contact-list audience.
    Create {
        #[command(flatten)]
        api: AudienceApiArgs,
        /// Audience name.
        #[arg(long)]
        name: String,
        /// Audience description.
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(Args)]
struct AudienceApiArgs {
    /// Advertiser id.
    #[arg(long)]
    advertiser: String,
    /// Base URL of the Criteo API.
    #[arg(long, default_value = audience_sync::config::DEFAULT_API_URL, env = "AUDIENCE_SYNC_API_URL")]
    api_url: String,
    /// Criteo API version.
    #[arg(long, default_value = audience_sync::config::DEFAULT_API_VERSION)]
    api_version: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "failed to start the async runtime");
            return exit(ExitCode::Temporary);
        }
    };
    let code = runtime.block_on(dispatch(cli.command));
    exit(code)
}

fn exit(code: ExitCode) -> std::process::ExitCode {
    std::process::ExitCode::from(code.code() as u8)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDIENCE_SYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: CliCommand) -> ExitCode {
    match command {
        CliCommand::Run(args) => {
            let options = |stop| RunOptions {
                command: Command::Run,
                allow_removals: args.allow_removals,
                full_resync: args.full_resync,
                write_plan: None,
                stop,
            };
            run_command(&args.activation, options).await
        }
        CliCommand::Plan(args) => {
            let options = |stop| RunOptions {
                command: Command::Plan,
                allow_removals: args.allow_removals,
                full_resync: args.full_resync,
                write_plan: args.write_plan.clone(),
                stop,
            };
            run_command(&args.activation, options).await
        }
        CliCommand::Check(args) => {
            let options = |stop| RunOptions {
                command: Command::Check,
                allow_removals: false,
                full_resync: false,
                write_plan: None,
                stop,
            };
            run_command(&args, options).await
        }
        CliCommand::State(command) => state_command(command).await,
        CliCommand::Audiences(command) => audiences_command(command).await,
        CliCommand::Sandbox(args) => match sandbox::serve(args).await {
            Ok(()) => ExitCode::Success,
            Err(error) => {
                tracing::error!(%error, "the sandbox stopped");
                ExitCode::Temporary
            }
        },
    }
}

fn load(args: &ActivationArgs) -> Result<Activation, ConfigError> {
    Activation::load(
        &args.activation,
        &LoadOptions {
            project_file: args.project.clone(),
            overrides: args.overrides.clone(),
        },
    )
}

/// Runs `run`, `plan` or `check` and prints the report as the last line of stdout.
async fn run_command(args: &ActivationArgs, options: impl FnOnce(watch::Receiver<bool>) -> RunOptions) -> ExitCode {
    let (stop_sender, stop) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::warn!("stop requested; finishing the batches in flight, then committing");
        let _ = stop_sender.send(true);
    });
    let options = options(stop);
    let report = match load(args) {
        Ok(activation) => run::execute(&activation, options).await,
        Err(error) => {
            let message = run::error_chain(&error);
            tracing::error!("{message}");
            let mut report = RunReport {
                activation: args
                    .activation
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                command: format!("{:?}", options.command).to_lowercase(),
                status: Status::Failed,
                exit_code: ExitCode::Config.code(),
                ..RunReport::default()
            };
            report.push_error(message, Default::default());
            report
        }
    };
    emit_report(&report, args.report.as_deref());
    match report.exit_code {
        0 => ExitCode::Success,
        2 => ExitCode::Config,
        3 => ExitCode::Source,
        4 => ExitCode::Blocked,
        5 => ExitCode::Rejected,
        6 => ExitCode::Partial,
        _ => ExitCode::Temporary,
    }
}

/// Prints the report as the only line on stdout, after every log line reached stderr.
fn emit_report(report: &RunReport, file: Option<&std::path::Path>) {
    let line = report.to_line();
    if let Some(path) = file
        && let Err(error) = std::fs::write(path, format!("{line}\n"))
    {
        tracing::error!(path = %path.display(), %error, "failed to write the report file");
    }
    let _ = std::io::stderr().flush();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_json(value: &serde_json::Value) {
    let _ = std::io::stderr().flush();
    println!("{value}");
}

async fn state_command(command: StateCommand) -> ExitCode {
    let (args, action) = match &command {
        StateCommand::Show(args) => (args, "show"),
        StateCommand::Reset { activation, .. } => (activation, "reset"),
        StateCommand::Unlock(args) => (args, "unlock"),
    };
    let result = async {
        let activation = load(args)?;
        let state = StateStore::open(&activation)?;
        let value = match &command {
            StateCommand::Show(_) => {
                let manifest = state.latest_manifest().await?;
                let lock = state.read_lock().await?;
                serde_json::json!({ "location": state.location(), "manifest": manifest, "lock": lock })
            }
            StateCommand::Reset { yes, .. } => {
                if !yes {
                    return Err(audience_sync::error::Error::Config(ConfigError::Invalid {
                        path: activation.file.clone(),
                        message: "`state reset` deletes the snapshot, so the next run re-adds \
                                  every identifier and cannot remove earlier ones; add --yes to confirm"
                            .into(),
                    }));
                }
                let deleted = state.reset().await?;
                tracing::info!(deleted, location = state.location(), "deleted the activation's state");
                serde_json::json!({ "location": state.location(), "deleted_objects": deleted })
            }
            StateCommand::Unlock(_) => {
                let lock = state.read_lock().await?;
                state.remove_lock().await?;
                serde_json::json!({ "location": state.location(), "removed_lock": lock })
            }
        };
        Ok::<_, audience_sync::error::Error>(value)
    }
    .await;
    match result {
        Ok(value) => {
            print_json(&value);
            ExitCode::Success
        }
        Err(error) => {
            tracing::error!("state {action} failed: {}", run::error_chain(&error));
            error.exit_code()
        }
    }
}

async fn audiences_command(command: AudiencesCommand) -> ExitCode {
    let result = async {
        let api = match &command {
            AudiencesCommand::List(api) => api,
            AudiencesCommand::Create { api, .. } => api,
        };
        let settings: DestinationSettings = toml::from_str(&format!(
            "api_url = {:?}\napi_version = {:?}\nadvertiser_id = {:?}",
            api.api_url, api.api_version, api.advertiser
        ))
        .map_err(|error| ConfigError::Override {
            assignment: "--api-url / --api-version".into(),
            message: error.message().to_string(),
        })?;
        let client = CriteoClient::new(&settings, Credentials::from_env()?)?;
        let value = match &command {
            AudiencesCommand::List(_) => {
                let audiences = audience::list_audiences(&client, &api.advertiser).await?;
                let items: Vec<_> = audiences
                    .iter()
                    .map(|a| serde_json::json!({ "id": a.id, "name": a.name, "description": a.description, "type": a.segment_type }))
                    .collect();
                serde_json::json!({ "advertiser_id": api.advertiser, "audiences": items })
            }
            AudiencesCommand::Create { name, description, .. } => {
                let id = audience::create_named(&client, &api.advertiser, name, description.as_deref()).await?;
                serde_json::json!({ "advertiser_id": api.advertiser, "id": id, "name": name })
            }
        };
        Ok::<_, audience_sync::error::Error>(value)
    }
    .await;
    match result {
        Ok(value) => {
            print_json(&value);
            ExitCode::Success
        }
        Err(error) => {
            tracing::error!("{}", run::error_chain(&error));
            error.exit_code()
        }
    }
}
