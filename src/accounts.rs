//! `[accounts]`: which AWS accounts trailguard guards, and how it reaches them. Pure.
//!
//! Without the section, trailguard guards the account its credentials belong to, as a
//! single-account deployment always has. With it, the accounts are `accounts.ids`, and/or every
//! active account of the organization (`accounts.discover = "organizations"`, which needs
//! `organizations:ListAccounts`: the management account or a delegated administrator), minus
//! `accounts.exclude`. Every account other than trailguard's own is reached through
//! `sts:AssumeRole` into the role `accounts.role_arn_template` names there, with
//! `accounts.external_id` when the role's trust policy asks for one.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::{Field, Problems, duration};

/// The default role: one per member account, deployed by the StackSet in `deploy/`.
pub const DEFAULT_TEMPLATE: &str = "arn:${partition}:iam::${account}:role/trailguard";
/// How trailguard's sessions are named (it shows in each account's CloudTrail).
pub const DEFAULT_SESSION: &str = "trailguard";

crate::validated!(RawAccounts => Option<AccountsConfig>, AccountsConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAccounts {
    pub ids: Field<Vec<String>>,
    pub discover: Field<String>,
    pub exclude: Field<Vec<String>>,
    pub role_arn_template: Field<String>,
    pub external_id: Field<String>,
    pub session_name: Field<String>,
    pub refresh_interval: Field<String>,
}

impl RawAccounts {
    fn is_empty(&self) -> bool {
        self.ids.is_missing()
            && self.discover.is_missing()
            && self.exclude.is_missing()
            && self.role_arn_template.is_missing()
            && self.external_id.is_missing()
            && self.session_name.is_missing()
            && self.refresh_interval.is_missing()
    }
}

/// Where the accounts come from besides `ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discover {
    /// `organizations:ListAccounts`, active accounts only.
    Organizations,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    pub ids: BTreeSet<String>,
    pub discover: Option<Discover>,
    pub exclude: BTreeSet<String>,
    pub role_arn_template: String,
    pub external_id: Option<String>,
    pub session_name: String,
    /// How often the organization's accounts are listed again (with `discover`).
    pub refresh_interval: Duration,
}

/// The accounts trailguard acts in, shared by everything that acts (and updated when the
/// organization's accounts are listed again). Unset: trailguard's own account only, and a key
/// is acted on only from an event recorded in the key's own account.
#[derive(Debug, Clone, Default)]
pub struct Scope(Arc<RwLock<Option<BTreeSet<String>>>>);

impl Scope {
    pub fn set(&self, accounts: impl IntoIterator<Item = String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(accounts.into_iter().collect());
    }

    /// `None` when unset (single account).
    pub fn accounts(&self) -> Option<BTreeSet<String>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether trailguard acts in `account` (`None` when unset).
    pub fn guards(&self, account: &str) -> Option<bool> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|a| a.contains(account))
    }
}

/// A 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The role ARN the template names for `account`.
pub fn role_arn(template: &str, partition: &str, account: &str) -> String {
    template
        .replace("${partition}", partition)
        .replace("${account}", account)
}

fn ids(p: &mut Problems, key: &str, field: Field<Vec<String>>) -> BTreeSet<String> {
    let list = field.get(key, p).unwrap_or_default();
    for id in &list {
        if !is_account_id(id) {
            p.push(
                key,
                format!("{id:?} is not a 12-digit AWS account id (quote it to keep leading zeros)"),
            );
        }
    }
    list.into_iter().filter(|id| is_account_id(id)).collect()
}

/// Characters STS allows in a session name (`[\w+=,.@-]`) and an external id (also `:/`).
fn sts_text(s: &str, extra: &[char]) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(&c))
}

