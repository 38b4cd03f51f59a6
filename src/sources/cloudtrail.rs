//! Reading CloudTrail event history with `LookupEvents`, filtered on one `EventSource`
//! (`kms.amazonaws.com` per region; `iam.amazonaws.com` in us-east-1), every page of a [`crate::cursor::Window`].
//! Which windows to read, and why, is in [`crate::cursor`].
//!
//! Requests are paced to `cloudtrail.max_requests_per_second` (default 1/s, half the API's
//! quota of 2/s per account and region, leaving room for people and other tools). A
//! `ThrottlingException` or a 5xx backs off exponentially (1 s doubling, capped at 30 s, with
//! jitter) and retries the same page; after 6 failures the poll fails and the next poll starts
//! over from the same cursor, so nothing is skipped.

use std::time::Duration;

use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime as SmithyTime;
use metrics::counter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cursor::Window;
use crate::telemetry::{self, names};

const MAX_TRIES: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("LookupEvents throttled {tries} times in a row in {region}")]
    Throttled { region: String, tries: u32 },
    #[error("LookupEvents failed in {region}: {message}")]
    Lookup { region: String, message: String },
    #[error("shutting down")]
    Shutdown,
}

/// Whether an error is worth retrying: a pure decision over the error's code and status.
pub fn retryable(code: Option<&str>, status: Option<u16>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "RequestLimitExceeded"
                | "ServiceUnavailable"
                | "InternalFailure"
        )
    ) || status.is_some_and(|s| s >= 500)
        || (code.is_none() && status.is_none())
}

pub struct CloudTrailSource {
    client: Client,
    region: String,
    event_source: String,
    gap: Duration,
    last_request: Option<Instant>,
}

impl CloudTrailSource {
    pub fn new(
        base: &aws_config::SdkConfig,
        region: &str,
        event_source: &str,
        max_requests_per_second: f64,
    ) -> Self {
        let conf = aws_sdk_cloudtrail::config::Builder::from(base)
            .region(aws_sdk_cloudtrail::config::Region::new(region.to_owned()))
            // NOTE: retries are ours: a retried throttled call spends quota, so pacing and
            // backoff live in one place.
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(conf),
            region: region.to_owned(),
            event_source: event_source.to_owned(),
            gap: Duration::from_secs_f64(1.0 / max_requests_per_second),
            last_request: None,
        }
    }

    async fn pace(&mut self) {
        if let Some(last) = self.last_request {
            tokio::time::sleep_until(last + self.gap).await;
        }
        self.last_request = Some(Instant::now());
    }

    /// Reads every page of `window`; returns each event's `CloudTrailEvent` JSON text.
    pub async fn read(
        &mut self,
        window: &Window,
        shutdown: &CancellationToken,
    ) -> Result<Vec<String>, PollError> {
        let attr = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::EventSource)
            .attribute_value(&self.event_source)
            .build()
            .expect("attribute key and value are set");
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let mut tries = 0;
            let page = loop {
                self.pace().await;
                counter!(names::LOOKUP_REQUESTS, "region" => self.region.clone()).increment(1);
                let sent = self
                    .client
                    .lookup_events()
                    .lookup_attributes(attr.clone())
                    .start_time(SmithyTime::from_millis(window.start.timestamp_millis()))
                    .end_time(SmithyTime::from_millis(window.end.timestamp_millis()))
                    .max_results(50)
                    .set_next_token(token.clone())
                    .send()
                    .await;
                match sent {
                    Ok(page) => break page,
                    Err(e) => {
                        let code = e.code().map(str::to_owned);
                        let status = e.raw_response().map(|r| r.status().as_u16());
                        telemetry::aws_error("cloudtrail", code.as_deref().unwrap_or("transport"));
                        let message = match e.as_service_error() {
                            Some(s) => format!(
                                "{}: {}",
                                s.code().unwrap_or("Unknown"),
                                s.message().unwrap_or_default()
                            ),
                            None => e.to_string(),
                        };
                        tries += 1;
                        if !retryable(code.as_deref(), status) {
                            return Err(PollError::Lookup {
                                region: self.region.clone(),
                                message,
                            });
                        }
                        if tries >= MAX_TRIES {
                            return Err(if code.as_deref() == Some("ThrottlingException") {
                                PollError::Throttled {
                                    region: self.region.clone(),
                                    tries,
                                }
                            } else {
                                PollError::Lookup {
                                    region: self.region.clone(),
                                    message,
                                }
                            });
                        }
                        let base = Duration::from_secs(1 << (tries - 1).min(5)).min(Duration::from_secs(30));
                        let jitter = Duration::from_millis(rand::random::<u64>() % 250);
                        tracing::warn!(region = %self.region, tries, error = %message, backoff_ms = (base + jitter).as_millis() as u64, "LookupEvents failed; backing off.");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Err(PollError::Shutdown),
                            _ = tokio::time::sleep(base + jitter) => {}
                        }
                    }
                }
            };
            out.extend(
                page.events()
                    .iter()
                    .filter_map(|e| e.cloud_trail_event().map(str::to_owned)),
            );
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
            if shutdown.is_cancelled() {
                return Err(PollError::Shutdown);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retryable;

    #[test]
    fn throttling_and_server_errors_are_retried_client_errors_are_not() {
        assert!(retryable(Some("ThrottlingException"), Some(400)));
        assert!(retryable(None, Some(503)));
        assert!(retryable(None, None), "transport errors");
        assert!(!retryable(Some("InvalidNextTokenException"), Some(400)));
        assert!(!retryable(Some("AccessDeniedException"), Some(400)));
    }
}
