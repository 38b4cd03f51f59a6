//! The one retry policy for AWS calls: exponential backoff with jitter (`backon`), retrying only
//! what [`super::error::classify`] calls retryable, within an overall deadline per operation.
//!
//! The SDK's own retries are turned off on every client ([`super::Aws`]), so a throttled call
//! is retried here, once, through the same rate limiter: pacing and backoff live in one place.
//! Every failed attempt is counted in `trailguard_aws_errors_total`.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::error::{AwsError, ErrorType, Service};
use crate::telemetry;

/// How one kind of call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: usize,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The whole call, retries and backoff included, gives up after this.
    pub deadline: Duration,
}

impl RetryPolicy {
    /// KMS remediation and lookups: a handful of quick attempts.
    pub const ACTION: RetryPolicy = RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
    };

    /// `LookupEvents` pages: throttling is expected under load, back off up to 30 s.
    pub const LOOKUP: RetryPolicy = RetryPolicy {
        attempts: 6,
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        deadline: Duration::from_secs(180),
    };

    /// One attempt: the caller has its own schedule (the notification outbox).
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        first_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        deadline: Duration::from_secs(30),
    };
}

/// Runs `call` (one attempt of `service` `operation`) under `policy`, retrying what is
/// [`AwsError::retryable`].
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    service: Service,
    operation: &'static str,
    call: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_if(policy, service, operation, AwsError::retryable, call).await
}

/// As [`retry`], retrying the errors `when` accepts (e.g. KMS's eventual consistency right
/// after a state change).
pub async fn retry_if<T, F, Fut>(
    policy: &RetryPolicy,
    service: Service,
    operation: &'static str,
    when: fn(&AwsError) -> bool,
    mut call: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let attempt = || {
        let fut = call();
        async move {
            let r = fut.await;
            if let Err(e) = &r {
                telemetry::aws_error(e);
            }
            r
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.first_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.attempts.saturating_sub(1))
        .with_jitter();
    let retried = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(when)
        .notify(|e: &AwsError, wait: Duration| {
            tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "AWS call failed; retrying.");
        });
    match tokio::time::timeout(policy.deadline, retried).await {
        Ok(r) => r,
        Err(_) => {
            let e = AwsError::local(
                service,
                operation,
                ErrorType::Timeout,
                format!(
                    "no answer within {}s, retries included",
                    policy.deadline.as_secs()
                ),
            );
            telemetry::aws_error(&e);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(t: ErrorType) -> AwsError {
        AwsError::local(Service::Kms, "DescribeKey", t, "x")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let r = retry(&RetryPolicy::ACTION, Service::Kms, "DescribeKey", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err(ErrorType::Throttled))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_what_cannot_succeed() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(&RetryPolicy::ACTION, Service::Kms, "DescribeKey", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(err(ErrorType::AccessDenied))
        })
        .await;
        assert_eq!(r.unwrap_err().error_type, ErrorType::AccessDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_ends_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let r: Result<(), _> = retry(&RetryPolicy::ACTION, Service::Kms, "DescribeKey", || {
            std::future::pending()
        })
        .await;
        assert_eq!(r.unwrap_err().error_type, ErrorType::Timeout);
        assert_eq!(started.elapsed(), RetryPolicy::ACTION.deadline);
    }
}