impl AccountsConfig {
    /// Validates `[accounts]`; `None` when the section is absent (trailguard's own account).
    pub fn from_raw(raw: RawAccounts, p: &mut Problems) -> Option<Self> {
        if raw.is_empty() {
            return None;
        }
        let ids_listed = !raw.ids.is_missing();
        let ids = ids(p, "accounts.ids", raw.ids);
        let exclude = ids_from(p, raw.exclude);
        let discover = raw
            .discover
            .get("accounts.discover", p)
            .and_then(|d| match d.as_str() {
                "organizations" => Some(Discover::Organizations),
                other => {
                    p.push(
                        "accounts.discover",
                        format!("must be \"organizations\" (or left out), got {other:?}"),
                    );
                    None
                }
            });
        if !ids_listed && discover.is_none() && p.is_empty() {
            p.push(
                "accounts",
                "name the accounts: accounts.ids = [\"111122223333\", ...] and/or accounts.discover = \"organizations\"",
            );
        }
        if discover.is_none() && !ids.is_empty() && ids.iter().all(|i| exclude.contains(i)) {
            p.push("accounts.exclude", "excludes every account in accounts.ids");
        }
        let role_arn_template = raw
            .role_arn_template
            .get("accounts.role_arn_template", p)
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        check_template(p, &role_arn_template);
        let external_id = raw.external_id.get("accounts.external_id", p);
        if let Some(e) = &external_id
            && (!(2..=1224).contains(&e.len()) || !sts_text(e, &[':', '/']))
        {
            p.push(
                "accounts.external_id",
                "must be 2 to 1224 characters of letters, digits and _+=,.@:/-",
            );
        }
        let session_name = raw
            .session_name
            .get("accounts.session_name", p)
            .unwrap_or_else(|| DEFAULT_SESSION.to_owned());
        if !(2..=64).contains(&session_name.len()) || !sts_text(&session_name, &[]) {
            p.push(
                "accounts.session_name",
                format!("{session_name:?}: must be 2 to 64 characters of letters, digits and _+=,.@-"),
            );
        }
        let refresh_interval = duration(
            p,
            "accounts.refresh_interval",
            raw.refresh_interval,
            "1h",
            (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600)),
            "",
        );
        Some(Self {
            ids,
            discover,
            exclude,
            role_arn_template,
            external_id,
            session_name,
            refresh_interval,
        })
    }

    /// The accounts to guard: `ids` and the `discovered` ones, minus `exclude`, in order.
    pub fn resolve(&self, discovered: &[String]) -> Vec<String> {
        self.ids
            .iter()
            .chain(discovered)
            .filter(|a| !self.exclude.contains(*a))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn ids_from(p: &mut Problems, field: Field<Vec<String>>) -> BTreeSet<String> {
    ids(p, "accounts.exclude", field)
}

/// The template must make an IAM role ARN for any account.
fn check_template(p: &mut Problems, template: &str) {
    let key = "accounts.role_arn_template";
    if !template.contains("${account}") {
        p.push(key, format!("{template:?} must contain ${{account}}"));
        return;
    }
    let rest = template.replace("${partition}", "").replace("${account}", "");
    if rest.contains("${") {
        p.push(
            key,
            format!("{template:?}: only ${{partition}} and ${{account}} are replaced"),
        );
        return;
    }
    let sample = role_arn(template, "aws", "111122223333");
    let ok = crate::arn::Arn::parse(&sample).is_some_and(|a| {
        a.service == "iam"
            && a.account == "111122223333"
            && a.resource.starts_with("role/")
            && a.resource.len() > 5
    });
    if !ok {
        p.push(
            key,
            format!("{template:?} does not make an IAM role ARN like arn:aws:iam::111122223333:role/NAME"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawAccounts {
        toml::from_str(text).unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        let mut p = Problems::default();
        AccountsConfig::from_raw(raw(text), &mut p);
        p.0.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn no_section_means_own_account_only() {
        let mut p = Problems::default();
        assert_eq!(AccountsConfig::from_raw(raw(""), &mut p), None);
        assert!(p.is_empty());
    }

    #[test]
    fn accounts_are_ids_and_discovered_minus_excluded() {
        let mut p = Problems::default();
        let c = AccountsConfig::from_raw(
            raw("ids = [\"111111111111\", \"012345678901\"]\ndiscover = \"organizations\"\nexclude = [\"222222222222\"]"),
            &mut p,
        )
        .unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.role_arn_template, DEFAULT_TEMPLATE);
        assert_eq!(
            c.resolve(&[
                "222222222222".into(),
                "333333333333".into(),
                "111111111111".into()
            ]),
            ["012345678901", "111111111111", "333333333333"]
        );
        assert_eq!(
            role_arn(&c.role_arn_template, "aws-us-gov", "012345678901"),
            "arn:aws-us-gov:iam::012345678901:role/trailguard"
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let got = problems(
            "ids = [\"12345\"]\ndiscover = \"ldap\"\nrole_arn_template = \"arn:aws:iam::123456789012:role/x\"\nexternal_id = \"x\"\nsession_name = \"has space\"",
        );
        let keys: Vec<&str> = got
            .iter()
            .map(|p| p.split_once(": ").map_or(p.as_str(), |(k, _)| k))
            .collect();
        assert_eq!(
            keys,
            [
                "accounts.ids",
                "accounts.discover",
                "accounts.role_arn_template",
                "accounts.external_id",
                "accounts.session_name"
            ],
            "{got:#?}"
        );
        assert!(problems("exclude = []")[0].starts_with("accounts: name the accounts"));
        assert!(
            problems(
                "role_arn_template = \"arn:${partition}:iam::${account}:user/x\"\nids=[\"111111111111\"]"
            )[0]
            .contains("IAM role ARN")
        );
        assert!(
            problems("role_arn_template = \"arn:aws:iam::${account}:role/${name}\"\nids=[\"111111111111\"]")
                [0]
            .contains("only ${partition}")
        );
        assert!(
            problems("ids = [\"111111111111\"]\nexclude = [\"111111111111\"]")[0].contains("every account")
        );
    }
}
