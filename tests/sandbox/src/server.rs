//! The listener: routes each request to the control API, the CloudTrail emulator, the KMS and
//! IAM layers over moto, or straight to moto.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::record::{self, Call, Caller};
use crate::state::{FaultAction, Shared};
use crate::wire::{self, Body, Scope, Service};

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), peer, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// One AWS request, read in full.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub parts: Parts,
    pub body: Bytes,
    pub scope: Scope,
    pub service: Service,
    pub operation: String,
    pub peer: SocketAddr,
}

impl Ctx {
    pub fn region(&self) -> &str {
        if self.scope.region.is_empty() {
            "us-east-1"
        } else {
            &self.scope.region
        }
    }

    pub fn caller(&self) -> Caller {
        let ip = self.shared.lock().settings.source_ip.clone();
        Caller {
            access_key_id: self.scope.access_key_id.clone(),
            source_ip: ip.unwrap_or_else(|| self.peer.ip().to_string()),
            user_agent: wire::header_str(&self.parts.headers, "user-agent").map(str::to_owned),
        }
    }

    /// The account of the signing identity.
    pub fn account(&self) -> String {
        let st = self.shared.lock();
        record::caller_account(
            st.identities.get(&self.scope.access_key_id),
            &self.shared.default_account,
        )
        .to_owned()
    }

    pub fn error(&self, status: u16, code: &str, message: &str) -> Response<Body> {
        wire::error(self.service, &self.parts.headers, status, code, message)
    }

    /// Writes one call into event history, as CloudTrail would.
    pub fn record(&self, call: Call<'_>) {
        let caller = self.caller();
        let mut st = self.shared.lock();
        let identity = record::user_identity(
            st.identities.get(&caller.access_key_id),
            &caller.access_key_id,
            &self.shared.default_account,
            call.time,
        );
        let rec = record::build(call, identity, &caller);
        let delay = chrono::Duration::milliseconds((st.settings.visibility_delay_seconds * 1000.0) as i64);
        let now = self.shared.now();
        let stored = st.events.insert(&rec, &self.shared.default_account, now, delay);
        drop(st);
        self.shared.offer(&[stored]);
    }

    /// Sends the request on to moto as it came.
    pub async fn forward(&self) -> Result<Upstream, String> {
        forward(&self.shared.moto_url, &self.parts, self.body.clone()).await
    }

    /// Sends the request on to moto and answers with moto's answer.
    pub async fn pass(&self) -> Response<Body> {
        match self.forward().await {
            Ok(up) => up.into_response(),
            Err(e) => self.error(502, "InternalFailure", &e),
        }
    }
}

/// A response from moto.
#[derive(Debug)]
pub struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Upstream {
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = self.status;
        for (k, v) in &self.headers {
            if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                resp.headers_mut().append(k.clone(), v.clone());
            }
        }
        resp
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

pub async fn forward(base: &str, parts: &Parts, body: Bytes) -> Result<Upstream, String> {
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{base}{pq}"));
    wire::forward_headers(&parts.headers, req.headers_mut().expect("builder is valid"));
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = client()
        .request(req)
        .await
        .map_err(|e| format!("moto unreachable: {e}"))?;
    let (p, b) = resp.into_parts();
    let body = b.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Upstream {
        status: p.status,
        headers: p.headers,
        body,
    })
}

/// A plain GET, used to wait for moto.
pub(crate) async fn get_text(url: &str) -> Result<String, String> {
    let req = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = client().request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn operation(service: Service, parts: &Parts, body: &[u8]) -> String {
    if let Some(op) = wire::json_operation(&parts.headers) {
        return op;
    }
    if service == Service::Account {
        return crate::account::operation(parts.uri.path());
    }
    let from_query = parts
        .uri
        .query()
        .map(|q| wire::form(q.as_bytes()))
        .and_then(|f| wire::form_get(&f, "Action").map(str::to_owned));
    from_query
        .or_else(|| wire::form_get(&wire::form(body), "Action").map(str::to_owned))
        .unwrap_or_else(|| {
            if service == Service::Other {
                parts.uri.path().to_owned()
            } else {
                "Unknown".into()
            }
        })
}

/// The connection is dropped without an answer (a hung request whose fault was cleared).
#[derive(Debug)]
pub struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request held by a hang fault, closed without an answer")
    }
}

impl std::error::Error for HangUp {}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, HangUp> {
    let mut resp = route(shared.clone(), peer, req).await?;
    // Every answer carries the AWS side's clock, moto's included.
    if let Ok(v) = http::HeaderValue::from_str(&wire::http_date(shared.now())) {
        resp.headers_mut().insert(http::header::DATE, v);
    }
    Ok(resp)
}

/// Holds a request while a hang fault covers it.
async fn hang(shared: &Shared, service: Service, operation: &str) {
    loop {
        let notified = shared.faults_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !shared.still_hangs(service, operation) {
            return;
        }
        notified.await;
    }
}

