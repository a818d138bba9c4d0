//! `ohlcv-collector`: collects OHLCV candles from crypto exchanges into
//! SQLite and serves them live over HTTP and WebSocket.
//!
//! `ohlcv-collector run --config config.json` loads and validates the
//! config, opens the database (refusing a foreign or newer file before
//! anything starts), starts the supervisor, and on SIGINT/SIGTERM shuts
//! down in order: datasources, then storage (every queued candle is
//! written), then the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use actix::prelude::*;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::{LogForwardLayer, LogHistory};
use ohlcv_actors::lifecycle::install_panic_capture;
use ohlcv_domain::config::ConfigStore;
use ohlcv_domain::ErrorChain;
use ohlcv_storage::Database;
use ohlcv_supervisors::{Shutdown, Supervisor, SupervisorSetup};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Command line of the collector.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector until SIGINT or SIGTERM.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "./config.json")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Run { config } = cli.command;
    match run(config, cli.log_format) {
        Ok(code) => code,
        Err(error) => {
            // Our error chain, not anyhow's `{:#}`: it also says once a
            // reason that a library repeats as its own source.
            let message = ErrorChain(error.as_ref()).to_string();
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, broadcaster: Broadcaster, logs: LogHistory) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(LogForwardLayer::new(broadcaster, logs))
        .init();
}

fn run(config_path: PathBuf, format: LogFormat) -> anyhow::Result<ExitCode> {
    let broadcaster = Broadcaster::new();
    let logs = LogHistory::default();
    init_tracing(format, broadcaster.clone(), logs.clone());
    install_panic_capture();

    let store = ConfigStore::new(&config_path);
    let config = store
        .load()
        .with_context(|| format!("configuration {} refused", config_path.display()))?;
    let database_path = config.resolved_database_path(&store.dir());
    let mut database = Database::open(&database_path)
        .with_context(|| format!("database {} refused", database_path.display()))?;
    // Candles a previous run could not write at its shutdown come first.
    let rescued = ohlcv_storage::rescue::import(&mut database)
        .with_context(|| format!("rescue file of {} not imported", database_path.display()))?;
    if rescued.candles > 0 || rescued.rejected_lines > 0 {
        tracing::warn!(
            candles = rescued.candles,
            rejected_lines = rescued.rejected_lines,
            "imported the candles a previous run could not write"
        );
    }

    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        let (fatal, fatal_rx) = tokio::sync::oneshot::channel();
        let supervisor = Supervisor::new(SupervisorSetup {
            store,
            config,
            database,
            broadcaster,
            logs,
            fatal,
        })
        .start();
        let code = tokio::select! {
            () = shutdown_signal() => 0,
            Ok(code) = fatal_rx => code,
        };
        let saved = supervisor.send(Shutdown).await.unwrap_or(false);
        match (code, saved) {
            (0, true) => 0u8,
            (0, false) => 2,
            (code, _) => u8::try_from(code).unwrap_or(1),
        }
    });
    tracing::info!(code, "exiting");
    Ok(ExitCode::from(code))
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "SIGTERM cannot be handled; only Ctrl-C stops the collector");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
