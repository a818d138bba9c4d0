//! `ohlcv-collector`: collects OHLCV candles from crypto exchanges into
//! SQLite and serves them live over HTTP and WebSocket.
//!
//! `ohlcv-collector run --config config.json` loads and validates the
//! config, binds the HTTP port, opens the database (refusing a foreign or
//! newer file before anything starts), starts the supervisor, and on
//! SIGINT/SIGTERM shuts down in order within
//! [`SHUTDOWN_BUDGET`](ohlcv_supervisors::SHUTDOWN_BUDGET): datasources,
//! then storage (every queued candle is written, or kept in the rescue
//! file), then the gateway.
//!
//! Exit codes, one per outcome (see [`ExitStatus`]): 0 every candle saved,
//! 1 could not start, 2 command-line usage error (clap's), 3 candles kept in
//! the rescue file, 4 candles lost.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use actix::prelude::*;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::{LogForwardLayer, LogHistory};
use ohlcv_actors::lifecycle::install_panic_capture;
use ohlcv_actors::storage::FlushOutcome;
use ohlcv_domain::config::ConfigStore;
use ohlcv_domain::ErrorChain;
use ohlcv_storage::rescue::RescueFile;
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

/// How the process ended, as its exit code: one code per outcome, so a
/// process manager or script can tell them apart. Clap exits with 2 on a
/// command-line usage error; no other outcome uses 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExitStatus {
    /// Every candle is in the database.
    Saved = 0,
    /// The process could not start (configuration, database or port).
    NotStarted = 1,
    /// The database refused the final write; the candles are in the rescue
    /// file, written into the database at the next start.
    Rescued = 3,
    /// Neither the database nor the rescue file took some candles.
    Lost = 4,
}

impl From<FlushOutcome> for ExitStatus {
    fn from(outcome: FlushOutcome) -> Self {
        match outcome {
            FlushOutcome::Saved { .. } => ExitStatus::Saved,
            FlushOutcome::Rescued { .. } => ExitStatus::Rescued,
            FlushOutcome::Lost { .. } => ExitStatus::Lost,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Run { config } = cli.command;
    let status = match run(config, cli.log_format) {
        Ok(status) => status,
        Err(error) => {
            // Our error chain, not anyhow's `{:#}`: it also says once a
            // reason that a library repeats as its own source.
            let message = ErrorChain(error.as_ref()).to_string();
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitStatus::NotStarted
        }
    };
    ExitCode::from(status as u8)
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

fn run(config_path: PathBuf, format: LogFormat) -> anyhow::Result<ExitStatus> {
    let broadcaster = Broadcaster::new();
    let logs = LogHistory::default();
    init_tracing(format, broadcaster.clone(), logs.clone());
    install_panic_capture();

    let store = ConfigStore::new(&config_path);
    let config = ohlcv_supervisors::load_config(&store)
        .with_context(|| format!("configuration {} refused", config_path.display()))?;
    // The port first: a second copy of the collector (or anything else on
    // the port) stops this one before it creates or touches any file.
    let address = SocketAddr::new(config.bind, config.port);
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let database_path = config.resolved_database_path(&store.dir());
    let mut database = Database::open(&database_path)
        .with_context(|| format!("database {} refused", database_path.display()))?;
    // Candles a previous run could not write come first.
    let rescued = RescueFile::for_database(&database_path)
        .replay_into(&mut database)
        .with_context(|| format!("rescue file of {} not imported", database_path.display()))?;
    if rescued.candles > 0 || rescued.rejected_lines > 0 {
        tracing::warn!(
            candles = rescued.candles,
            rejected_lines = rescued.rejected_lines,
            "imported the candles a previous run could not write"
        );
    }

    let bound = listener.local_addr().context("the bound address")?;

    let system = actix_rt::System::new();
    let status = system.block_on(async move {
        let stop = shutdown_signal();
        ignore_file_size_signal();
        // The one line on stdout: scripts and tests read the address from
        // it (port 0 picks a free port).
        println!("listening on http://{bound}");
        let supervisor = Supervisor::new(SupervisorSetup {
            store,
            config,
            database,
            broadcaster,
            logs,
            listener,
        })
        .start();
        stop.await;
        match supervisor.send(Shutdown).await {
            Ok(outcome) => ExitStatus::from(outcome),
            Err(_) => ExitStatus::Lost,
        }
    });
    tracing::info!(code = status as u8, "exiting");
    Ok(status)
}

/// A write past a file-size limit (`ulimit -f`) raises SIGXFSZ, whose
/// default action kills the process on the spot, queue and all. Handling
/// it turns such a write into an ordinary `EFBIG` error, which storage
/// survives like a full disk: the batch stays queued and is retried.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
            Ok(mut file_too_large) => {
                actix_rt::spawn(async move {
                    while file_too_large.recv().await.is_some() {
                        tracing::warn!("a write went past the file-size limit (SIGXFSZ)");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "SIGXFSZ cannot be handled"),
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers now, and answers a future that
/// resolves on the first of them. Installed before the address is printed,
/// so a signal sent by whoever read that line always gets the orderly
/// shutdown, never the default action (death with the queue unwritten).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    if let Err(error) = interrupt.and(terminate) {
                        tracing::warn!(%error, "SIGINT/SIGTERM cannot be handled; only Ctrl-C stops the collector");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
