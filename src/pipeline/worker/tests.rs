//! The worker's decisions, with a fake remediator and a real store, on paused time.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::aws::{AwsError, ErrorType, Service};
use crate::job::{ActionKind, Outcome, Remediation};
use crate::plan::{OnDisable, OnScheduleDeletion, Policy, Protected};
use crate::rules::Action;

const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/k-1";
const WINDOW: Duration = Duration::from_secs(300);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

/// Remediations answer with the queued outcomes (then `Applied`); facts are fixed.
#[derive(Default)]
struct FakeRemediator {
    outcomes: Mutex<Vec<Outcome>>,
    calls: Arc<Mutex<Vec<Action>>>,
    facts: Option<KeyFacts>,
    /// When set, what `key_facts` says from then on (a change made in KMS meanwhile).
    changed: Arc<Mutex<Option<KeyFacts>>>,
}

impl Remediator for FakeRemediator {
    async fn remediate(&self, action: Action, _: Option<&str>, _: Option<&str>) -> Remediation {
        self.calls.lock().unwrap().push(action);
        let kind = match action {
            Action::EnableKey => ActionKind::EnableKey,
            _ => ActionKind::CancelKeyDeletion,
        };
        let mut r = Remediation::new(kind);
        let mut queued = self.outcomes.lock().unwrap();
        r.outcome = if queued.is_empty() {
            Outcome::Applied
        } else {
            queued.remove(0)
        };
        r
    }

    async fn region_facts(&self, _: &str, _: &str, _: bool) -> Result<Vec<(String, KeyFacts)>, AwsError> {
        Ok(self
            .facts
            .clone()
            .map(|f| vec![(KEY.to_owned(), f)])
            .unwrap_or_default())
    }

    async fn key_facts(&self, _: &str, _: bool, _: bool) -> Result<KeyFacts, AwsError> {
        if let Some(f) = self.changed.lock().unwrap().clone() {
            return Ok(f);
        }
        self.facts
            .clone()
            .ok_or_else(|| AwsError::local(Service::Kms, "ListAliases", ErrorType::Throttled, "slow down"))
    }
}

