//! What the sandbox reads off an AWS request, and how it writes AWS error responses.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// The AWS services the sandbox knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    CloudTrail,
    Kms,
    Iam,
    Sns,
    Sqs,
    Sts,
    S3,
    Events,
    Organizations,
    DynamoDb,
    Account,
    Other,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::CloudTrail => "cloudtrail",
            Service::Kms => "kms",
            Service::Iam => "iam",
            Service::Sns => "sns",
            Service::Sqs => "sqs",
            Service::Sts => "sts",
            Service::S3 => "s3",
            Service::Events => "events",
            Service::Organizations => "organizations",
            Service::DynamoDb => "dynamodb",
            Service::Account => "account",
            Service::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "cloudtrail" => Service::CloudTrail,
            "kms" => Service::Kms,
            "iam" => Service::Iam,
            "sns" => Service::Sns,
            "sqs" => Service::Sqs,
            "sts" => Service::Sts,
            "s3" => Service::S3,
            "events" => Service::Events,
            "organizations" => Service::Organizations,
            "dynamodb" => Service::DynamoDb,
            "account" => Service::Account,
            _ => return None,
        })
    }

    /// JSON-protocol services answer errors as JSON; query-protocol ones as XML.
    fn json_errors(self, headers: &HeaderMap) -> bool {
        match self {
            Service::CloudTrail
            | Service::Kms
            | Service::Events
            | Service::Organizations
            | Service::DynamoDb
            | Service::Account => true,
            Service::Sqs => headers.contains_key("x-amz-target"),
            _ => false,
        }
    }
}

/// The SigV4 credential scope: `Credential=AKID/date/region/service/aws4_request`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

pub fn scope(headers: &HeaderMap) -> Scope {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Scope::default();
    };
    let Some(cred) = auth.split("Credential=").nth(1) else {
        return Scope::default();
    };
    let cred = cred.split([',', ' ']).next().unwrap_or_default();
    let mut parts = cred.split('/');
    Scope {
        access_key_id: parts.next().unwrap_or_default().to_owned(),
        region: parts.nth(1).unwrap_or_default().to_owned(),
        service: parts.next().unwrap_or_default().to_owned(),
    }
}

/// Which service a request is for: by `X-Amz-Target` first, then by the signing scope.
pub fn service(headers: &HeaderMap, scope: &Scope) -> Service {
    if let Some(target) = target(headers) {
        if target.starts_with("CloudTrail_20131101.")
            || target.starts_with("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.")
        {
            return Service::CloudTrail;
        }
        if target.starts_with("TrentService.") {
            return Service::Kms;
        }
        if target.starts_with("AmazonSQS.") {
            return Service::Sqs;
        }
        if target.starts_with("AWSEvents.") {
            return Service::Events;
        }
        if target.starts_with("AWSOrganizationsV20161128.") {
            return Service::Organizations;
        }
        if target.starts_with("DynamoDB_20120810.") {
            return Service::DynamoDb;
        }
    }
    Service::from_name(&scope.service).unwrap_or(Service::Other)
}

pub fn target(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok())
}

/// The operation of a JSON-protocol request (after the last `.` of `X-Amz-Target`).
pub fn json_operation(headers: &HeaderMap) -> Option<String> {
    target(headers)
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned)
}

/// Decodes an `application/x-www-form-urlencoded` body (query protocol).
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes and `+` (form encoding).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An AWS error response in the protocol of `service`.
pub fn error(
    service: Service,
    headers: &HeaderMap,
    status: u16,
    code: &str,
    message: &str,
) -> Response<Body> {
    let rid = request_id();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut builder = Response::builder()
        .status(status)
        .header("x-amzn-requestid", &rid)
        .header("x-amzn-errortype", code);
    let body = if service == Service::S3 {
        builder = builder.header("content-type", "application/xml");
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{rid}</RequestId></Error>",
            xml_escape(code),
            xml_escape(message)
        )
    } else if service.json_errors(headers) {
        builder = builder.header("content-type", "application/x-amz-json-1.1");
        serde_json::json!({ "__type": code, "message": message }).to_string()
    } else {
        builder = builder.header("content-type", "text/xml");
        let kind = if status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>",
            xml_escape(code),
            xml_escape(message)
        )
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// A JSON-protocol success response.
pub fn json_ok(value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", request_id())
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts")
}

/// A plain JSON response for the control API.
pub fn control_json(status: u16, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts")
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Copies the headers that matter for forwarding, dropping hop-by-hop ones.
pub fn forward_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if matches!(
            n,
            "host" | "connection" | "content-length" | "transfer-encoding" | "expect"
        ) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok())
}

/// An HTTP date (RFC 9110 IMF-fixdate) for the `Date` header.
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A JSON-protocol request signed for `service` in `region` as `account`, for the sandbox's own
/// calls to moto (moto takes the account from `x-moto-account-id`).
pub fn internal_headers(account: &str, region: &str, service: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIASANDBOXINTERNAL/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    if let Ok(v) = HeaderValue::from_str(&auth) {
        h.insert("authorization", v);
    }
    if let Ok(v) = HeaderValue::from_str(account) {
        h.insert("x-moto-account-id", v);
    }
    h
}

/// Percent-encodes everything but unreserved characters (RFC 3986), and `/` when `keep_slash`.
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
