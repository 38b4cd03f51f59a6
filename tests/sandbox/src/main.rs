//! `trailguard-sandbox`: a local AWS endpoint for trailguard (see the crate README).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use trailguard_sandbox::{MotoSource, Options, Sandbox};

#[derive(Parser)]
#[command(
    version,
    about = "Local AWS endpoint: CloudTrail event history, KMS key states and IAM backdating over moto"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// The venv holding moto (default: the project's .venv, or TRAILGUARD_VENV).
    #[arg(long, conflicts_with = "moto_url")]
    moto_venv: Option<PathBuf>,
    /// Use an already running moto server instead of starting one.
    #[arg(long)]
    moto_url: Option<String>,
    /// Account id for callers with no registered identity.
    #[arg(long, default_value = trailguard_sandbox::DEFAULT_ACCOUNT)]
    account: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let moto = match (cli.moto_url, cli.moto_venv) {
        (Some(url), _) => MotoSource::External(url),
        (None, Some(venv)) => MotoSource::Venv(venv),
        (None, None) => MotoSource::Venv(trailguard_sandbox::default_venv()),
    };
    let sandbox = Sandbox::start(Options {
        listen: cli.listen,
        moto,
        default_account: cli.account,
    })
    .await?;
    eprintln!(
        "trailguard-sandbox: listening on {} (AWS_ENDPOINT_URL={})",
        sandbox.addr(),
        sandbox.endpoint_url()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    eprintln!("trailguard-sandbox: stopping");
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