struct Bench {
    store: Arc<Store>,
    calls: Arc<Mutex<Vec<Action>>>,
    jobs: mpsc::UnboundedSender<Job>,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start(remediator: FakeRemediator, policy: Policy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), false).unwrap());
        let calls = remediator.calls.clone();
        let worker = Worker {
            remediator,
            store: store.clone(),
            clock: Clock::starting_at(t0()),
            dry_run: false,
            window: WINDOW,
            policy,
            refresh: Duration::from_secs(600),
            outbox: Arc::new(Notify::new()),
            windows: HashMap::new(),
            places: vec![Place::new("111122223333", "eu-west-1")],
            own: Own {
                arn: "arn:aws:sts::111122223333:assumed-role/trailguard/task-1".into(),
                role: Some("arn:aws:iam::111122223333:role/trailguard".into()),
                access_key_id: None,
                member_role: None,
            },
            known: HashMap::new(),
            keys: Keys::default(),
            acks: Default::default(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(worker.run(Vec::new(), rx, shutdown.clone()));
        Self {
            store,
            calls,
            jobs: tx,
            shutdown,
            done,
            _dir: dir,
        }
    }

    fn send(&self, job: Job) {
        self.jobs.send(job).unwrap();
    }

    /// Lets the worker drain its queue (paused time advances only when every task waits).
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    /// The queued messages' (repeats, outcome) pairs, sorted.
    fn outbox(&self) -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = self
            .store
            .outbox()
            .unwrap()
            .0
            .iter()
            .map(|e| {
                let j = &e.message.json;
                (
                    j["repeats"].as_u64().unwrap(),
                    j["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn remediations(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    async fn stop(self) -> Arc<Store> {
        self.shutdown.cancel();
        self.done.await.unwrap();
        self.store
    }
}

fn record(id: &str, name: &str, at: DateTime<Utc>, extra: serde_json::Value) -> Job {
    let mut r = serde_json::json!({
        "eventID": id, "eventTime": at.to_rfc3339(), "eventSource": "kms.amazonaws.com",
        "eventName": name, "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/dev/alice"},
        "requestParameters": {"keyId": "k-1"},
    });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Job::new(crate::rules::evaluate_json(&r.to_string()).remove(0), at)
}

/// A failed use of the key, `secs` after t0.
fn use_at(id: &str, secs: i64) -> Job {
    record(
        id,
        "Decrypt",
        t0() + chrono::Duration::seconds(secs),
        serde_json::json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    )
}

#[tokio::test(start_paused = true)]
async fn many_uses_of_a_key_make_one_rescue_one_message_and_one_summary() {
    let b = Bench::start(FakeRemediator::default(), Policy::default());
    for i in 0..200 {
        b.send(use_at(&format!("u-{i}"), -3 - (i % 50)));
    }
    b.settle().await;
    assert_eq!(b.remediations(), 1);
    assert_eq!(
        b.outbox(),
        [(0, "applied".to_owned())],
        "the summary waits for the window"
    );
    tokio::time::sleep(WINDOW + Duration::from_secs(2)).await;
    assert_eq!(
        b.outbox(),
        [(0, "applied".to_owned()), (199, "applied".to_owned())]
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_rescue_is_retried_by_the_next_use_not_folded() {
    let fake = FakeRemediator {
        outcomes: Mutex::new(vec![Outcome::Failed]),
        ..Default::default()
    };
    let b = Bench::start(fake, Policy::default());
    b.send(use_at("u-1", -10));
    b.send(use_at("u-2", -9));
    b.send(use_at("u-3", -8));
    b.settle().await;
    assert_eq!(
        b.remediations(),
        2,
        "the second use retries; the third is folded after success"
    );
    assert_eq!(b.outbox(), [(0, "applied".to_owned()), (0, "failed".to_owned())]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_use_after_the_rescue_is_rescued_again_whatever_the_order() {
    let b = Bench::start(FakeRemediator::default(), Policy::default());
    b.send(use_at("before", -5));
    b.settle().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Read late and out of order: a use from after the rescue (the key was scheduled again),
    // then one from before it.
    b.send(use_at("after", 30));
    b.send(use_at("older", -20));
    b.settle().await;
    assert_eq!(b.remediations(), 2);
    let store = b.stop().await;
    let (windows, _) = store.windows().unwrap();
    assert!(windows.is_empty(), "closed at shutdown");
}

#[tokio::test(start_paused = true)]
async fn the_window_count_survives_a_restart() {
    let b = Bench::start(FakeRemediator::default(), Policy::default());
    b.send(use_at("a", -5));
    b.send(use_at("b", -4));
    b.settle().await;
    // A crash: the task is dropped without its shutdown path.
    b.done.abort();
    let (windows, _) = b.store.windows().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].1.more, 1);
}

fn protected_policy() -> Policy {
    Policy {
        protected: vec![Protected::parse("alias/prod-*").unwrap()],
        on_disable: OnDisable::EnableKey,
        on_schedule_deletion: OnScheduleDeletion::CancelKeyDeletion,
        allowed_principals: vec!["arn:aws:sts::*:assumed-role/KeyAdmin/*".into()],
        exemptions: vec![],
    }
}

#[tokio::test(start_paused = true)]
async fn protected_keys_are_reverted_unless_the_caller_is_allowed() {
    let fake = FakeRemediator {
        facts: Some(KeyFacts {
            aliases: vec!["alias/prod-db".into()],
            tags: vec![],
        }),
        ..Default::default()
    };
    let b = Bench::start(fake, protected_policy());
    b.send(record("d-1", "DisableKey", t0(), serde_json::json!({})));
    let admin = serde_json::json!({"userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/KeyAdmin/bob"}});
    b.send(record("d-2", "DisableKey", t0(), admin));
    b.settle().await;
    assert_eq!(
        *b.calls.lock().unwrap(),
        [Action::EnableKey],
        "only the stranger's change is reverted"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_facts_lookup_changes_nothing_and_says_why() {
    let b = Bench::start(FakeRemediator::default(), protected_policy());
    b.send(record("d-1", "DisableKey", t0(), serde_json::json!({})));
    b.settle().await;
    assert_eq!(b.remediations(), 0);
    let entries = b.store.outbox().unwrap().0;
    let policy = entries[0].message.json["policy"].as_str().unwrap().to_owned();
    assert!(
        policy.contains("could not read the key's aliases/tags"),
        "{policy}"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn trailguards_own_calls_trigger_no_action() {
    let b = Bench::start(FakeRemediator::default(), Policy::default());
    let own = serde_json::json!({
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion."),
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/trailguard/task-2",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/trailguard"}}},
    });
    b.send(record("own-enable", "EnableKey", t0(), own));
    b.settle().await;
    assert_eq!(b.remediations(), 0, "no second rescue");
    assert!(b.outbox().is_empty(), "no alarm about trailguard's own call");
    b.stop().await;
}

/// A store with `KEY`'s history: a snapshot at `snap` (with `aliases`) and changes.
fn seed(store: &Store, snap: i64, aliases: &[&str], changes: &[(i64, crate::protection::Edit, &str)]) {
    let facts = KeyFacts {
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        tags: vec![],
    };
    store
        .put_snapshot(KEY, t0() + chrono::Duration::seconds(snap), &facts)
        .unwrap();
    let changes: Vec<_> = changes
        .iter()
        .map(|(at, edit, who)| crate::protection::Change {
            key_arn: KEY.into(),
            time: t0() + chrono::Duration::seconds(*at),
            event_id: format!("c{at}"),
            edit: edit.clone(),
            principal: Some(format!("arn:aws:sts::111122223333:assumed-role/{who}/s")),
            session_issuer: None,
            moved: false,
        })
        .collect();
    store.record_slice("seed", None, &[], &[], &[], &changes).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_schedule_then_alias_deletion_is_judged_as_of_the_schedule() {
    // KMS now says the key has no alias (the intruder deleted it after scheduling).
    let fake = FakeRemediator {
        facts: Some(KeyFacts::default()),
        ..Default::default()
    };
    let b = Bench::start(fake, protected_policy());
    seed(
        &b.store,
        -100,
        &["alias/prod-db"],
        &[(
            -5,
            crate::protection::Edit::RemoveAlias("alias/prod-db".into()),
            "intruder",
        )],
    );
    b.send(record(
        "s-1",
        "ScheduleKeyDeletion",
        t0() - chrono::Duration::seconds(10),
        serde_json::json!({}),
    ));
    b.settle().await;
    assert_eq!(*b.calls.lock().unwrap(), [Action::CancelKeyDeletion]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_untag_by_a_stranger_does_not_unprotect_the_key() {
    let fake = FakeRemediator {
        facts: Some(KeyFacts::default()),
        ..Default::default()
    };
    let mut policy = protected_policy();
    policy.protected = vec![Protected::parse("tag:trailguard:protect=true").unwrap()];
    let b = Bench::start(fake, policy);
    seed(
        &b.store,
        -100,
        &[],
        &[(
            -5,
            crate::protection::Edit::RemoveTag("trailguard:protect".into()),
            "intruder",
        )],
    );
    b.send(record("d-1", "DisableKey", t0(), serde_json::json!({})));
    b.settle().await;
    assert_eq!(
        *b.calls.lock().unwrap(),
        [Action::EnableKey],
        "the tag was removed first, by a caller not allowed to"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_lookup_keeps_a_key_known_to_be_protected_protected() {
    // KMS cannot be asked (facts: None), but the key was seen protected before.
    let b = Bench::start(FakeRemediator::default(), protected_policy());
    seed(&b.store, -3600, &["alias/prod-db"], &[]);
    b.send(record("d-1", "DisableKey", t0(), serde_json::json!({})));
    b.settle().await;
    assert_eq!(*b.calls.lock().unwrap(), [Action::EnableKey]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_exempt_keys_use_is_reported_and_its_deletion_goes_on() {
    let fake = FakeRemediator {
        facts: Some(KeyFacts {
            aliases: vec!["alias/retired".into()],
            tags: vec![],
        }),
        ..Default::default()
    };
    let mut policy = protected_policy();
    policy.exemptions = vec![crate::plan::KeyExemption {
        key: "alias/retired".into(),
        expires: chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        reason: "crypto-shredding, CHG-7".into(),
    }];
    let b = Bench::start(fake, policy);
    // Its last day: the event is on the 25th, handled after midnight.
    tokio::time::sleep(Duration::from_secs(13 * 3600)).await;
    for i in 0..5 {
        b.send(use_at(&format!("u-{i}"), i));
    }
    b.settle().await;
    assert_eq!(b.remediations(), 0, "an approved deletion is not fought");
    let entries = b.store.outbox().unwrap().0;
    assert!(
        entries[0].message.json["policy"]
            .as_str()
            .unwrap()
            .contains("approves this key's deletion")
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_alias_removed_from_an_unprotected_key_says_nothing() {
    let fake = FakeRemediator {
        facts: Some(KeyFacts::default()),
        ..Default::default()
    };
    let b = Bench::start(fake, protected_policy());
    let removed = serde_json::json!({"requestParameters": {"aliasName": "alias/dev-x"},
        "resources": [{"ARN": KEY, "type": "AWS::KMS::Key"}]});
    b.send(record("r-1", "DeleteAlias", t0(), removed));
    b.settle().await;
    assert!(b.outbox().is_empty());
    b.stop().await;
}

mod adversarial;
mod review14;
