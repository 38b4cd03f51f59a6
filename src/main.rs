//! `trailguard`: parse, initialise, run, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use trailguard::{config, pipeline, state, telemetry};

/// Exit status for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit status when the state directory cannot be used (EX_CANTCREAT).
const EXIT_STATE: u8 = 73;

#[derive(Parser)]
#[command(
    name = "trailguard",
    version,
    about = "Guards AWS KMS keys: watches CloudTrail, rescues keys pending deletion, notifies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Match and notify what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a configuration file; exit 0 if valid, 64 listing every problem.
    Validate {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Ask a running daemon whether it is ready (its /readyz); exit 0 if so, 1 if not.
    /// For container health checks: the image has no shell or curl.
    Health {
        /// The daemon's `server.listen` address.
        #[arg(long, env = "TRAILGUARD__SERVER__LISTEN", default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// Ask /healthz (alive and polling) instead of /readyz.
        #[arg(long)]
        live: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Health { listen, live } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let path = if live { "/healthz" } else { "/readyz" };
            match runtime.block_on(telemetry::probe(listen, path)) {
                Ok(()) => {
                    println!("trailguard at {listen}: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("trailguard at {listen}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config } => match config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", config.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config, dry_run } => {
            let mut cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{}: {e}", config.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            cfg.dry_run |= dry_run;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(run(cfg))
        }
    }
}

async fn run(cfg: config::Config) -> ExitCode {
    telemetry::init_logging(cfg.log_format, &cfg.log_level);
    let metrics = telemetry::install_metrics();
    let store = match state::Store::open(&cfg.state_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "Cannot open the state store.");
            return ExitCode::from(EXIT_STATE);
        }
    };
    let listener = match telemetry::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "Cannot listen for metrics and health checks.");
            return ExitCode::FAILURE;
        }
    };
    let mut pollers = cfg.regions.clone();
    if cfg.iam.is_some() {
        pollers.push(pipeline::IAM_POLLER.to_owned());
    }
    let health = telemetry::Health::new(&pollers, cfg.poll_interval);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let shutdown = CancellationToken::new();
    let grace = cfg.shutdown_grace;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        regions = ?cfg.regions,
        dry_run = cfg.dry_run,
        listen = %cfg.listen,
        poll_interval_s = cfg.poll_interval.as_secs(),
        "trailguard starting."
    );
    let server = tokio::spawn(telemetry::serve(
        listener,
        metrics,
        health.clone(),
        shutdown.clone(),
    ));
    let daemon = pipeline::Daemon {
        config: cfg,
        store,
        health,
        sdk,
    };
    let mut work = tokio::spawn(daemon.run(shutdown.clone()));

    tokio::select! {
        _ = signal() => {}
        res = &mut work => {
            shutdown.cancel();
            let _ = server.await;
            return match res {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "trailguard failed.");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    tracing::error!(error = %e, "trailguard crashed.");
                    ExitCode::FAILURE
                }
            };
        }
    }
    tracing::info!(
        grace_s = grace.as_secs(),
        "Shutting down: finishing work in flight."
    );
    shutdown.cancel();
    match tokio::time::timeout(grace, &mut work).await {
        Ok(_) => {
            let _ = server.await;
            tracing::info!("trailguard stopped.");
            ExitCode::SUCCESS
        }
        Err(_) => {
            tracing::error!(
                grace_s = grace.as_secs(),
                "Work did not finish within the shutdown grace period."
            );
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
