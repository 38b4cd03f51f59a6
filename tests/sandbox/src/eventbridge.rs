//! CloudTrail events on EventBridge, as AWS delivers them.
//!
//! moto stores rules but generates no CloudTrail events and ignores a rule's `State`. Here every
//! record the sandbox writes or injects is offered to the rules on the **default** bus of its
//! account and region, after `eventbridge_delay_ms` and unless lost (`eventbridge_loss_probability`:
//! CloudTrail to EventBridge is best effort), as the envelope AWS documents:
//!
//! `{"version":"0","id":<uuid>,"detail-type":"AWS API Call via CloudTrail","source":"aws.<service>",
//!   "account":<recipientAccountId>,"time":<eventTime>,"region":<awsRegion>,"resources":[],
//!   "detail":<the record unchanged>}`
//!
//! Rules are read from moto (the `events` API is forwarded, so tests use the real SDK) and cached
//! until the next `events` call. A rule's `State` is honoured: `DISABLED` matches nothing,
//! `ENABLED` everything but read-only management events delivered by CloudTrail (`readOnly:
//! true`, such as a failed `Decrypt`), `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS` those too;
//! the state is applied by every rule the event meets, on the bus it reaches. Patterns are matched
//! by [`crate::pattern`]. Targets:
//!
//! - SQS queues (`arn:aws:sqs:<region>:<account>:<name>`): the body is the envelope as JSON, or
//!   the target's `Input`, or the part its `InputPath` (`$.a.b`) selects; FIFO queues get the
//!   target's `MessageGroupId` and the event id as deduplication id.
//! - Event buses (`arn:aws:events:<region>:<account>:event-bus/<name>`): the event is evaluated
//!   again against that bus's rules in that account and region, keeping its `account`. Only one
//!   such hop is followed, as EventBridge forwards bus to bus once.
//!
//! Other targets are ignored; `InputTransformer` is not applied (the whole event is sent).

use std::collections::HashMap;
use std::sync::Arc;

use http::Response;
use serde_json::{Value, json};

use crate::cloudtrail::StoredEvent;
use crate::server::Ctx;
use crate::state::Shared;
use crate::wire::Body;

/// A record on its way from CloudTrail to EventBridge.
#[derive(Debug)]
pub struct Offer {
    pub account: String,
    pub region: String,
    pub event: Value,
    pub due: tokio::time::Instant,
}

/// One rule as moto keeps it, with its targets.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub state: String,
    pub pattern: Option<Value>,
    pub targets: Vec<Value>,
}

/// Rules read from moto per (account, region, bus).
#[derive(Debug, Default)]
pub struct RuleCache {
    /// Whether any `events` call has been seen: until then there can be no rule to offer to.
    pub used: bool,
    generation: u64,
    rules: HashMap<(String, String, String), Vec<Rule>>,
    /// Records handed to EventBridge, lost on the way, fully evaluated, and messages sent to
    /// queues (`GET /_sandbox/eventbridge`): a test waits for `processed + lost == offered`.
    pub offered: u64,
    pub lost: u64,
    pub processed: u64,
    pub sent: u64,
}

impl RuleCache {
    pub fn stats(&self) -> Value {
        json!({ "offered": self.offered, "lost": self.lost, "processed": self.processed, "sent": self.sent })
    }
}

/// The envelope EventBridge wraps a CloudTrail record in.
pub fn envelope(record: &Value, account: &str, region: &str) -> Value {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or_default();
    let service = s("eventSource").trim_end_matches(".amazonaws.com");
    let detail_type = match s("eventType") {
        "AwsConsoleSignIn" => "AWS Console Sign In via CloudTrail",
        "AwsServiceEvent" => "AWS Service Event via CloudTrail",
        "AwsConsoleAction" => "AWS Console Action via CloudTrail",
        _ => "AWS API Call via CloudTrail",
    };
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": format!("aws.{service}"),
        "account": account,
        "time": s("eventTime"),
        "region": region,
        "resources": [],
        "detail": record,
    })
}

