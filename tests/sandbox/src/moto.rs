//! The moto server the sandbox forwards to, and the sandbox's own calls to it (reading state
//! before deciding what AWS would do, delivering events): never counted, never recorded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Request;
use http::request::Parts;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::server::{Upstream, forward};
use crate::state::Shared;
use crate::wire;

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
//
// The wrapper also makes moto 5.2.1's SQS model (tests/requirements.txt pins it; the wrapper
// exits with status 3 on another version, and `start` says so) fast and atomic, as SQS is:
// - A cheap clock. The model asks "now" through `unix_time()` (a `datetime` subtraction, ~10 us)
//   for every message of a queue on every send, receive and attribute read, so each call costs
//   O(depth) clock reads: 52 ms a message sent into a 1,000-deep queue, minutes to fill or drain
//   10,000. The replacement returns the same value (seconds since the epoch) from `time.time()`
//   when called without an argument, as the model always calls it; 200 sends at depth 1,000
//   take 0.18 s instead of 10.3 s.
// - The retention check of every received message computes the queue's whole attribute map
//   (each attribute a scan of the queue) to read one number; it reads that number directly.
// - One lock per queue around every change to its messages. moto rebuilds or edits the message
//   list outside the queue's lock in delete, receive (marking received, moving to the DLQ),
//   change visibility and purge, so a delete beside a send lost the sent message or brought the
//   deleted one back (DeleteMessageBatch answered success while the message stayed in flight:
//   `scripts/bench-sources.sh s3` saw 2 of 1,001), and receives beside each other delivered one
//   message twice or failed with a 500 ("Set changed size during iteration"). They now hold the
//   lock that adding a message takes (a re-entrant `Condition`, released while a long poll
//   waits). Lock order is a queue, then its DLQ; no queue here redrives into its own source.
const WRAPPER: &str = r#"
import os, sys, threading, time
def _watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
import moto
import moto.sqs.models as _sqs
if moto.__version__ != "5.2.1":
    sys.exit(3)
_ms, _s = _sqs.unix_time_millis, _sqs.unix_time
_sqs.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else _ms(dt)
_sqs.unix_time = lambda dt=None: time.time() if dt is None else _s(dt)
_Backend = _sqs.SQSBackend
_Backend.is_message_valid_based_on_retention_period = lambda self, queue_name, message: (
    self.get_queue(queue_name).message_retention_period + message.sent_timestamp / 1000 > time.time())
def _locked(method):
    def run(self, *args, **kwargs):
        with self._messages_lock:
            return method(self, *args, **kwargs)
    return run
def _queue_locked(method):
    def run(self, queue_name, *args, **kwargs):
        with self.get_queue(queue_name)._messages_lock:
            return method(self, queue_name, *args, **kwargs)
    return run
_sqs.Queue.delete_message = _locked(_sqs.Queue.delete_message)
for _name in ("receive_message", "change_message_visibility", "purge_queue"):
    setattr(_Backend, _name, _queue_locked(getattr(_Backend, _name)))
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
                let mut child = Command::new(&python)
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
                if let Err(e) = wait_ready(&url, Duration::from_secs(30)).await {
                    match child.try_wait() {
                        Ok(Some(status)) if status.code() == Some(3) => bail!(
                            "moto in {} is not 5.2.1, the version whose SQS model the sandbox patches \
                             (tests/requirements.txt; WRAPPER in tests/sandbox/src/moto.rs)",
                            venv.display()
                        ),
                        Ok(Some(status)) => bail!("moto exited ({status}) before it was ready: {e}"),
                        _ => return Err(e),
                    }
                }
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

/// Sends a JSON-protocol call to moto directly, outside any test's view (not counted, not
/// recorded): used to read key state before deciding what AWS would do.
pub async fn json(shared: &Shared, template: &Parts, target: &str, body: &Value) -> Result<Upstream, String> {
    let mut parts = template.clone();
    parts.method = http::Method::POST;
    parts.uri = "/".parse().expect("static uri");
    parts
        .headers
        .insert("x-amz-target", target.parse().map_err(|_| "bad target")?);
    parts.headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().expect("static"),
    );
    forward(&shared.moto_url, &parts, Bytes::from(body.to_string())).await
}

/// Sends a query-protocol call to moto directly (IAM), outside any test's view.
pub async fn query(shared: &Shared, template: &Parts, params: &[(&str, &str)]) -> Result<Upstream, String> {
    let mut parts = template.clone();
    parts.method = http::Method::POST;
    parts.uri = "/".parse().expect("static uri");
    parts.headers.remove("x-amz-target");
    parts.headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("static"),
    );
    let body = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                wire::percent_encode(k, false),
                wire::percent_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    forward(&shared.moto_url, &parts, Bytes::from(body)).await
}

/// Who the sandbox acts as when it calls moto itself: an account, a region and the service the
/// request is signed for.
#[derive(Debug, Clone, Copy)]
pub struct As<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// A request of the sandbox's own to moto (not counted, not recorded). `path` includes any
/// query.
pub async fn call(
    shared: &Shared,
    who: As<'_>,
    method: http::Method,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Upstream, String> {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = path.parse().map_err(|e| format!("bad path {path}: {e}"))?;
    parts.headers = wire::internal_headers(who.account, who.region, who.service);
    for (k, v) in extra_headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_str(v).map_err(|e| e.to_string())?;
        parts.headers.insert(name, value);
    }
    forward(&shared.moto_url, &parts, body).await
}

/// A JSON-protocol call of the sandbox's own to moto (`X-Amz-Target: target`).
pub async fn json_as(
    shared: &Shared,
    account: &str,
    region: &str,
    service: &str,
    target: &str,
    body: &Value,
) -> Result<Upstream, String> {
    let content_type = if service == "sqs" || service == "dynamodb" {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    };
    call(
        shared,
        As {
            account,
            region,
            service,
        },
        http::Method::POST,
        "/",
        &[("x-amz-target", target), ("content-type", content_type)],
        Bytes::from(body.to_string()),
    )
    .await
}

/// A query-protocol call of the sandbox's own to moto.
pub async fn query_as(
    shared: &Shared,
    account: &str,
    region: &str,
    service: &str,
    params: &[(&str, &str)],
) -> Result<Upstream, String> {
    let body = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                wire::percent_encode(k, false),
                wire::percent_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    call(
        shared,
        As {
            account,
            region,
            service,
        },
        http::Method::POST,
        "/",
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(body),
    )
    .await
}
