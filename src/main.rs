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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan { config, paths } => {
            let rules = match config::load_rules(config.as_deref()) {
                Ok(r) => r,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let policy = match config::load_policy(config.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let started = std::time::Instant::now();
            let mut scanner = trailguard::scan::Scanner::new(&rules, Some(&policy));
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            let result = scanner
                .scan_paths(&paths, &mut out)
                .and_then(|_| std::io::Write::flush(&mut out));
            if let Err(e) = result
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                eprintln!("scan: {e}");
                return ExitCode::FAILURE;
            }
            let stats = scanner.stats();
            for u in &stats.unreadable {
                eprintln!("unreadable: {u}");
            }
            eprintln!("{}", stats.summary(started.elapsed().as_secs_f64()));
            if stats.unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Rules { command } => {
            let config = match &command {
                RulesCommand::List { config } | RulesCommand::Test { config } => config.clone(),
            };
            let rules = match config::load_rules(config.as_deref()) {
                Ok(r) => r,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match command {
                RulesCommand::List { .. } => {
                    for r in &rules.rules {
                        let actions: Vec<&str> = r.actions.iter().map(|a| a.as_str()).collect();
                        println!(
                            "{}\t{}\t{}\t{}\t{} test(s)\t{}",
                            r.id,
                            r.severity.as_str(),
                            actions.join(","),
                            r.source,
                            r.tests.len(),
                            r.pattern
                        );
                    }
                    for (id, by) in &rules.disabled {
                        println!("{id}\tdisabled\t-\t{by}\t-\t-");
                    }
                    println!(
                        "iam_access_key_unrotated\tmedium\tiam.action\tbuilt-in (IAM sweep)\t-\tactive key older than iam.max_key_age"
                    );
                    println!(
                        "iam_access_key_unused\tmedium\tiam.action\tbuilt-in (IAM sweep)\t-\tactive key unused for iam.max_unused_age"
                    );
                    ExitCode::SUCCESS
                }
                RulesCommand::Test { .. } => {
                    let results = rules.run_tests();
                    let failed = results.iter().filter(|r| r.2.is_some()).count();
                    for (rule, case, failure) in &results {
                        match failure {
                            None => println!("PASS {rule}: {case}"),
                            Some(why) => println!("FAIL {rule}: {case}: {why}"),
                        }
                    }
                    let untested: Vec<&str> = rules
                        .rules
                        .iter()
                        .filter(|r| r.tests.is_empty())
                        .map(|r| r.id.as_str())
                        .collect();
                    if !untested.is_empty() {
                        println!("note: rules without test cases: {}", untested.join(", "));
                    }
                    println!("{} passed, {} failed", results.len() - failed, failed);
                    if failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
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
