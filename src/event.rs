//! A typed view of one CloudTrail record: the fields trailguard reads, nothing else.
//!
//! Pure: no I/O. Unknown fields are ignored; every field may be absent, since real records are
//! often partial (service events, old `eventVersion`s, sanitised samples).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Record {
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    pub event_time: Option<String>,
    pub event_source: Option<String>,
    pub event_name: Option<String>,
    pub aws_region: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub user_identity: Option<UserIdentity>,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_parameters: Option<Value>,
    pub response_elements: Option<Value>,
    pub resources: Option<Vec<Resource>>,
    pub recipient_account_id: Option<String>,
    pub read_only: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub user_name: Option<String>,
    pub access_key_id: Option<String>,
    pub invoked_by: Option<String>,
    pub session_context: Option<SessionContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionContext {
    pub session_issuer: Option<SessionIssuer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionIssuer {
    pub arn: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resource {
    #[serde(rename = "ARN", alias = "arn")]
    pub arn: Option<String>,
    #[serde(rename = "accountId")]
    pub account_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Record {
    /// Parses one record (the `CloudTrailEvent` string of a lookup, or a log file's entry).
    /// Any JSON object is a record; every field may be missing.
    pub fn parse(json: &str) -> Result<Self, EventError> {
        Ok(serde_json::from_str(json)?)
    }

    pub fn event_id(&self) -> &str {
        self.event_id.as_deref().unwrap_or_default()
    }

    pub fn source(&self) -> &str {
        self.event_source.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.event_name.as_deref().unwrap_or_default()
    }

    pub fn succeeded(&self) -> bool {
        self.error_code.is_none() && self.error_message.is_none()
    }

    /// The account the record was written for: `recipientAccountId`, else the caller's account.
    pub fn account(&self) -> Option<&str> {
        self.recipient_account_id
            .as_deref()
            .or_else(|| self.user_identity.as_ref().and_then(|u| u.account_id.as_deref()))
    }

    /// The caller's ARN; for an assumed role, the session ARN (`assumed-role/<role>/<session>`).
    pub fn principal_arn(&self) -> Option<&str> {
        self.user_identity.as_ref().and_then(|u| u.arn.as_deref())
    }

    /// A string member of `requestParameters`.
    pub fn request_str(&self, name: &str) -> Option<&str> {
        self.request_parameters.as_ref()?.get(name)?.as_str()
    }

    /// A string member of `responseElements`.
    pub fn response_str(&self, name: &str) -> Option<&str> {
        self.response_elements.as_ref()?.get(name)?.as_str()
    }
}
