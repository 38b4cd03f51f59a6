//! Test controls under `/_sandbox/` (documented in the crate README).

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};
use serde_json::{Value, json};

use crate::state::{AccessKeyOverride, Fault, IdentitySpec, Settings, Shared};
use crate::wire::{self, Body, Service};

fn ok(v: Value) -> Response<Body> {
    wire::control_json(200, &v)
}

fn bad(msg: impl std::fmt::Display) -> Response<Body> {
    wire::control_json(400, &json!({ "error": msg.to_string() }))
}

fn query(parts: &Parts, key: &str) -> Option<String> {
    let q = parts.uri.query()?;
    wire::form(q.as_bytes())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRequest {
    access_key_id: String,
    identity: IdentitySpec,
}

impl Shared {
    /// Injects raw CloudTrail records (array, log file, NDJSON or `lookup-events` output).
    /// `delay_seconds` overrides the visibility delay for these records; `retime` shifts their
    /// `eventTime`s so the newest is now, keeping their spacing (to replay old records within
    /// the 90-day retention).
    pub fn inject_records(
        &self,
        body: &[u8],
        delay_seconds: Option<f64>,
        retime: bool,
    ) -> Result<Vec<String>, String> {
        let mut records = crate::cloudtrail::parse_records(body)?;
        let now = self.now();
        if retime {
            crate::cloudtrail::retime(&mut records, now);
        }
        let mut st = self.lock();
        let delay = delay_seconds.unwrap_or(st.settings.visibility_delay_seconds);
        let delay = chrono::Duration::milliseconds((delay * 1000.0) as i64);
        let stored: Vec<_> = records
            .iter()
            .filter(|r| r.is_object())
            .map(|r| st.events.insert(r, &self.default_account, now, delay))
            .collect();
        drop(st);
        self.offer(&stored);
        Ok(stored.into_iter().map(|e| e.event_id).collect())
    }

    /// Hands freshly stored records on, as CloudTrail does: to the organization trail's next
    /// log file and to EventBridge.
    pub(crate) fn offer(&self, stored: &[crate::cloudtrail::StoredEvent]) {
        crate::orgtrail::offer(self, stored);
        crate::eventbridge::offer(self, stored);
    }

    /// Configures (or with `None` removes) the organization trail.
    pub fn set_org_trail(&self, config: Option<crate::orgtrail::OrgTrailConfig>) {
        self.lock().org_trail = config.map(crate::orgtrail::OrgTrail::new);
        self.org_trail_changed.notify_waiters();
    }

    /// Backdates an access key's creation and last use.
    pub fn set_access_key(&self, access_key_id: &str, o: AccessKeyOverride) {
        self.lock().key_overrides.insert(access_key_id.to_owned(), o);
    }
}

pub async fn handle(shared: &Shared, parts: &Parts, body: Bytes) -> Response<Body> {
    let path = parts.uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path
        .trim_start_matches("/_sandbox")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["health"]) => ok(json!({ "status": "ok", "moto": shared.moto_url })),
        (&Method::POST, ["reset"]) => {
            shared.reset();
            let mut p = parts.clone();
            p.uri = "/moto-api/reset".parse().expect("static uri");
            p.method = Method::POST;
            match crate::server::forward(&shared.moto_url, &p, Bytes::new()).await {
                Ok(_) => ok(json!({ "reset": true })),
                Err(e) => bad(e),
            }
        }
        (&Method::GET, ["settings"]) => {
            ok(serde_json::to_value(shared.lock().settings.clone()).expect("settings serialize"))
        }
        (&Method::POST, ["settings"]) => match serde_json::from_slice::<Settings>(&body) {
            Ok(s) => {
                shared.set_settings(s.clone());
                ok(serde_json::to_value(s).expect("settings serialize"))
            }
            Err(e) => bad(format!("settings: {e}")),
        },
        (&Method::POST, ["identities"]) => match serde_json::from_slice::<IdentityRequest>(&body) {
            Ok(r) => {
                shared.set_identity(&r.access_key_id, r.identity);
                ok(json!({ "access_key_id": r.access_key_id }))
            }
            Err(e) => bad(format!("identity: {e}")),
        },
        (&Method::POST, ["faults", service]) => {
            let Some(svc) = Service::from_name(service) else {
                return bad(format!("unknown service {service}"));
            };
            match serde_json::from_slice::<Fault>(&body) {
                Ok(f) => {
                    shared.set_fault(svc, f);
                    ok(json!({ "service": service }))
                }
                Err(e) => bad(format!("fault: {e}")),
            }
        }
        (&Method::DELETE, ["faults"]) => {
            shared.clear_faults();
            ok(json!({ "cleared": true }))
        }
        (&Method::DELETE, ["faults", service]) => {
            let Some(svc) = Service::from_name(service) else {
                return bad(format!("unknown service {service}"));
            };
            shared.clear_fault(svc);
            ok(json!({ "cleared": service }))
        }
        (&Method::POST, ["cloudtrail", "records"]) => {
            let delay = query(parts, "delay_seconds").and_then(|d| d.parse().ok());
            let retime = query(parts, "retime").is_some_and(|v| v != "0" && v != "false");
            match shared.inject_records(&body, delay, retime) {
                Ok(ids) => ok(json!({ "injected": ids.len(), "event_ids": ids })),
                Err(e) => bad(e),
            }
        }
        (&Method::GET, ["cloudtrail", "records"]) => {
            let account = query(parts, "account").unwrap_or_else(|| shared.default_account.clone());
            let region = query(parts, "region").unwrap_or_else(|| "us-east-1".into());
            let st = shared.lock();
            let records: Vec<Value> = st
                .events
                .records(&account, &region)
                .iter()
                .filter_map(|e| serde_json::from_str(&e.json).ok())
                .collect();
            ok(json!({ "Records": records }))
        }
        (&Method::POST, ["iam", "access-keys", key]) => {
            match serde_json::from_slice::<AccessKeyOverride>(&body) {
                Ok(o) => {
                    shared.set_access_key(key, o);
                    ok(json!({ "access_key_id": key }))
                }
                Err(e) => bad(format!("access key: {e}")),
            }
        }
        (&Method::POST, ["org-trail"]) => {
            match serde_json::from_slice::<crate::orgtrail::OrgTrailConfig>(&body) {
                Ok(c) => {
                    shared.set_org_trail(Some(c.clone()));
                    ok(serde_json::to_value(c).expect("config serializes"))
                }
                Err(e) => bad(format!("org trail: {e}")),
            }
        }
        (&Method::GET, ["org-trail"]) => {
            let st = shared.lock();
            match st.org_trail.as_ref() {
                Some(t) => ok(
                    json!({ "config": t.config, "held": t.held(), "files_written": t.files_written, "last_error": t.last_error }),
                ),
                None => ok(json!({ "config": null })),
            }
        }
        (&Method::DELETE, ["org-trail"]) => {
            shared.set_org_trail(None);
            ok(json!({ "cleared": true }))
        }
        (&Method::POST, ["org-trail", "flush"]) => match crate::orgtrail::flush(shared).await {
            Ok(keys) => ok(json!({ "written": keys })),
            Err(e) => bad(e),
        },
        (&Method::POST, ["organization", "accounts"]) => {
            match serde_json::from_slice::<crate::organizations::AccountsRequest>(&body) {
                Ok(r) => match crate::organizations::create_accounts(shared, &r).await {
                    Ok(org) => ok(serde_json::to_value(org).expect("organization serializes")),
                    Err(e) => bad(e),
                },
                Err(e) => bad(format!("accounts: {e}")),
            }
        }
        (&Method::GET, ["eventbridge"]) => ok(shared.lock().eventbridge.stats()),
        (&Method::GET, ["counters"]) => {
            ok(serde_json::to_value(&shared.lock().counters).expect("counters serialize"))
        }
        (&Method::DELETE, ["counters"]) => {
            shared.lock().counters.clear();
            ok(json!({ "cleared": true }))
        }
        _ => wire::control_json(
            404,
            &json!({ "error": format!("no control at {} {}", parts.method, parts.uri.path()) }),
        ),
    }
}
