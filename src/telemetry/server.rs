//! The telemetry listener: `/metrics`, `/healthz`, `/readyz`; and the client side of
//! `trailguard health`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::Health;

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
