//! Rescuing a KMS key scheduled for deletion, as the SSM runbook
//! `AWSConfigRemediation-CancelKeyDeletion` does, but for the exact key an event names:
//! `DescribeKey` in the key's own region; if it is `PendingDeletion` or
//! `PendingReplicaDeletion`, `CancelKeyDeletion`, then `DescribeKey` again to verify it is
//! `Disabled` (as AWS leaves it); optionally `EnableKey` and verify `Enabled`.
//!
//! Transient errors (throttling, 5xx, timeouts) are retried by the SDK's standard strategy with
//! a bounded number of attempts; `EnableKey` right after the cancel may still see the old state
//! (KMS is eventually consistent) and is retried a few times. Nothing is retried forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::types::KeyState;

use crate::state::{Outcome, Remediation};
use crate::telemetry;

pub const CANCEL_KEY_DELETION: &str = "cancel_key_deletion";
pub const ENABLE_KEY: &str = "enable_key";

/// KMS clients, one per region, made on first use.
pub struct KmsRemediator {
    base: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
    pub dry_run: bool,
    pub enable_after_cancel: bool,
}

/// Parts of a key ARN: (region, account).
pub fn arn_parts(arn: &str) -> Option<(&str, &str)> {
    let p: Vec<&str> = arn.splitn(6, ':').collect();
    (p.len() == 6 && p[0] == "arn" && p[2] == "kms").then(|| (p[3], p[4]))
}

fn err_text<E: ProvideErrorMetadata + std::fmt::Debug>(e: &aws_sdk_kms::error::SdkError<E>) -> String {
    match e.as_service_error() {
        Some(s) => {
            let code = s.code().unwrap_or("Unknown");
            telemetry::aws_error("kms", code);
            format!("{code}: {}", s.message().unwrap_or_default())
        }
        None => {
            telemetry::aws_error("kms", "transport");
            format!("request failed: {e}")
        }
    }
}

