//! The AWS layer: every AWS SDK client trailguard uses is made here, with explicit timeouts,
//! the SDK's retries off (ours are in [`mod@retry`]), and an interceptor that reads AWS's clock off
//! every response ([`crate::clock`]). The adapters in this folder implement the small traits the
//! rest of trailguard talks to ([`crate::sources::LookupApi`], [`crate::actions::KeyApi`],
//! [`crate::notify::Notifier`], [`crate::iam::IamApi`]); nothing outside `aws/` names an SDK type.
//!
//! Timeouts: connect 3.1 s; each attempt 20 s (connect, send, read); each operation, with the
//! SDK's attempts, 25 s; each call with our retries and backoff, the policy's deadline. A hung
//! endpoint therefore costs one call its deadline, never the worker its life.

pub mod account;
mod assume;
pub mod cloudtrail;
pub mod config;
pub mod error;
pub mod iam;
pub mod kms;
pub mod lease;
pub mod limiter;
pub mod retry;
pub mod s3;
pub mod sns;
pub mod sqs;
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
    ($name:ident, $in_account:ident, $sdk:ident) => {
        /// A client for this region, with trailguard's own credentials (made once, then shared).
        pub fn $name(&self, region: &str) -> $sdk::Client {
            self.$in_account(None, region)
        }

        /// A client for this region in `account`: through its role (see [`Roles`]) unless it
        /// is trailguard's own account (or no roles are configured).
        pub fn $in_account(&self, account: Option<&str>, region: &str) -> $sdk::Client {
            let account = self.assumed(account);
            let sdk = match &account {
                Some(a) => self.account_sdk(a),
                None => self.sdk.clone(),
            };
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let key = (
                stringify!($name),
                account.unwrap_or_default(),
                region.to_owned(),
            );
            if let Some(Client::$name(c)) = clients.get(&key) {
                return c.clone();
            }
            let conf = $sdk::config::Builder::from(&sdk)
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
    sqs(aws_sdk_sqs::Client),
    s3(aws_sdk_s3::Client),
    organizations(aws_sdk_organizations::Client),
    account(aws_sdk_account::Client),
}

/// How trailguard reaches the accounts it guards besides its own: `sts:AssumeRole` into the
/// role the template names, per account, with credentials cached until shortly before they
/// expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// trailguard's own account: reached with its own credentials.
    pub own_account: String,
    pub partition: String,
    /// `accounts.role_arn_template`.
    pub template: String,
    pub external_id: Option<String>,
    pub session_name: String,
    /// Where STS is called.
    pub sts_region: String,
}

impl Roles {
    /// The role trailguard assumes in `account`.
    pub fn role_arn(&self, account: &str) -> String {
        crate::accounts::role_arn(&self.template, &self.partition, account)
    }
}

type ClientKey = (&'static str, String, String);

/// The SDK configuration and the clients made from it, one per service, account and region.
#[derive(Debug, Clone)]
pub struct Aws {
    sdk: SdkConfig,
    clock: Clock,
    clients: Arc<Mutex<HashMap<ClientKey, Client>>>,
    roles: Option<Arc<Roles>>,
    /// Per account: the configuration with its assumed-role credentials (and their cache).
    accounts: Arc<Mutex<HashMap<String, SdkConfig>>>,
}

impl Aws {
    pub fn new(sdk: SdkConfig, clock: Clock) -> Self {
        Self {
            sdk,
            clock,
            clients: Arc::default(),
            roles: None,
            accounts: Arc::default(),
        }
    }

    /// The same factory, reaching other accounts through `roles`.
    pub fn with_roles(&self, roles: Roles) -> Self {
        Self {
            sdk: self.sdk.clone(),
            clock: self.clock.clone(),
            clients: Arc::default(),
            roles: Some(Arc::new(roles)),
            accounts: Arc::default(),
        }
    }

    pub fn roles(&self) -> Option<&Roles> {
        self.roles.as_deref()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The region of the SDK's own configuration (`AWS_REGION`, the profile), if any.
    pub fn default_region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.to_string())
    }

    /// The access key id of static credentials (for recognising trailguard's own calls).
    pub async fn access_key_id(&self) -> Option<String> {
        use aws_sdk_sts::config::ProvideCredentials;
        let provider = self.sdk.credentials_provider()?;
        let creds = provider.provide_credentials().await.ok()?;
        Some(creds.access_key_id().to_owned())
    }

    /// `Some(account)` if reaching it needs its role.
    fn assumed(&self, account: Option<&str>) -> Option<String> {
        let roles = self.roles.as_deref()?;
        account
            .filter(|a| !a.is_empty() && *a != roles.own_account)
            .map(str::to_owned)
    }

    /// The configuration for `account`, with credentials from its role.
    fn account_sdk(&self, account: &str) -> SdkConfig {
        let mut all = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.get(account) {
            return c.clone();
        }
        let roles = self.roles.as_deref().expect("assumed() checked roles");
        let provider = assume::AssumedRole {
            sts: self.sts(&roles.sts_region),
            account: account.to_owned(),
            role_arn: roles.role_arn(account),
            external_id: roles.external_id.clone(),
            session_name: roles.session_name.clone(),
        };
        let conf = self
            .sdk
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(provider))
            .identity_cache(
                aws_sdk_sts::config::IdentityCache::lazy()
                    .buffer_time(Duration::from_secs(300))
                    .build(),
            )
            .build();
        all.insert(account.to_owned(), conf.clone());
        conf
    }

    client_for!(cloudtrail, cloudtrail_in, aws_sdk_cloudtrail);
    client_for!(kms, kms_in, aws_sdk_kms);
    client_for!(iam, iam_in, aws_sdk_iam);
    client_for!(sns, sns_in, aws_sdk_sns);
    client_for!(sts, sts_in, aws_sdk_sts);
    client_for!(dynamodb, dynamodb_in, aws_sdk_dynamodb);
    client_for!(sqs, sqs_in, aws_sdk_sqs);
    client_for!(s3, s3_in, aws_sdk_s3);
    client_for!(organizations, organizations_in, aws_sdk_organizations);
    client_for!(account, account_in, aws_sdk_account);
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
