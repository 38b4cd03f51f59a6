//! Where trailguard acts: the accounts it guards and, in each, the regions it watches; and the
//! pollers that follow from them.
//!
//! Resolved at start, after trailguard knows who it is: its own account (no `[accounts]`),
//! or `accounts.ids` and the organization's active accounts (`accounts.discover`), minus
//! `accounts.exclude`. With `aws.regions = ["all"]`, each account's enabled regions
//! (`account:ListRegions`, through its role). An account whose regions cannot be listed is still
//! guarded (queue sources, remediation) but has no pollers until the next refresh, and said so.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::arn;
use crate::aws::{self, Aws};
use crate::config::Config;

/// The accounts trailguard guards, each with its regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estate {
    /// trailguard's own account.
    pub own: String,
    pub partition: String,
    pub accounts: BTreeMap<String, Vec<String>>,
}

/// One poller: its name (metrics, health, state), the account and region it reads, and the
/// event source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerSpec {
    pub name: String,
    pub account: String,
    pub region: String,
    pub event_source: &'static str,
}

/// The pollers of an estate: KMS in every account's regions, and IAM's events (recorded in
/// the partition's IAM home region) when the IAM sweep is on. Pollers of trailguard's own
/// account are named by region alone (`eu-west-1`, `us-east-1/iam`), as a single-account
/// trailguard always named them; the others are prefixed with their account.
pub fn pollers(config: &Config, estate: &Estate) -> Vec<PollerSpec> {
    if !config.sources.lookup_events {
        return Vec::new();
    }
    let home = arn::iam_home_region(&estate.partition);
    let mut out = Vec::new();
    for (account, regions) in &estate.accounts {
        let prefix = if *account == estate.own {
            String::new()
        } else {
            format!("{account}/")
        };
        out.extend(regions.iter().map(|r| PollerSpec {
            name: format!("{prefix}{r}"),
            account: account.clone(),
            region: r.clone(),
            event_source: "kms.amazonaws.com",
        }));
        if config.iam.is_some() {
            out.push(PollerSpec {
                name: format!("{prefix}{home}/iam"),
                account: account.clone(),
                region: home.to_owned(),
                event_source: "iam.amazonaws.com",
            });
        }
    }
    out
}

/// The names of the pollers a configuration is known to run before trailguard knows who it
/// is: those of its own account's listed regions (none with `["all"]` or `[accounts]`, whose
/// pollers are registered once resolved).
pub fn known_pollers(config: &Config) -> Vec<String> {
    if config.accounts.is_some() || config.all_regions() {
        return Vec::new();
    }
    let estate = Estate {
        own: String::new(),
        partition: config.partition().to_owned(),
        accounts: [(String::new(), config.regions.clone())].into(),
    };
    pollers(config, &estate).into_iter().map(|p| p.name).collect()
}

/// Where STS, Organizations and the account API are called: the first listed region, the
/// SDK's region, or the partition's home.
pub fn home_region(config: &Config, aws: &Aws, partition: &str) -> String {
    config
        .regions
        .first()
        .cloned()
        .or_else(|| aws.default_region())
        .unwrap_or_else(|| arn::iam_home_region(partition).to_owned())
}

/// Retries `f` every 30 s until it succeeds (or shutdown: `None`).
async fn until_ok<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws::AwsError>>,
{
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => error!(error = %e, "Cannot {what}; trying again in 30s."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// The accounts to guard (without their regions); `None` at shutdown.
pub async fn accounts(
    config: &Config,
    aws: &Aws,
    own: &str,
    home: &str,
    shutdown: &CancellationToken,
) -> Option<Vec<String>> {
    let Some(a) = &config.accounts else {
        return Some(vec![own.to_owned()]);
    };
    let discovered = match a.discover {
        Some(crate::accounts::Discover::Organizations) => {
            until_ok(
                "list the organization's accounts (organizations:ListAccounts)",
                shutdown,
                || aws::account::organization_accounts(aws, home),
            )
            .await?
        }
        None => Vec::new(),
    };
    Some(a.resolve(&discovered))
}

/// Each account's regions; accounts whose regions cannot be listed are left out.
pub async fn estate(config: &Config, aws: &Aws, own: &str, partition: &str, accounts: Vec<String>) -> Estate {
    let home = home_region(config, aws, partition);
    let mut out = Estate {
        own: own.to_owned(),
        partition: partition.to_owned(),
        accounts: BTreeMap::new(),
    };
    for account in accounts {
        let regions = if config.all_regions() {
            match aws::account::enabled_regions(aws, &account, &home).await {
                Ok(r) => r,
                Err(e) => {
                    // Still guarded: the queue sources need no region list, and remediation
                    // runs in the key's own region. Only its pollers wait for the regions.
                    warn!(account = %account, error = %e, "Cannot list the account's enabled regions (account:ListRegions); it is guarded from the queue sources, without LookupEvents pollers until the next refresh.");
                    Vec::new()
                }
            }
        } else {
            config.regions.clone()
        };
        out.accounts.insert(account, regions);
    }
    info!(
        accounts = out.accounts.len(),
        regions = out.accounts.values().map(Vec::len).sum::<usize>(),
        "Guarding these accounts and regions."
    );
    out
}

/// Lists the organization's accounts every `accounts.refresh_interval`; cancels `generation`
/// when they differ from `current`, so the pipeline restarts with them.
pub async fn watch_accounts(
    config: Config,
    aws: Aws,
    own: String,
    home: String,
    current: Vec<String>,
    generation: CancellationToken,
) {
    let Some(a) = config.accounts.as_ref().filter(|a| a.discover.is_some()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = generation.cancelled() => return,
            _ = tokio::time::sleep(a.refresh_interval) => {}
        }
        match accounts(&config, &aws, &own, &home, &generation).await {
            Some(now) if now != current => {
                info!(
                    before = current.len(),
                    after = now.len(),
                    "The organization's accounts changed."
                );
                generation.cancel();
                return;
            }
            Some(_) => {}
            None => return,
        }
    }
}
