//! The AWS layer: every AWS SDK client trailguard uses is made here, with explicit timeouts,
//! the SDK's retries off (ours are in [`mod@retry`]), and an interceptor that reads AWS's clock off
//! every response ([`crate::clock`]). The adapters in this folder implement the small traits the
//! rest of trailguard talks to ([`crate::sources::LookupApi`], [`crate::actions::KeyApi`],
//! [`crate::notify::Notifier`], [`crate::iam::IamApi`]); nothing outside `aws/` names an SDK type.
//!
//! Timeouts: connect 3.1 s; each attempt 20 s (connect, send, read); each operation, with the
//! SDK's attempts, 25 s; each call with our retries and backoff, the policy's deadline. A hung
//! endpoint therefore costs one call its deadline, never the worker its life.

pub mod cloudtrail;
pub mod config;
pub mod error;
pub mod iam;
pub mod kms;
pub mod lease;
pub mod limiter;
pub mod retry;
pub mod sns;
pub mod sts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

pub use error::{AwsError, ErrorType, Service};
pub use limiter::{Limiter, Place};
pub use retry::{RetryPolicy, retry, retry_if};

use crate::clock::Clock;

/// The timeouts every client gets.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3100))
        .read_timeout(Duration::from_secs(20))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(25))
        .build()
}

/// Reads the `Date` header of every response into the daemon's clock.
#[derive(Debug, Clone)]
struct ServerClock(Clock);

impl Intercept for ServerClock {
    fn name(&self) -> &'static str {
        "trailguard-server-clock"
    }

    fn read_after_transmit(
        &self,
        ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = ctx.response().headers().get("date")
            && let Ok(t) = httpdate::parse_http_date(date)
        {
            let skew = self.0.observe_server_date(t.into());
            crate::telemetry::clock_skew(skew);
        }
        Ok(())
    }
}

/// Loads the standard AWS configuration chain (environment, profile, web identity, ECS, IMDSv2).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts())
        .load()
        .await
}

macro_rules! client_for {
    ($name:ident, $sdk:ident) => {
        /// A client for this region (made once, then shared).
        pub fn $name(&self, region: &str) -> $sdk::Client {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let key = (stringify!($name), region.to_owned());
            if let Some(Client::$name(c)) = clients.get(&key) {
                return c.clone();
            }
            let conf = $sdk::config::Builder::from(&self.sdk)
                .region($sdk::config::Region::new(region.to_owned()))
                .retry_config(RetryConfig::disabled())
                .timeout_config(timeouts())
                .interceptor(ServerClock(self.clock.clone()))
                .build();
            let c = $sdk::Client::from_conf(conf);
            clients.insert(key, Client::$name(c.clone()));
            c
        }
    };
}

#[allow(non_camel_case_types)]
#[derive(Debug, Clone)]
enum Client {
    cloudtrail(aws_sdk_cloudtrail::Client),
    kms(aws_sdk_kms::Client),
    iam(aws_sdk_iam::Client),
    sns(aws_sdk_sns::Client),
    sts(aws_sdk_sts::Client),
    dynamodb(aws_sdk_dynamodb::Client),
}

/// The SDK configuration and the clients made from it, one per service and region.
#[derive(Debug, Clone)]
pub struct Aws {
    sdk: SdkConfig,
    clock: Clock,
    clients: Arc<Mutex<HashMap<(&'static str, String), Client>>>,
}

impl Aws {
    pub fn new(sdk: SdkConfig, clock: Clock) -> Self {
        Self {
            sdk,
            clock,
            clients: Arc::default(),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The access key id of static credentials (for recognising trailguard's own calls).
    pub async fn access_key_id(&self) -> Option<String> {
        use aws_sdk_sts::config::ProvideCredentials;
        let provider = self.sdk.credentials_provider()?;
        let creds = provider.provide_credentials().await.ok()?;
        Some(creds.access_key_id().to_owned())
    }

    client_for!(cloudtrail, aws_sdk_cloudtrail);
    client_for!(kms, aws_sdk_kms);
    client_for!(iam, aws_sdk_iam);
    client_for!(sns, aws_sdk_sns);
    client_for!(sts, aws_sdk_sts);
    client_for!(dynamodb, aws_sdk_dynamodb);
}

/// An SDK error of any operation.
pub(crate) type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<
    E,
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
>;

/// What an operation's error type provides.
pub(crate) trait SdkErrorKind:
    aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static
{
}

impl<T: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static> SdkErrorKind
    for T
{
}

/// Maps an SDK error of `service` `operation` into an [`AwsError`].
pub(crate) fn sdk_err<E: SdkErrorKind>(
    service: Service,
    operation: &'static str,
) -> impl Fn(SdkError<E>) -> AwsError {
    move |e| AwsError::from_sdk(service, operation, &e)
}

/// One SDK operation under `policy`: `send` makes one attempt (after any pacing it needs), and
/// its SDK error is read into an [`AwsError`].
pub(crate) async fn call<T, E, F, Fut>(
    policy: &RetryPolicy,
    service: Service,
    operation: &'static str,
    mut send: F,
) -> Result<T, AwsError>
where
    E: SdkErrorKind,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
{
    retry(policy, service, operation, || {
        let fut = send();
        async move { fut.await.map_err(sdk_err(service, operation)) }
    })
    .await
}

/// Turns an `aws_smithy_types::DateTime` into chrono's.
pub(crate) fn chrono_time(d: &aws_smithy_types::DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos()).unwrap_or_default()
}
