//! `trailguard run`: start telemetry, open the state, run the daemon until SIGTERM/SIGINT, and
//! drain within `server.shutdown_grace`.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::EXIT_STATE;
use crate::aws::{self, Aws};
use crate::clock::Clock;
use crate::config::Config;
use crate::pipeline::{self, Daemon};
use crate::state::{StateError, Store};
use crate::telemetry::{self, Health, Known};

pub async fn run(cfg: Config, reset_state: bool) -> ExitCode {
    telemetry::init_logging(cfg.log.format, &cfg.log.level);
    // systemd tells the watchdog's period; the poll loops ping it at least once a poll.
    if let Some(watchdog) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_micros)
        && cfg.cloudtrail.poll_interval * 2 > watchdog
    {
        eprintln!(
            "trailguard: cloudtrail.poll_interval ({}) must be at most half of systemd's WatchdogSec ({}), or the watchdog fires between two polls",
            humantime::format_duration(cfg.cloudtrail.poll_interval),
            humantime::format_duration(watchdog)
        );
        return ExitCode::from(super::EXIT_CONFIG);
    }
    let clock = Clock::new();
    let names = pipeline::known_pollers(&cfg);
    let mut rule_ids: Vec<String> = cfg.rules.rules.iter().map(|r| r.id.clone()).collect();
    if cfg.iam.is_some() {
        rule_ids.extend([crate::iam::UNROTATED.to_owned(), crate::iam::UNUSED.to_owned()]);
    }
    let regions = cfg.regions.clone();
    let metrics = telemetry::install_metrics(
        &Known {
            pollers: names.clone(),
            regions,
            rule_ids,
            dry_run: cfg.dry_run,
        },
        clock.host_now().timestamp() as f64,
    );
    let listener = match telemetry::bind(cfg.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cfg.server.listen, error = %e, "Cannot listen for metrics and health checks.");
            return ExitCode::FAILURE;
        }
    };
    let health = Health::new(&names, cfg.cloudtrail.poll_interval);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(telemetry::serve(
        listener,
        metrics,
        health.clone(),
        shutdown.clone(),
    ));
    let store = tokio::select! {
        store = open_store(&cfg.state_dir, reset_state, &health) => match store {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "Cannot use the state store.");
                eprintln!("trailguard: {e}");
                shutdown.cancel();
                return ExitCode::from(EXIT_STATE);
            }
        },
        _ = signal() => {
            shutdown.cancel();
            let _ = server.await;
            return ExitCode::SUCCESS;
        }
    };
    let aws = Aws::new(aws::load_sdk_config().await, clock);
    let grace = cfg.server.shutdown_grace;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        regions = ?cfg.regions,
        pollers = ?names,
        dry_run = cfg.dry_run,
        listen = %cfg.server.listen,
        poll_interval_s = cfg.cloudtrail.poll_interval.as_secs(),
        "trailguard starting."
    );
    if cfg.dry_run {
        tracing::warn!("Dry run: trailguard matches and notifies what it would do, and changes nothing.");
    }
    let daemon = Daemon {
        config: cfg,
        store,
        health,
        aws,
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
                    tracing::error!(error = %e, "The state cannot be trusted; stopping.");
                    eprintln!("trailguard: {e}");
                    ExitCode::from(EXIT_STATE)
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

/// Opens the state store; while another trailguard process on this host holds it (the state
/// file's own lock), stands by and tries again.
async fn open_store(dir: &std::path::Path, reset: bool, health: &Health) -> Result<Store, StateError> {
    let mut said = false;
    loop {
        match Store::open(dir, reset) {
            Err(StateError::Open {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                path,
            }) => {
                let why = format!("another trailguard process uses the state file {path}");
                if !said {
                    tracing::warn!(reason = %why, "Standing by.");
                    said = true;
                }
                health.set_standby(Some(why));
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            other => {
                health.set_standby(None);
                return other;
            }
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
