//! # trailguard-sandbox
//!
//! A local AWS endpoint for trailguard's tests and demo. One listener serves every AWS service
//! trailguard uses, so a client needs only `AWS_ENDPOINT_URL`:
//!
//! - **CloudTrail** `LookupEvents` is answered here ([`cloudtrail`]), with AWS's paging,
//!   validation, throttling and retention semantics, over records this sandbox writes itself.
//! - **KMS** and **IAM** calls are forwarded to a moto server the sandbox owns, after closing the
//!   gaps between moto and AWS ([`kms`]: key states, ARNs, pending window; [`iam`]: backdated
//!   access keys), and every call, successful or failed, becomes a CloudTrail record ([`record`]).
//! - **SNS** `Publish` is held to AWS's rules before moto sees it ([`sns`]); **STS**
//!   `AssumeRole` checks the role and its trust policy ([`sts`]); **Organizations** pages as AWS
//!   does ([`organizations`]); **S3** and **DynamoDB** make conditional writes atomic ([`s3`],
//!   [`dynamodb`]); **SQS** delivers S3 notifications in AWS's shape ([`sqs`]); everything else
//!   goes to moto unchanged.
//! - Records also reach **EventBridge** rules ([`eventbridge`], [`pattern`]) and an
//!   **organization trail** in S3 ([`orgtrail`]), as CloudTrail delivers them.
//! - **Test controls** live under `/_sandbox/` on the same listener ([`control`]), including
//!   faults (errors, latency, hung requests) and a clock offset.
//!
//! Rust tests start it in-process with [`Sandbox::start`] on an ephemeral port.

pub mod account;
pub mod cloudtrail;
pub mod control;
pub mod dynamodb;
pub mod eventbridge;
pub mod iam;
pub mod kms;
mod moto;
pub mod organizations;
pub mod orgtrail;
pub mod pattern;
pub mod record;
pub mod s3;
mod server;
pub mod sns;
pub mod sqs;
pub mod state;
pub mod sts;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use moto::MotoSource;
pub use organizations::{AccountsRequest, Organization};
pub use orgtrail::OrgTrailConfig;
pub use state::{Fault, IdentitySpec, Settings};

/// The account moto uses by default, and so the sandbox's default account.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where moto comes from.
    pub moto: MotoSource,
    /// Account id written into records for callers without a registered identity.
    pub default_account: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            moto: MotoSource::Venv(default_venv()),
            default_account: DEFAULT_ACCOUNT.to_owned(),
        }
    }
}

/// The project's venv as `tests/setup.sh` creates it, unless `TRAILGUARD_VENV` says otherwise.
pub fn default_venv() -> PathBuf {
    std::env::var_os("TRAILGUARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv")))
}

/// A running sandbox. Dropping it stops the listener and the moto server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<state::Shared>,
    server: tokio::task::JoinHandle<()>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    _moto: moto::Moto,
}

impl Sandbox {
    /// Starts moto (unless external) and the listener.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let moto = moto::Moto::start(&options.moto).await?;
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(state::Shared::new(moto.url().to_owned(), options.default_account));
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        let workers = vec![
            tokio::spawn(eventbridge::run(shared.clone())),
            tokio::spawn(orgtrail::run(shared.clone())),
        ];
        Ok(Self {
            addr,
            shared,
            server,
            workers,
            _moto: moto,
        })
    }

    /// Starts a sandbox with default options (moto from the project venv, ephemeral port).
    pub async fn start_default() -> anyhow::Result<Self> {
        Self::start(Options::default()).await
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the value for `AWS_ENDPOINT_URL`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The sandbox's state, for tests that drive it directly rather than over `/_sandbox/`.
    pub fn state(&self) -> &state::Shared {
        &self.shared
    }

    /// Creates the organization (if needed) and `count` member accounts, each with a role named
    /// `trailguard` trusting the management account (the default account), requiring
    /// `external_id` when given. Returns the accounts made.
    pub async fn create_accounts(
        &self,
        count: usize,
        external_id: Option<&str>,
    ) -> anyhow::Result<Organization> {
        let req = AccountsRequest {
            count,
            role_name: "trailguard".into(),
            external_id: external_id.map(str::to_owned),
            management_account: None,
        };
        organizations::create_accounts(&self.shared, &req)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Configures the organization trail (replacing any other); records from now on are
    /// delivered to S3 every `interval_seconds`.
    pub fn set_org_trail(&self, config: OrgTrailConfig) {
        self.shared.set_org_trail(Some(config));
    }

    /// Delivers what the organization trail holds now; returns the keys written.
    pub async fn flush_org_trail(&self) -> anyhow::Result<Vec<String>> {
        orgtrail::flush(&self.shared).await.map_err(anyhow::Error::msg)
    }

    /// Waits until the server task ends (it runs until the sandbox is dropped).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
        for w in &self.workers {
            w.abort();
        }
    }
}
