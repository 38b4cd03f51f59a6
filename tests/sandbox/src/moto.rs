//! The moto server the sandbox forwards KMS, IAM, SNS, SQS and STS to.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Where the sandbox's moto comes from.
#[derive(Debug, Clone)]
pub enum MotoSource {
    /// Start `moto.server` from this venv on a free loopback port, and stop it with the sandbox.
    Venv(PathBuf),
    /// Use a moto server that is already running at this URL.
    External(String),
}

pub(crate) struct Moto {
    url: String,
    _child: Option<Child>,
}

// NOTE: moto runs under a tiny wrapper that exits when its stdin closes, so the server goes away
// with the sandbox even when the parent dies without running destructors (a killed test).
const WRAPPER: &str = r#"
import os, sys, threading
def _watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
"#;

impl Moto {
    pub(crate) async fn start(source: &MotoSource) -> anyhow::Result<Self> {
        match source {
            MotoSource::External(url) => {
                wait_ready(url, Duration::from_secs(10)).await?;
                Ok(Self {
                    url: url.trim_end_matches('/').to_owned(),
                    _child: None,
                })
            }
            MotoSource::Venv(venv) => {
                let python = venv.join("bin/python");
                if !python.exists() {
                    bail!(
                        "moto venv not found at {} (run tests/setup.sh, or set TRAILGUARD_VENV)",
                        venv.display()
                    );
                }
                let port = free_port()?;
                let child = Command::new(&python)
                    .arg("-c")
                    .arg(WRAPPER)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting moto from {}", python.display()))?;
                let url = format!("http://127.0.0.1:{port}");
                wait_ready(&url, Duration::from_secs(30)).await?;
                Ok(Self {
                    url,
                    _child: Some(child),
                })
            }
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn wait_ready(url: &str, limit: Duration) -> anyhow::Result<()> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            // The port accepts before Flask is ready to answer; ask for real.
            if crate::server::get_text(&format!("{url}/moto-api/data.json"))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("moto at {url} did not become ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
