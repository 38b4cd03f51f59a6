//! S3 over moto: routing, operation names, and conditional writes as AWS makes them.
//!
//! Requests come path-style (`/bucket/key`) or virtual-host style (`Host: bucket.localhost:port`,
//! rewritten to path-style for moto). Operations are named from the SDK's `x-id` query parameter
//! or from the method, path and sub-resource, so counters and faults work as for other services.
//!
//! Conditional writes: moto 5.2.1 checks `If-None-Match: *` and `If-Match: <etag>` on
//! `PutObject` (412 `PreconditionFailed`; `If-Match` on a missing key: 404 `NoSuchKey`) and
//! `If-Match` on `DeleteObject`, but checks and writes in two steps, so concurrent writers could
//! both pass. The sandbox serializes every write to one key (put, copy, complete multipart,
//! delete), making the check and the write one step as on AWS, and refuses what AWS refuses:
//! `If-None-Match` with anything but `*` on a write (501 `NotImplemented`).

use http::Response;
use http::request::Parts;

use crate::server::{self, Ctx};
use crate::wire::{self, Body};

/// Rewrites a virtual-host style request (`bucket.localhost`, `bucket.127.0.0.1`) to
/// path-style, which is what moto is given.
pub fn to_path_style(parts: &mut Parts) {
    let Some(host) = wire::header_str(&parts.headers, "host") else {
        return;
    };
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let bucket = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .find_map(|suffix| host.strip_suffix(&format!(".{suffix}")))
        .filter(|b| !b.is_empty())
        .map(str::to_owned);
    let Some(bucket) = bucket else { return };
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Ok(uri) = format!("/{bucket}{pq}").parse() {
        parts.uri = uri;
    }
}

fn query_keys(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| wire::form(q.as_bytes()))
        .unwrap_or_default()
}

/// (bucket, key) of a path-style request; the key is percent-decoded.
pub fn bucket_and_key(parts: &Parts) -> (String, Option<String>) {
    let path = parts.uri.path().trim_start_matches('/');
    match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b.to_owned(), Some(decode_path(k))),
        Some((b, _)) => (b.to_owned(), None),
        None => (path.to_owned(), None),
    }
}

fn decode_path(s: &str) -> String {
    // `+` is literal in a path; only `%XX` escapes are decoded.
    wire::percent_decode(&s.replace('+', "%2B"))
}

fn camel(sub: &str) -> String {
    sub.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The S3 operation a request stands for.
pub fn operation(parts: &Parts) -> String {
    let query = query_keys(parts);
    if let Some(id) = wire::form_get(&query, "x-id") {
        return id.to_owned();
    }
    let (bucket, key) = bucket_and_key(parts);
    let has = |k: &str| query.iter().any(|(q, _)| q == k);
    let method = parts.method.as_str();
    if bucket.is_empty() {
        return "ListBuckets".into();
    }
    let sub = [
        "notification",
        "policy",
        "versioning",
        "tagging",
        "acl",
        "location",
        "uploads",
        "delete",
    ]
    .into_iter()
    .find(|s| has(s));
    match (method, key.is_some(), sub) {
        ("PUT", false, Some("notification")) => "PutBucketNotificationConfiguration".into(),
        ("GET", false, Some("notification")) => "GetBucketNotificationConfiguration".into(),
        ("GET", false, Some("location")) => "GetBucketLocation".into(),
        ("POST", false, Some("delete")) => "DeleteObjects".into(),
        ("GET", false, Some("uploads")) => "ListMultipartUploads".into(),
        ("PUT", false, None) => "CreateBucket".into(),
        ("HEAD", false, _) => "HeadBucket".into(),
        ("DELETE", false, None) => "DeleteBucket".into(),
        ("GET", false, None) if wire::form_get(&query, "list-type") == Some("2") => "ListObjectsV2".into(),
        ("GET", false, None) => "ListObjects".into(),
        ("PUT", false, Some(s)) => format!("PutBucket{}", camel(s)),
        ("GET", false, Some(s)) => format!("GetBucket{}", camel(s)),
        ("DELETE", false, Some(s)) => format!("DeleteBucket{}", camel(s)),
        ("POST", true, Some("uploads")) => "CreateMultipartUpload".into(),
        ("POST", true, _) if has("uploadId") => "CompleteMultipartUpload".into(),
        ("PUT", true, _) if has("partNumber") => "UploadPart".into(),
        ("PUT", true, None) if parts.headers.contains_key("x-amz-copy-source") => "CopyObject".into(),
        ("PUT", true, None) => "PutObject".into(),
        ("GET", true, None) => "GetObject".into(),
        ("HEAD", true, _) => "HeadObject".into(),
        ("DELETE", true, None) if has("uploadId") => "AbortMultipartUpload".into(),
        ("DELETE", true, None) => "DeleteObject".into(),
        ("PUT", true, Some(s)) => format!("PutObject{}", camel(s)),
        ("GET", true, Some(s)) => format!("GetObject{}", camel(s)),
        ("DELETE", true, Some(s)) => format!("DeleteObject{}", camel(s)),
        _ => format!("{method}Unknown"),
    }
}

/// Writes that replace or remove one object, and so must not interleave.
fn writes_object(op: &str) -> bool {
    matches!(
        op,
        "PutObject" | "CopyObject" | "CompleteMultipartUpload" | "DeleteObject"
    )
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    let op = ctx.operation.as_str();
    if !writes_object(op) {
        return ctx.pass().await;
    }
    if let Some(v) = wire::header_str(&ctx.parts.headers, "if-none-match")
        && v.trim() != "*"
    {
        return ctx.error(
            501,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
        );
    }
    let (bucket, key) = bucket_and_key(&ctx.parts);
    let lock = ctx
        .shared
        .write_lock(&format!("s3:{bucket}/{}", key.unwrap_or_default()));
    let _held = lock.lock().await;
    match server::forward(&ctx.shared.moto_url, &ctx.parts, ctx.body.clone()).await {
        Ok(up) => up.into_response(),
        Err(e) => ctx.error(502, "InternalError", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, host: &str) -> Parts {
        let (p, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts();
        p
    }

    #[test]
    fn names_and_styles() {
        let cases = [
            ("PUT", "/b/k?x-id=PutObject", "PutObject"),
            ("PUT", "/b?notification", "PutBucketNotificationConfiguration"),
            ("GET", "/b?list-type=2&prefix=AWSLogs", "ListObjectsV2"),
            ("PUT", "/b", "CreateBucket"),
            ("GET", "/", "ListBuckets"),
            ("HEAD", "/b/k", "HeadObject"),
            ("DELETE", "/b/a/b/c", "DeleteObject"),
            ("PUT", "/b?versioning", "PutBucketVersioning"),
        ];
        for (m, uri, want) in cases {
            assert_eq!(operation(&parts(m, uri, "127.0.0.1:1")), want, "{m} {uri}");
        }
        let mut p = parts("PUT", "/dir/a%20b?x-id=PutObject", "logs.localhost:4566");
        to_path_style(&mut p);
        assert_eq!(p.uri.path(), "/logs/dir/a%20b");
        assert_eq!(bucket_and_key(&p), ("logs".into(), Some("dir/a b".into())));
        let mut p = parts("GET", "/b/k", "127.0.0.1:4566");
        to_path_style(&mut p);
        assert_eq!(p.uri.path(), "/b/k");
    }
}