/// Whether CloudTrail delivers this event only to rules enabled for all management events.
fn read_only_management(event: &Value) -> bool {
    let d = &event["detail"];
    event["detail-type"]
        .as_str()
        .is_some_and(|t| t.ends_with("via CloudTrail"))
        && d["readOnly"] == Value::Bool(true)
        && d["managementEvent"] != Value::Bool(false)
}

/// Whether a rule in `state` sees `event`.
pub fn state_admits(state: &str, event: &Value) -> bool {
    match state {
        "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" => true,
        "ENABLED" => !read_only_management(event),
        _ => false,
    }
}

/// Queues freshly stored records for EventBridge (nothing to do until a rule can exist).
pub fn offer(shared: &Shared, stored: &[StoredEvent]) {
    let (delay, loss) = {
        let mut st = shared.lock();
        if !st.eventbridge.used {
            return;
        }
        st.eventbridge.offered += stored.len() as u64;
        (
            st.settings.eventbridge_delay_ms,
            st.settings.eventbridge_loss_probability,
        )
    };
    let due = tokio::time::Instant::now() + std::time::Duration::from_millis(delay);
    for e in stored {
        if loss > 0.0 && rand::random::<f64>() < loss {
            shared.lock().eventbridge.lost += 1;
            continue;
        }
        let Ok(record) = serde_json::from_str::<Value>(&e.json) else {
            continue;
        };
        let _ = shared.eventbridge_tx.send(Offer {
            event: envelope(&record, &e.account, &e.region),
            account: e.account.clone(),
            region: e.region.clone(),
            due,
        });
    }
}

/// Delivers offered records until the sandbox stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(mut rx) = shared
        .eventbridge_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    while let Some(offer) = rx.recv().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(offer.due).await;
            deliver(&shared, &offer.account, &offer.region, "default", &offer.event, 0).await;
            shared.lock().eventbridge.processed += 1;
        });
    }
}

/// The `events` API: forwarded to moto; any call may change rules, so the cache is dropped.
pub async fn handle_api(ctx: &Ctx) -> Response<Body> {
    let resp = ctx.pass().await;
    let mut st = ctx.shared.lock();
    st.eventbridge.used = true;
    st.eventbridge.generation += 1;
    st.eventbridge.rules.clear();
    drop(st);
    resp
}

async fn moto_events(shared: &Shared, account: &str, region: &str, op: &str, body: Value) -> Option<Value> {
    let up = crate::moto::json_as(
        shared,
        account,
        region,
        "events",
        &format!("AWSEvents.{op}"),
        &body,
    )
    .await
    .ok()?;
    up.status.is_success().then(|| up.json()).flatten()
}

async fn fetch_rules(shared: &Shared, account: &str, region: &str, bus: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "EventBusName": bus });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let Some(page) = moto_events(shared, account, region, "ListRules", body).await else {
            break;
        };
        for r in page["Rules"].as_array().into_iter().flatten() {
            let name = r["Name"].as_str().unwrap_or_default().to_owned();
            let targets = moto_events(
                shared,
                account,
                region,
                "ListTargetsByRule",
                json!({ "Rule": name, "EventBusName": bus }),
            )
            .await
            .and_then(|t| t["Targets"].as_array().cloned())
            .unwrap_or_default();
            rules.push(Rule {
                state: r["State"].as_str().unwrap_or("ENABLED").to_owned(),
                pattern: r["EventPattern"]
                    .as_str()
                    .and_then(|p| serde_json::from_str(p).ok()),
                name,
                targets,
            });
        }
        token = page["NextToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    rules
}