async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, HangUp> {
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(wire::control_json(
                400,
                &serde_json::json!({ "error": e.to_string() }),
            ));
        }
    };
    if parts.uri.path().starts_with("/_sandbox") {
        return Ok(crate::control::handle(&shared, &parts, body).await);
    }
    let scope = wire::scope(&parts.headers);
    let service = wire::service(&parts.headers, &scope);
    if service == Service::S3 {
        crate::s3::to_path_style(&mut parts);
    }
    let operation = if service == Service::S3 {
        crate::s3::operation(&parts)
    } else {
        operation(service, &parts, &body)
    };
    let mut lost = FaultAction::Pass;
    if service != Service::Other {
        shared.count(service, &operation);
        if !scope.access_key_id.is_empty() {
            crate::iam::mark_used(&shared, &scope.access_key_id, service.name(), &scope.region);
        }
        let (latency, action) = shared.fault_for(service, &operation);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match &action {
            FaultAction::Fail(status, code) => {
                let msg = format!("Injected fault in {} {operation}", service.name());
                return Ok(wire::error(service, &parts.headers, *status, code, &msg));
            }
            FaultAction::Hang => {
                hang(&shared, service, &operation).await;
                return Err(HangUp);
            }
            _ => {}
        }
        lost = action;
    }
    let ctx = Ctx {
        shared,
        parts,
        body,
        scope,
        service,
        operation,
        peer,
    };
    let resp = match service {
        Service::CloudTrail => cloudtrail(&ctx),
        Service::Kms => crate::kms::handle(&ctx).await,
        Service::Iam => crate::iam::handle(&ctx).await,
        Service::Sns => crate::sns::handle(&ctx).await,
        Service::Sts => crate::sts::handle(&ctx).await,
        Service::S3 => crate::s3::handle(&ctx).await,
        Service::Sqs => crate::sqs::handle(&ctx).await,
        Service::Organizations => crate::organizations::handle(&ctx).await,
        Service::Events => crate::eventbridge::handle_api(&ctx).await,
        Service::DynamoDb => crate::dynamodb::handle(&ctx).await,
        Service::Account => crate::account::handle(&ctx),
        Service::Other => ctx.pass().await,
    };
    // A fault `after` the call: it was served, and its answer is lost.
    match lost {
        FaultAction::FailAfter(status, code) => {
            let msg = format!(
                "Injected fault in {} {} after it was served",
                ctx.service.name(),
                ctx.operation
            );
            Ok(wire::error(ctx.service, &ctx.parts.headers, status, &code, &msg))
        }
        FaultAction::HangAfter => {
            hang(&ctx.shared, ctx.service, &ctx.operation).await;
            Err(HangUp)
        }
        _ => Ok(resp),
    }
}

fn cloudtrail(ctx: &Ctx) -> Response<Body> {
    if ctx.operation != "LookupEvents" {
        return ctx.error(
            400,
            "UnknownOperationException",
            &format!("{} is not supported by the sandbox", ctx.operation),
        );
    }
    let account = ctx.account();
    let region = ctx.region().to_owned();
    let now = ctx.shared.now();
    let body: Value = match serde_json::from_slice(&ctx.body) {
        Ok(v) => v,
        Err(e) => return ctx.error(400, "SerializationException", &e.to_string()),
    };
    let mut st = ctx.shared.lock();
    if throttled(&mut st, &account, &region, now) {
        return ctx.error(400, "ThrottlingException", "Rate exceeded");
    }
    match crate::cloudtrail::lookup(&st.events, &account, &region, &body, now) {
        Ok(v) => wire::json_ok(&v),
        Err((code, msg)) => ctx.error(400, code, &msg),
    }
}

/// A token bucket per account and region, `lookup_events_rate` tokens a second, as deep as one
/// second's worth; plus a random throttle a test can dial in.
fn throttled(
    st: &mut crate::state::State,
    account: &str,
    region: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    if st.settings.throttle_probability > 0.0 && rand::random::<f64>() < st.settings.throttle_probability {
        return true;
    }
    let rate = st.settings.lookup_events_rate;
    if rate <= 0.0 {
        return false;
    }
    let cap = rate.max(1.0);
    let bucket = st
        .lookup_buckets
        .entry((account.to_owned(), region.to_owned()))
        .or_insert((cap, now));
    let elapsed = (now - bucket.1).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    bucket.0 = (bucket.0 + elapsed.max(0.0) * rate).min(cap);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        false
    } else {
        true
    }
}

/// Shorthand for a call record with the common fields filled in.
pub fn call<'a>(ctx: &'a Ctx, event_source: &'a str, region: &'a str, account: &'a str) -> Call<'a> {
    Call {
        event_source,
        event_name: &ctx.operation,
        region,
        account,
        time: ctx.shared.now(),
        request_parameters: Value::Null,
        response_elements: Value::Null,
        error: None,
        resources: Vec::new(),
        read_only: false,
        request_id: wire::request_id(),
    }
}
