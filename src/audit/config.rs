//! `[audit]`: who counts as a key administrator for `trailguard keys audit`.

use serde::{Deserialize, Serialize};

use super::DEFAULT_ADMINS;
use crate::validate::{Field, Problems};

crate::validated!(RawAudit => AuditConfig, AuditConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAudit {
    pub admin_principals: Field<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// ARN globs of key administrators, besides the account's root and `kms.allowed_principals`.
    pub admin_principals: Vec<String>,
}

impl AuditConfig {
    pub fn from_raw(raw: RawAudit, p: &mut Problems) -> Self {
        let admins = raw
            .admin_principals
            .get("audit.admin_principals", p)
            .unwrap_or_else(|| DEFAULT_ADMINS.iter().map(|s| (*s).to_owned()).collect());
        for (i, g) in admins.iter().enumerate() {
            if !g.starts_with("arn:") {
                p.push(
                    format!("audit.admin_principals[{i}]"),
                    format!("{g:?} is not an ARN glob like arn:aws:iam::*:role/KeyAdmin"),
                );
            }
        }
        Self {
            admin_principals: admins,
        }
    }
}