impl KmsRemediator {
    pub fn new(base: aws_config::SdkConfig, dry_run: bool, enable_after_cancel: bool) -> Self {
        Self {
            base,
            clients: Mutex::new(HashMap::new()),
            dry_run,
            enable_after_cancel,
        }
    }

    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_kms::config::Builder::from(&self.base)
                    .region(aws_sdk_kms::config::Region::new(region.to_owned()))
                    .retry_config(aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(4))
                    .build();
                Client::from_conf(conf)
            })
            .clone()
    }

    /// Reads the key's state before acting, recording it (or why it could not be read) in `r`.
    async fn state_before(
        &self,
        client: &Client,
        arn: &str,
        r: &mut Remediation,
    ) -> Option<(KeyState, Option<String>)> {
        match self.state(client, arn, &mut r.steps).await {
            Ok((s, deletion)) => {
                r.state_before = Some(s.as_str().to_owned());
                Some((s, deletion))
            }
            Err(e) => {
                r.detail = format!("could not read the key's state: {e}");
                None
            }
        }
    }

    async fn state(
        &self,
        client: &Client,
        arn: &str,
        steps: &mut Vec<String>,
    ) -> Result<(KeyState, Option<String>), String> {
        match client.describe_key().key_id(arn).send().await {
            Ok(out) => {
                let m = out.key_metadata.ok_or("DescribeKey returned no metadata")?;
                let state = m.key_state.clone().unwrap_or(KeyState::Enabled);
                let deletion = m.deletion_date.map(|d| {
                    chrono::DateTime::from_timestamp(d.secs(), 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                });
                steps.push(format!("DescribeKey: {}", state.as_str()));
                Ok((state, deletion))
            }
            Err(e) => {
                let t = err_text(&e);
                steps.push(format!("DescribeKey: {t}"));
                Err(t)
            }
        }
    }

    /// A key's aliases and tags, for the protection policy (`kms:ListAliases`,
    /// `kms:ListResourceTags`; both work in every key state).
    pub async fn facts(
        &self,
        key_arn: &str,
        aliases: bool,
        tags: bool,
    ) -> Result<crate::plan::KeyFacts, String> {
        let region = arn_parts(key_arn)
            .map(|(r, _)| r.to_owned())
            .ok_or_else(|| format!("{key_arn} is not a KMS key ARN"))?;
        let client = self.client(&region);
        let mut facts = crate::plan::KeyFacts::default();
        if aliases {
            let mut pages = client.list_aliases().key_id(key_arn).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| err_text(&e))?;
                facts.aliases.extend(
                    page.aliases()
                        .iter()
                        .filter_map(|a| a.alias_name().map(str::to_owned)),
                );
            }
        }
        if tags {
            let out = client
                .list_resource_tags()
                .key_id(key_arn)
                .send()
                .await
                .map_err(|e| err_text(&e))?;
            facts.tags = out
                .tags()
                .iter()
                .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
                .collect();
        }
        Ok(facts)
    }

    /// Re-enables a disabled key (protection policy `kms.on_disable = "enable_key"`), verified.
    pub async fn enable(&self, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        let mut r = Remediation::new(ENABLE_KEY);
        let Some((arn, region)) = key_arn
            .and_then(|a| arn_parts(a).map(|(reg, owner)| (a, reg, owner)))
            .and_then(|(a, reg, owner)| (account.is_none_or(|acct| acct == owner)).then_some((a, reg)))
        else {
            r.outcome = Outcome::NotActionable;
            r.detail = "no key of this account is named by the event".into();
            return r;
        };
        let client = self.client(region);
        let Some((before, _)) = self.state_before(&client, arn, &mut r).await else {
            return r;
        };
        match before {
            KeyState::Enabled => {
                r.outcome = Outcome::NotNeeded;
                r.state_after = r.state_before.clone();
                r.detail = "the key is already Enabled: nothing to do".into();
                return r;
            }
            KeyState::Disabled => {}
            other => {
                r.outcome = Outcome::NotActionable;
                r.state_after = r.state_before.clone();
                r.detail = format!(
                    "the key is {}, not Disabled: EnableKey cannot help",
                    other.as_str()
                );
                return r;
            }
        }
        if self.dry_run {
            r.outcome = Outcome::DryRun;
            r.state_after = r.state_before.clone();
            r.detail = "dry run: would re-enable this key".into();
            return r;
        }
        if let Err(e) = client.enable_key().key_id(arn).send().await {
            let t = err_text(&e);
            r.steps.push(format!("EnableKey: {t}"));
            r.detail = format!("EnableKey failed: {t}; the key is still Disabled");
            return r;
        }
        r.steps.push("EnableKey: ok".into());
        match self.state(&client, arn, &mut r.steps).await {
            Ok((KeyState::Enabled, _)) => {
                r.outcome = Outcome::Applied;
                r.state_after = Some("Enabled".into());
                r.detail = "re-enabled (EnableKey, verified)".into();
            }
            Ok((s, _)) => {
                r.state_after = Some(s.as_str().to_owned());
                r.detail = format!("EnableKey succeeded but the key is {}", s.as_str());
            }
            Err(e) => r.detail = format!("EnableKey sent, but not verified: {e}"),
        }
        r
    }

    /// Rescues `key_arn`. `account` is the account trailguard acts in (the event's recipient).
    pub async fn rescue(&self, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        let mut r = Remediation::new(CANCEL_KEY_DELETION);
        let Some(arn) = key_arn else {
            r.outcome = Outcome::NotActionable;
            r.detail = "the event names no key ARN, so there is no key to act on".into();
            return r;
        };
        let Some((region, owner)) = arn_parts(arn) else {
            r.outcome = Outcome::NotActionable;
            r.detail = format!("{arn} is not a KMS key ARN");
            return r;
        };
        if let Some(acct) = account
            && acct != owner
        {
            r.outcome = Outcome::NotActionable;
            r.detail = format!(
                "the key belongs to account {owner}, not {acct} where trailguard runs; \
                     CancelKeyDeletion only works in the owning account: cancel it there"
            );
            return r;
        }
        let client = self.client(region);
        let Some((before, deletion)) = self.state_before(&client, arn, &mut r).await else {
            return r;
        };
        r.deletion_date = deletion.clone();
        if !matches!(
            before,
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
        ) {
            r.outcome = Outcome::NotNeeded;
            r.state_after = r.state_before.clone();
            r.detail = format!(
                "the key is {}, not pending deletion: nothing to do",
                before.as_str()
            );
            return r;
        }
        let when = deletion
            .as_deref()
            .map(|d| format!(" (deletion date {d})"))
            .unwrap_or_default();
        if self.dry_run {
            r.outcome = Outcome::DryRun;
            r.state_after = r.state_before.clone();
            r.detail = format!(
                "dry run: would cancel the deletion of this key{when}{}",
                if self.enable_after_cancel {
                    " and re-enable it"
                } else {
                    ", leaving it Disabled"
                }
            );
            return r;
        }
        if let Err(e) = client.cancel_key_deletion().key_id(arn).send().await {
            let t = err_text(&e);
            r.steps.push(format!("CancelKeyDeletion: {t}"));
            r.detail =
                format!("CancelKeyDeletion failed: {t}; the key is still scheduled for deletion{when}");
            return r;
        }
        r.steps.push("CancelKeyDeletion: ok".into());
        let after = match self.state(&client, arn, &mut r.steps).await {
            Ok((s, _)) => s,
            Err(e) => {
                r.detail = format!("CancelKeyDeletion succeeded but the result could not be verified: {e}");
                return r;
            }
        };
        r.state_after = Some(after.as_str().to_owned());
        if after != KeyState::Disabled {
            r.detail = format!(
                "CancelKeyDeletion succeeded but the key is {} (expected Disabled)",
                after.as_str()
            );
            return r;
        }
        if !self.enable_after_cancel {
            r.outcome = Outcome::Applied;
            r.detail = format!(
                "deletion cancelled{when}; the key is now Disabled, as AWS leaves it: re-enable it once its owner confirms"
            );
            return r;
        }
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
            match client.enable_key().key_id(arn).send().await {
                Ok(_) => {
                    r.steps.push("EnableKey: ok".into());
                    last.clear();
                    break;
                }
                Err(e) => {
                    last = err_text(&e);
                    r.steps.push(format!("EnableKey: {last}"));
                    let retryable = e
                        .as_service_error()
                        .is_some_and(|s| s.code() == Some("KMSInvalidStateException"));
                    if !retryable {
                        break;
                    }
                }
            }
        }
        if !last.is_empty() {
            r.detail = format!("deletion cancelled{when}, but EnableKey failed: {last}; the key is Disabled");
            return r;
        }
        match self.state(&client, arn, &mut r.steps).await {
            Ok((KeyState::Enabled, _)) => {
                r.state_after = Some("Enabled".into());
                r.outcome = Outcome::Applied;
                r.detail = format!("deletion cancelled{when} and the key re-enabled");
            }
            Ok((s, _)) => {
                r.state_after = Some(s.as_str().to_owned());
                r.detail = format!(
                    "deletion cancelled{when}, but after EnableKey the key is {}",
                    s.as_str()
                );
            }
            Err(e) => r.detail = format!("deletion cancelled and EnableKey sent, but not verified: {e}"),
        }
        r
    }
}
