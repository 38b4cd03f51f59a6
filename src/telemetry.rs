//! Logs, metrics and the health endpoints. Metric names live here and nowhere else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LogFormat;

/// Metric names: `trailguard_<subsystem>_<noun>_<unit>[_total]`.
pub mod names {
    pub const BUILD_INFO: &str = "trailguard_build_info";
    pub const POLLS: &str = "trailguard_cloudtrail_polls_total";
    pub const LOOKUP_REQUESTS: &str = "trailguard_cloudtrail_requests_total";
    pub const EVENTS_READ: &str = "trailguard_cloudtrail_events_total";
    pub const EVENTS_DUPLICATE: &str = "trailguard_cloudtrail_duplicate_events_total";
    pub const EVENTS_MALFORMED: &str = "trailguard_cloudtrail_malformed_events_total";
    pub const LAG: &str = "trailguard_cloudtrail_lag_seconds";
    pub const LAST_SUCCESS: &str = "trailguard_cloudtrail_last_success_timestamp_seconds";
    pub const FINDINGS: &str = "trailguard_findings_total";
    pub const REMEDIATIONS: &str = "trailguard_remediations_total";
    pub const NOTIFICATIONS: &str = "trailguard_notifications_total";
    pub const NOTIFICATIONS_PENDING: &str = "trailguard_notifications_pending";
    pub const AWS_ERRORS: &str = "trailguard_aws_errors_total";
    pub const IAM_SWEEPS: &str = "trailguard_iam_sweeps_total";
    pub const IAM_LAST_SWEEP: &str = "trailguard_iam_last_sweep_timestamp_seconds";
    pub const IAM_KEYS_SEEN: &str = "trailguard_iam_access_keys";
}

/// Installs the Prometheus recorder and describes every metric.
pub fn install_metrics() -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the metrics recorder is installed once");
    use names::*;
    describe_gauge!(BUILD_INFO, "trailguard build information (value is always 1)");
    describe_counter!(
        POLLS,
        "CloudTrail poll cycles by region and outcome (ok, throttled, failed)"
    );
    describe_counter!(LOOKUP_REQUESTS, "LookupEvents requests sent, by region");
    describe_counter!(EVENTS_READ, "New CloudTrail events read, by region");
    describe_counter!(
        EVENTS_DUPLICATE,
        "CloudTrail events read again and skipped as already handled, by region"
    );
    describe_counter!(
        EVENTS_MALFORMED,
        "CloudTrail events that could not be parsed, by region"
    );
    describe_gauge!(
        LAG,
        "Seconds between now and the end of the last completely read poll window, by region"
    );
    describe_gauge!(LAST_SUCCESS, "Unix time of the last successful poll, by region");
    describe_counter!(FINDINGS, "Rule matches, by rule id");
    describe_counter!(
        REMEDIATIONS,
        "Remediation actions by action and outcome (applied, not_needed, dry_run, not_actionable, failed)"
    );
    describe_counter!(
        NOTIFICATIONS,
        "Notifications by outcome (sent, failed, suppressed, logged)"
    );
    describe_gauge!(NOTIFICATIONS_PENDING, "Notifications waiting in the outbox");
    describe_counter!(AWS_ERRORS, "AWS API errors by service and error code");
    describe_counter!(IAM_SWEEPS, "IAM access-key sweeps by outcome (ok, failed)");
    describe_gauge!(
        IAM_LAST_SWEEP,
        "Unix time of the last complete IAM access-key sweep"
    );
    describe_gauge!(IAM_KEYS_SEEN, "IAM access keys seen by the last sweep");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    handle
}

pub fn aws_error(service: &'static str, code: &str) {
    counter!(names::AWS_ERRORS, "service" => service, "code" => code.to_owned()).increment(1);
}

/// Sets up tracing to stderr (journald and awslogs both take it from there).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Per region: when polling was last attempted, and when it last succeeded.
type PollTimes = HashMap<String, (Option<Instant>, Option<Instant>)>;

/// What `/healthz` and `/readyz` report: per region, when polling was last attempted and last
/// succeeded.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    poll_interval: Duration,
    regions: Mutex<PollTimes>,
    notified: std::sync::atomic::AtomicBool,
}

impl Health {
    pub fn new(regions: &[String], poll_interval: Duration) -> Arc<Self> {
        let map = regions.iter().map(|r| (r.clone(), (None, None))).collect();
        Arc::new(Self {
            started: Instant::now(),
            poll_interval,
            regions: Mutex::new(map),
            notified: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PollTimes> {
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A poll loop ran: also the systemd watchdog ping (a no-op without `NOTIFY_SOCKET`).
    pub fn attempted(&self, region: &str) {
        self.lock().entry(region.to_owned()).or_default().0 = Some(Instant::now());
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }

    /// A poll succeeded; once every poller has succeeded, tells systemd the service is ready.
    pub fn succeeded(&self, region: &str) {
        let now = Instant::now();
        *self.lock().entry(region.to_owned()).or_default() = (Some(now), Some(now));
        if self.ready().is_ok() && !self.notified.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            tracing::info!("Ready: every poller has completed a poll.");
        }
    }

    /// How stale a poll may be before the daemon is unhealthy or not ready: three intervals,
    /// and never less than a minute (a throttled poll backs off).
    fn limit(&self) -> Duration {
        (self.poll_interval * 3).max(Duration::from_secs(60))
    }

    /// Alive and polling: every region's loop has run recently (or we just started).
    pub fn healthy(&self) -> Result<(), String> {
        let limit = self.limit();
        if self.started.elapsed() < limit {
            return Ok(());
        }
        for (region, (attempt, _)) in self.lock().iter() {
            if attempt.is_none_or(|t| t.elapsed() > limit) {
                return Err(format!(
                    "{region}: no poll attempted for over {}s",
                    limit.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// Ready: every region has had a successful poll recently.
    pub fn ready(&self) -> Result<(), String> {
        let limit = self.limit();
        for (region, (_, ok)) in self.lock().iter() {
            match ok {
                None => return Err(format!("{region}: no successful poll yet")),
                Some(t) if t.elapsed() > limit => {
                    return Err(format!(
                        "{region}: last successful poll {}s ago",
                        t.elapsed().as_secs()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| respond(req, metrics.clone(), health.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    metrics: PrometheusHandle,
    health: Arc<Health>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String, ctype: &str| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    let plain = "text/plain; charset=utf-8";
    Ok(match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => match health.healthy() {
            Ok(()) => text(StatusCode::OK, "ok\n".into(), plain),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"), plain),
        },
        "/readyz" => match health.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into(), plain),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"), plain),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), plain),
    })
}

/// Binds the telemetry listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// `trailguard health`: asks a running daemon's `/readyz`; Ok(()) on HTTP 200.
pub async fn probe(addr: SocketAddr, path: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A daemon listening on every address answers on loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within 3s"))??;
    let status = out.get(9..12).unwrap_or("???");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    if status == "200" {
        Ok(())
    } else {
        Err(format!("{path} answered {status}: {body}"))
    }
}
