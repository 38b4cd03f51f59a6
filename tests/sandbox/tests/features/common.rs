//! Helpers shared by the feature tests: a sandbox, SDK configs, the control API, polling.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;
use aws_smithy_types::retry::RetryConfig;
use serde_json::Value;
use trailguard_sandbox::Sandbox;

pub const ACCOUNT: &str = "123456789012";
pub const ADMIN: &str = "AKIAADMIN";

pub async fn sandbox() -> Sandbox {
    Sandbox::start_default()
        .await
        .expect("sandbox starts (run tests/setup.sh first)")
}

pub async fn sdk(sb: &Sandbox, access_key: &str, region: &str) -> SdkConfig {
    sdk_with(
        sb,
        Credentials::new(access_key, "secret", None, None, "test"),
        region,
    )
    .await
}

pub async fn sdk_with(sb: &Sandbox, creds: Credentials, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(region.to_owned()))
        .credentials_provider(creds)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// A raw HTTP/1.1 exchange: (status, headers in lower case, body). An empty status (0) means
/// the connection closed without an answer.
pub async fn raw(
    sb: &Sandbox,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sb.addr()).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        sb.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    if out.len() < 12 {
        return (0, Vec::new(), out);
    }
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

pub async fn control(sb: &Sandbox, method: &str, path: &str, body: Value) -> Value {
    let (status, _, text) = raw(
        sb,
        method,
        path,
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "control {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Polls `f` until it gives a value or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = queue_arn(sqs, &url).await;
    (url, arn)
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone()
}

/// Receives (and deletes) every message available now, long-polling briefly for the first.
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let msgs = got.messages.unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            out.push(serde_json::from_str(m.body().unwrap()).unwrap_or(Value::Null));
        }
    }
}

/// Waits until the queue yields a message that satisfies `want`, within `limit`; messages
/// that do not are deleted and returned alongside.
pub async fn wait_for(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> (Option<Value>, Vec<Value>) {
    let deadline = Instant::now() + limit;
    let mut others = Vec::new();
    loop {
        for m in drain(sqs, url).await {
            if want(&m) {
                return (Some(m), others);
            }
            others.push(m);
        }
        if Instant::now() > deadline {
            return (None, others);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
