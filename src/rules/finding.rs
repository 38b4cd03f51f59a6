//! What a rule match reports: the finding, and the key a record names (see [`super`]). Pure.

use super::{Action, Rule, Severity};
use crate::event::Record;

/// One rule matching one record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub rule_id: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    pub actions: Vec<Action>,
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub event_time: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub key_arn: Option<String>,
    pub key_alias: Option<String>,
    pub principal_arn: Option<String>,
    pub principal_type: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `responseElements.deletionDate` of a `ScheduleKeyDeletion`, as CloudTrail wrote it.
    pub deletion_date: Option<String>,
    pub key_state: Option<String>,
    /// For IAM findings: the access key and its user.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    /// For an assumed role: the role the session was issued for (`sessionIssuer.arn`).
    #[serde(default)]
    pub session_issuer_arn: Option<String>,
    /// The access key the caller signed with (`userIdentity.accessKeyId`).
    #[serde(default)]
    pub caller_access_key_id: Option<String>,
    /// The tag keys an `UntagResource` removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_keys: Vec<String>,
}

pub(super) fn finding(rule: &Rule, r: &Record) -> Finding {
    let identity = r.user_identity.as_ref();
    Finding {
        rule_id: rule.id.clone(),
        description: rule.description.clone(),
        severity: rule.severity,
        actions: rule.actions.clone(),
        event_id: r.event_id().to_owned(),
        event_name: r.name().to_owned(),
        event_source: r.source().to_owned(),
        event_time: r.event_time.clone(),
        region: r.aws_region.clone(),
        account: r.account().map(str::to_owned),
        key_arn: if r.source().starts_with("kms") {
            key_arn(r)
        } else {
            None
        },
        key_alias: key_alias(r),
        principal_arn: r.principal_arn().map(str::to_owned),
        principal_type: identity.and_then(|i| i.kind.clone()),
        source_ip: r.source_ip_address.clone(),
        user_agent: r.user_agent.clone(),
        error_code: r.error_code.clone(),
        error_message: r.error_message.clone(),
        deletion_date: r.response_str("deletionDate").map(str::to_owned),
        key_state: r.response_str("keyState").map(str::to_owned),
        access_key_id: r.request_str("accessKeyId").map(str::to_owned).or_else(|| {
            let created = r.response_elements.as_ref()?.get("accessKey")?;
            created.get("accessKeyId")?.as_str().map(str::to_owned)
        }),
        user_name: r.request_str("userName").map(str::to_owned),
        session_issuer_arn: identity
            .and_then(|i| i.session_context.as_ref())
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|s| s.arn.clone()),
        caller_access_key_id: identity
            .and_then(|i| i.access_key_id.clone())
            .filter(|k| !k.is_empty()),
        tag_keys: r
            .request_parameters
            .as_ref()
            .and_then(|p| p.get("tagKeys"))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    }
}

/// The fields that name a key, however a record was read.
pub struct KeyFields<'a> {
    pub error_message: Option<&'a str>,
    pub response_key_id: Option<&'a str>,
    pub resource_arns: Vec<&'a str>,
    pub request_key_id: Option<&'a str>,
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// The key ARN a record is about (see the module docs for the order).
pub fn key_arn(r: &Record) -> Option<String> {
    key_arn_of(&KeyFields {
        error_message: r.error_message.as_deref(),
        response_key_id: r.response_str("keyId"),
        resource_arns: r
            .resources
            .iter()
            .flatten()
            .filter_map(|res| res.arn.as_deref())
            .collect(),
        request_key_id: r.request_str("keyId"),
        region: r.aws_region.as_deref(),
        account: r.account(),
    })
}

/// [`key_arn`] over fields read any way.
pub fn key_arn_of(f: &KeyFields<'_>) -> Option<String> {
    if let Some(first) = f.error_message.and_then(|m| m.split_whitespace().next())
        && crate::arn::is_kms_key(first)
    {
        return Some(first.to_owned());
    }
    if let Some(id) = f.response_key_id.filter(|k| crate::arn::is_kms_key(k)) {
        return Some(id.to_owned());
    }
    if let Some(arn) = f.resource_arns.iter().find(|a| crate::arn::is_kms_key(a)) {
        return Some((*arn).to_owned());
    }
    let id = f.request_key_id?;
    if crate::arn::is_kms_key(id) {
        return Some(id.to_owned());
    }
    if id.starts_with("alias/") || crate::arn::Arn::parse(id).is_some() {
        return None;
    }
    Some(crate::arn::KeyArn::from_id(f.region?, f.account?, id).arn)
}

/// The alias a caller named the key by, if any (`alias/...` or an alias ARN).
pub fn key_alias(r: &Record) -> Option<String> {
    let p = r.request_parameters.as_ref()?;
    ["keyId", "aliasName", "targetKeyId"].iter().find_map(|k| {
        let v = p.get(*k)?.as_str()?;
        if v.starts_with("alias/") {
            Some(v.to_owned())
        } else {
            crate::arn::Arn::parse(v)?.kms_alias().map(str::to_owned)
        }
    })
}
