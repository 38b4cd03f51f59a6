//! The command line: parse, dispatch, map errors to exit statuses. Each subcommand is in its
//! own module; `main` only calls [`main`].

mod keys;
mod rules;
mod run;
mod scan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Exit status for an invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit status when the state cannot be used or trusted (EX_CANTCREAT).
pub const EXIT_STATE: u8 = 73;

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
enum RulesCommand {
    /// The effective rules, with where each comes from.
    List {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run every rule's test cases; exit 1 if any fails.
    Test {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Check every customer-managed key: state, rotation, key policy, alias. One finding per
    /// line (JSON) or a table on a terminal. Exit 0 clean, 1 findings at or above --fail-on,
    /// 2 incomplete (an AWS call failed), 64 bad usage or configuration.
    Audit(keys::AuditArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The configuration file (ignored when TRAILGUARD_CONFIG_TOML holds the document).
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Match and notify what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move the state file aside (as trailguard.redb.<time>.bak) and start afresh, reading
        /// from cloudtrail.start_from (or max_delivery_delay ago). For a state file that does not
        /// decode, or was written by a newer trailguard.
        #[arg(long)]
        reset_state: bool,
    },
    /// Check a configuration file; exit 0 if valid, 64 listing every problem.
    Validate {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Evaluate the rules over recorded CloudTrail events (files, directories, gzip, `-` for
    /// stdin); calls no AWS API. One JSON finding per line on stdout, a summary on stderr.
    /// Exit 0, or 1 if some input was unreadable (after scanning everything readable).
    Scan {
        /// A config file; only its rules are used. Without it, the built-in rules.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Audit the account's KMS keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List or test the effective rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
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

/// Prints a configuration error (every problem) and gives the exit status for it.
fn config_error(name: &str, e: &config::ConfigError) -> ExitCode {
    eprint!("{name}: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    // The worker's decision and remediation futures nest deeply; 2 MiB (tokio's default) is
    // not enough for them in a debug build. Stack is reserved, not resident.
    b.thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Scan { config, paths } => scan::run(config.as_deref(), &paths),
        Command::Keys {
            command: KeysCommand::Audit(args),
        } => keys::audit(args),
        Command::Rules { command } => match command {
            RulesCommand::List { config } => rules::list(config.as_deref()),
            RulesCommand::Test { config } => rules::test(config.as_deref()),
        },
        Command::Health { listen, live } => {
            let path = if live { "/healthz" } else { "/readyz" };
            match runtime(false).block_on(crate::telemetry::probe(listen, path)) {
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
            Err(e) => config_error(&config.display().to_string(), &e),
        },
        Command::Run {
            config,
            dry_run,
            reset_state,
        } => match config::load(&config) {
            Ok(mut cfg) => {
                cfg.dry_run |= dry_run;
                runtime(true).block_on(run::run(cfg, reset_state))
            }
            Err(e) => config_error(&config.display().to_string(), &e),
        },
    }
}