async fn rules(shared: &Shared, account: &str, region: &str, bus: &str) -> Vec<Rule> {
    let place = (account.to_owned(), region.to_owned(), bus.to_owned());
    let generation = {
        let st = shared.lock();
        if let Some(r) = st.eventbridge.rules.get(&place) {
            return r.clone();
        }
        st.eventbridge.generation
    };
    let fetched = fetch_rules(shared, account, region, bus).await;
    let mut st = shared.lock();
    if st.eventbridge.generation == generation {
        st.eventbridge.rules.insert(place, fetched.clone());
    }
    fetched
}

/// What a target receives: the event, its `Input`, or the part `InputPath` selects.
fn target_body(target: &Value, event: &Value) -> String {
    if let Some(input) = target["Input"].as_str() {
        return input.to_owned();
    }
    if let Some(path) = target["InputPath"].as_str() {
        let mut v = event;
        for part in path.trim_start_matches('$').split('.').filter(|p| !p.is_empty()) {
            v = &v[part];
        }
        return v.to_string();
    }
    event.to_string()
}

/// Evaluates `event` against the rules of one bus and delivers to the targets of those it
/// matches.
async fn deliver(shared: &Shared, account: &str, region: &str, bus: &str, event: &Value, hops: u8) {
    for rule in rules(shared, account, region, bus).await {
        let Some(pattern) = &rule.pattern else { continue };
        if !state_admits(&rule.state, event) || !crate::pattern::matches(pattern, event) {
            continue;
        }
        for target in &rule.targets {
            let arn = target["Arn"].as_str().unwrap_or_default();
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let [_, _, service, t_region, t_account, resource] = parts.as_slice() else {
                continue;
            };
            match *service {
                "sqs" => send_to_queue(shared, t_account, t_region, resource, target, event).await,
                "events" if hops == 0 => {
                    let Some(next_bus) = resource.strip_prefix("event-bus/") else {
                        continue;
                    };
                    Box::pin(deliver(shared, t_account, t_region, next_bus, event, hops + 1)).await;
                }
                _ => {}
            }
        }
    }
}

async fn send_to_queue(
    shared: &Shared,
    account: &str,
    region: &str,
    name: &str,
    target: &Value,
    event: &Value,
) {
    let mut body = json!({
        "QueueUrl": format!("{}/{account}/{name}", shared.moto_url),
        "MessageBody": target_body(target, event),
    });
    if name.ends_with(".fifo") {
        body["MessageGroupId"] = target["SqsParameters"]["MessageGroupId"].clone();
        body["MessageDeduplicationId"] = event["id"].clone();
    }
    if let Ok(up) = crate::moto::json_as(shared, account, region, "sqs", "AmazonSQS.SendMessage", &body).await
        && up.status.is_success()
    {
        shared.lock().eventbridge.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_states() {
        let rec = json!({"eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "eventTime": "2026-01-01T00:00:00Z",
                         "eventType": "AwsApiCall", "readOnly": true, "managementEvent": true});
        let e = envelope(&rec, "111122223333", "eu-west-1");
        assert_eq!(e["source"], "aws.kms");
        assert_eq!(e["detail-type"], "AWS API Call via CloudTrail");
        assert_eq!(e["time"], "2026-01-01T00:00:00Z");
        assert_eq!(e["resources"], json!([]));
        assert_eq!(e["detail"], rec);
        assert!(!state_admits("ENABLED", &e));
        assert!(state_admits("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", &e));
        assert!(!state_admits("DISABLED", &e));
        let mut write = rec.clone();
        write["readOnly"] = json!(false);
        assert!(state_admits("ENABLED", &envelope(&write, "1", "r")));
        assert!(!state_admits("DISABLED", &envelope(&write, "1", "r")));
    }

    #[test]
    fn input_path() {
        let e = json!({"detail": {"eventName": "DisableKey"}});
        assert_eq!(
            target_body(&json!({"InputPath": "$.detail"}), &e),
            r#"{"eventName":"DisableKey"}"#
        );
        assert_eq!(target_body(&json!({"Input": "{\"x\":1}"}), &e), r#"{"x":1}"#);
        assert_eq!(target_body(&json!({}), &e), e.to_string());
    }
}
