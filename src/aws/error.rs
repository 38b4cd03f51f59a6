//! One error type for every AWS call, with a bounded `error_type` label.
//!
//! Whether an error is retried is a pure decision over its code and HTTP status
//! ([`classify`]): throttling, 5xx, timeouts and transport failures are; access denied, not
//! found, invalid state and validation errors are not (retrying cannot fix them).

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The AWS services trailguard calls (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    CloudTrail,
    Kms,
    Iam,
    Sns,
    Sts,
    DynamoDb,
    Sqs,
    S3,
    Organizations,
    Account,
}

impl Service {
    pub const ALL: &'static [Service] = &[
        Service::CloudTrail,
        Service::Kms,
        Service::Iam,
        Service::Sns,
        Service::Sts,
        Service::DynamoDb,
        Service::Sqs,
        Service::S3,
        Service::Organizations,
        Service::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::CloudTrail => "cloudtrail",
            Service::Kms => "kms",
            Service::Iam => "iam",
            Service::Sns => "sns",
            Service::Sts => "sts",
            Service::DynamoDb => "dynamodb",
            Service::Sqs => "sqs",
            Service::S3 => "s3",
            Service::Organizations => "organizations",
            Service::Account => "account",
        }
    }
}

/// What kind of failure an AWS error is (a metric label; a small fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    Throttled,
    AccessDenied,
    Credentials,
    NotFound,
    InvalidState,
    Validation,
    Server,
    Timeout,
    Transport,
    Other,
}

impl ErrorType {
    pub const ALL: &'static [ErrorType] = &[
        ErrorType::Throttled,
        ErrorType::AccessDenied,
        ErrorType::Credentials,
        ErrorType::NotFound,
        ErrorType::InvalidState,
        ErrorType::Validation,
        ErrorType::Server,
        ErrorType::Timeout,
        ErrorType::Transport,
        ErrorType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Throttled => "throttled",
            ErrorType::AccessDenied => "access_denied",
            ErrorType::Credentials => "credentials",
            ErrorType::NotFound => "not_found",
            ErrorType::InvalidState => "invalid_state",
            ErrorType::Validation => "validation",
            ErrorType::Server => "server",
            ErrorType::Timeout => "timeout",
            ErrorType::Transport => "transport",
            ErrorType::Other => "other",
        }
    }

    /// Worth another attempt: the same request may succeed later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorType::Throttled | ErrorType::Server | ErrorType::Timeout | ErrorType::Transport
        )
    }
}

/// Classifies an AWS error by its code and HTTP status. Pure.
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorType {
    if let Some(code) = code {
        let t = match code {
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "Throttled"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "KMSThrottlingException"
            | "KMSThrottling"
            | "ProvisionedThroughputExceededException" => Some(ErrorType::Throttled),
            "AccessDenied"
            | "AccessDeniedException"
            | "AuthorizationError"
            | "UnauthorizedOperation"
            | "KMSAccessDeniedException"
            | "KMSAccessDenied" => Some(ErrorType::AccessDenied),
            "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken" => Some(ErrorType::Credentials),
            "NotFoundException"
            | "NoSuchEntity"
            | "NotFound"
            | "ResourceNotFoundException"
            | "NoSuchKey"
            | "NoSuchBucket"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist" => Some(ErrorType::NotFound),
            "KMSInvalidStateException"
            | "DisabledException"
            | "KMSInvalidState"
            | "KMSDisabled"
            | "KMSDisabledException" => Some(ErrorType::InvalidState),
            "InternalFailure"
            | "InternalError"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "KMSInternalException"
            | "ServiceFailure"
            | "DependencyTimeoutException" => Some(ErrorType::Server),
            "RequestTimeout" | "RequestTimeoutException" => Some(ErrorType::Timeout),
            c if c.starts_with("Invalid")
                || c.starts_with("Missing")
                || c.starts_with("Malformed")
                || c.contains("Validation")
                || c == "ParameterValueInvalid"
                || c == "SerializationException" =>
            {
                Some(ErrorType::Validation)
            }
            _ => None,
        };
        if let Some(t) = t {
            return t;
        }
    }
    match status {
        Some(429) => ErrorType::Throttled,
        Some(s) if s >= 500 => ErrorType::Server,
        Some(403) => ErrorType::AccessDenied,
        Some(404) => ErrorType::NotFound,
        Some(_) => ErrorType::Other,
        None => ErrorType::Transport,
    }
}

/// An AWS call that failed, with what an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub service: Service,
    pub operation: &'static str,
    pub error_type: ErrorType,
    /// The AWS error code, if the service answered with one.
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "{} {}: {code}: {}",
                self.service.as_str(),
                self.operation,
                self.message
            ),
            None => write!(
                f,
                "{} {}: {}",
                self.service.as_str(),
                self.operation,
                self.message
            ),
        }
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// An error that did not come from an AWS response.
    pub fn local(
        service: Service,
        operation: &'static str,
        error_type: ErrorType,
        message: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            error_type,
            code: None,
            message: message.into(),
        }
    }

    pub fn retryable(&self) -> bool {
        self.error_type.retryable()
    }

    /// `Code: message` (or the message alone), for notifications and logs.
    pub fn short(&self) -> String {
        match &self.code {
            Some(c) => format!("{c}: {}", self.message),
            None => self.message.clone(),
        }
    }

    /// Reads an SDK error.
    pub fn from_sdk<E>(service: Service, operation: &'static str, e: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        match e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                let code = err.code().map(str::to_owned);
                Self {
                    service,
                    operation,
                    error_type: classify(code.as_deref(), status),
                    message: err.message().unwrap_or("(no message)").to_owned(),
                    code,
                }
            }
            SdkError::TimeoutError(_) => Self::local(service, operation, ErrorType::Timeout, "timed out"),
            other => {
                let text = aws_smithy_types::error::display::DisplayErrorContext(other).to_string();
                let error_type = if text.contains("timeout") || text.contains("timed out") {
                    ErrorType::Timeout
                } else if text.contains("credentials") || text.contains("identity") {
                    ErrorType::Credentials
                } else if matches!(other, SdkError::ConstructionFailure(_)) {
                    ErrorType::Other
                } else {
                    classify(None, status)
                };
                Self::local(service, operation, error_type, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retried_client_errors_are_not() {
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400)),
            ErrorType::Throttled
        );
        assert_eq!(classify(Some("Throttling"), Some(400)), ErrorType::Throttled);
        assert_eq!(classify(None, Some(503)), ErrorType::Server);
        assert_eq!(classify(None, None), ErrorType::Transport);
        assert_eq!(
            classify(Some("InvalidNextTokenException"), Some(400)),
            ErrorType::Validation
        );
        assert_eq!(
            classify(Some("AccessDeniedException"), Some(400)),
            ErrorType::AccessDenied
        );
        assert_eq!(
            classify(Some("KMSInvalidStateException"), Some(400)),
            ErrorType::InvalidState
        );
        assert_eq!(classify(Some("NoSuchEntity"), Some(404)), ErrorType::NotFound);
        assert_eq!(classify(Some("SomethingNew"), Some(400)), ErrorType::Other);
        for t in ErrorType::ALL {
            let expected = matches!(
                t,
                ErrorType::Throttled | ErrorType::Server | ErrorType::Timeout | ErrorType::Transport
            );
            assert_eq!(t.retryable(), expected, "{t:?}");
        }
    }
}
