//! An organization guarded from its central queues: member accounts forward CloudTrail events
//! to a central EventBridge bus, whose rule feeds an SQS queue that several trailguard replicas
//! consume; each replica acts in the key's own account through its `trailguard` role.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::{Organization, Settings};

const EXTERNAL_ID: &str = "org-guard-7f3a";

/// The organization tests run one at a time: each runs a sandbox, moto and up to three
/// replicas, and together they starve a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// The central side (in the management account, where trailguard runs) and the members.
struct Org {
    world: World,
    org: Organization,
    queue_url: String,
    dlq_url: String,
    /// Each member's credentials, per region.
    members: BTreeMap<(String, String), SdkConfig>,
}

/// The member rule of deploy/cloudformation/org-member.yaml: KMS failures on keys pending
/// deletion and the calls that change a key's state or protection.
fn member_pattern() -> Value {
    json!({"source": ["aws.kms"], "detail-type": ["AWS API Call via CloudTrail"],
           "detail": {"eventSource": ["kms.amazonaws.com"],
                      "$or": [{"errorMessage": [{"suffix": "is pending deletion."}]},
                              {"eventName": ["DisableKey", "ScheduleKeyDeletion", "DeleteAlias",
                                             "UpdateAlias", "CreateAlias", "TagResource", "UntagResource"],
                               "errorCode": [{"exists": false}]}]}})
}

impl Org {
    async fn new(accounts: usize) -> Self {
        let world = World::new().await;
        world.sb.state().set_settings(Settings {
            eventbridge_delay_ms: 50,
            ..Settings::default()
        });
        let org = world
            .sb
            .create_accounts(accounts, Some(EXTERNAL_ID))
            .await
            .unwrap();
        let admin = sdk(&world.sb, ADMIN).await;
        let sqs = aws_sdk_sqs::Client::new(&admin);
        let (queue_url, dlq_url) = queue_with_dlq(&sqs, "trailguard-events", Some(10), 3).await;
        let queue_arn = queue_attribute(&sqs, &queue_url, QueueAttributeName::QueueArn).await;
        let eb = aws_sdk_eventbridge::Client::new(&admin);
        let bus = eb
            .create_event_bus()
            .name("trailguard-central")
            .send()
            .await
            .unwrap()
            .event_bus_arn
            .unwrap();
        eventbridge_rule(
            &eb,
            "to-trailguard",
            Some("trailguard-central"),
            json!({"source": ["aws.kms"], "detail-type": ["AWS API Call via CloudTrail"]}),
            &queue_arn,
        )
        .await;
        let sts = aws_sdk_sts::Client::new(&admin);
        let mut members = BTreeMap::new();
        for account in &org.accounts {
            let creds = sts
                .assume_role()
                .role_arn(format!("arn:aws:iam::{account}:role/trailguard"))
                .role_session_name("org-setup")
                .external_id(EXTERNAL_ID)
                .send()
                .await
                .unwrap()
                .credentials
                .unwrap();
            for region in REGIONS {
                let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(world.sb.endpoint_url())
                    .region(aws_config::Region::new(region))
                    .credentials_provider(aws_sdk_kms::config::Credentials::new(
                        creds.access_key_id(),
                        creds.secret_access_key(),
                        Some(creds.session_token().to_owned()),
                        None,
                        "member",
                    ))
                    .load()
                    .await;
                eventbridge_rule(
                    &aws_sdk_eventbridge::Client::new(&conf),
                    "trailguard-kms",
                    None,
                    member_pattern(),
                    &bus,
                )
                .await;
                members.insert((account.clone(), region.to_owned()), conf);
            }
        }
        Self {
            world,
            org,
            queue_url,
            dlq_url,
            members,
        }
    }

    /// A replica's configuration: the central queue, every account of the organization.
    fn config(&self, name: &str, port: u16) -> std::path::PathBuf {
        self.config_with(name, port, "")
    }

    /// As [`Org::config`], with more `[accounts]` keys.
    fn config_with(&self, name: &str, port: u16, accounts: &str) -> std::path::PathBuf {
        let dir = self.world.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trailguard.toml");
        let text = format!(
            "[aws]\nregions = [\"us-east-1\", \"eu-west-1\"]\n\
             [accounts]\ndiscover = \"organizations\"\nexternal_id = \"{EXTERNAL_ID}\"\n{accounts}\
             [[sources]]\nkind = \"eventbridge_sqs\"\nqueue_url = \"{}\"\nregion = \"us-east-1\"\nwait_time = \"1s\"\n\
             [notify]\nsns_topic_arn = \"{}\"\naggregation_window = \"0s\"\n\
             [state]\ndir = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"20s\"\n",
            self.queue_url,
            self.world.topic_arn,
            dir.join("state").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn replica(&self, name: &str) -> Guard {
        let port = free_port();
        let mut g = Guard::start(&self.world, &self.config(name, port), port, &[]);
        g.wait_ready().await;
        g
    }

    /// `n` keys spread over the members' accounts and regions, each scheduled for deletion.
    async fn doomed_keys(&self, n: usize) -> Vec<(String, SdkConfig)> {
        let places: Vec<_> = self.members.iter().collect();
        let mut keys = Vec::new();
        for i in 0..n {
            let (_, conf) = places[i % places.len()];
            let kms = aws_sdk_kms::Client::new(conf);
            let arn = kms
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .arn
                .unwrap();
            kms.schedule_key_deletion()
                .key_id(&arn)
                .pending_window_in_days(7)
                .send()
                .await
                .unwrap();
            keys.push((arn, conf.clone()));
        }
        keys
    }

    /// `per_key` failed uses of each key, 16 at a time; returns how many failed as "pending
    /// deletion" (a use after trailguard's rescue fails as "disabled" instead).
    async fn failed_uses(&self, keys: &[(String, SdkConfig)], per_key: usize) -> usize {
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for (arn, conf) in keys {
            let kms = aws_sdk_kms::Client::new(conf);
            for _ in 0..per_key {
                let (kms, arn, gate) = (kms.clone(), arn.clone(), gate.clone());
                tasks.spawn(async move {
                    let _p = gate.acquire_owned().await.unwrap();
                    let e = kms
                        .encrypt()
                        .key_id(&arn)
                        .plaintext(b"x".as_slice().into())
                        .send()
                        .await
                        .expect_err("the key is not usable");
                    format!("{:?}", e.into_service_error()).contains("is pending deletion.")
                });
            }
        }
        let mut pending = 0;
        while let Some(r) = tasks.join_next().await {
            pending += r.unwrap() as usize;
        }
        pending
    }

    /// Every record the organization's event histories hold.
    fn records(&self) -> Vec<Value> {
        let state = self.world.sb.state().lock();
        let mut places: BTreeSet<(String, String)> = self.members.keys().cloned().collect();
        for r in REGIONS {
            places.insert((self.org.management_account.clone(), r.to_owned()));
        }
        places
            .iter()
            .flat_map(|(a, r)| state.events.records(a, r))
            .map(|e| serde_json::from_str(&e.json).unwrap())
            .collect()
    }

    /// The uses that failed because the key is pending deletion: the findings.
    fn findings(&self) -> BTreeSet<String> {
        self.records()
            .iter()
            .filter(|r| {
                r["eventName"] == "Encrypt"
                    && r["errorMessage"]
                        .as_str()
                        .is_some_and(|m| m.ends_with("is pending deletion."))
            })
            .map(|r| r["eventID"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until EventBridge has handed on every record it was offered.
    async fn delivered(&self) {
        let settled = eventually(Duration::from_secs(120), || async {
            let st = self.world.sb.state().lock();
            let eb = &st.eventbridge;
            (eb.processed + eb.lost == eb.offered).then_some(())
        })
        .await;
        assert!(settled.is_some(), "EventBridge deliveries settle");
    }
}

/// The notifications of key-use findings, by event id: each one's notification ids.
async fn use_notes(world: &World, seen: &mut Vec<Value>) -> HashMap<String, Vec<String>> {
    seen.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
    let mut by_event: HashMap<String, Vec<String>> = HashMap::new();
    for b in seen.iter() {
        if b["finding"]["event_name"] == "Encrypt" {
            by_event
                .entry(b["finding"]["event_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(b["notification_id"].as_str().unwrap().to_owned());
        }
    }
    by_event
}

/// Checks the outcome every organization run must have.
async fn assert_guarded(org: &Org, keys: &[(String, SdkConfig)], replicas: &[&Guard]) {
    let findings = org.findings();
    let t = tokio::time::Instant::now();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let notes = loop {
        let by_event = use_notes(&org.world, &mut seen).await;
        let missing = findings.iter().filter(|id| !by_event.contains_key(*id)).count();
        if missing == 0 {
            break by_event;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: String = replicas.iter().map(|g| g.logs()).collect();
            let warnings: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(40)
                .collect();
            panic!(
                "{missing} of {} findings never notified\n{}",
                findings.len(),
                warnings.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("notified {:?}", t.elapsed());
    let logs: String = replicas.iter().map(|g| g.logs()).collect();
    let sent: usize = notes.values().map(Vec::len).sum();
    let duplicates = sent - notes.len();
    assert!(
        duplicates * 100 <= findings.len(),
        "{duplicates} duplicate notifications for {} findings",
        findings.len()
    );
    for (event, ids) in &notes {
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "one finding, one notification_id: {event} {ids:?}"
        );
    }

    // Exactly one successful CancelKeyDeletion per key, made in the key's account and region.
    let cancels: Vec<Value> = org
        .records()
        .into_iter()
        .filter(|r| r["eventName"] == "CancelKeyDeletion" && r.get("errorCode").is_none())
        .collect();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cancels {
        let arn = c["resources"][0]["ARN"].as_str().unwrap().to_owned();
        let parts: Vec<&str> = arn.split(':').collect();
        assert_eq!(
            c["recipientAccountId"], parts[4],
            "cancelled in the key's account: {c}"
        );
        assert_eq!(c["awsRegion"], parts[3], "cancelled in the key's region: {c}");
        assert!(
            c["userIdentity"]["arn"]
                .as_str()
                .unwrap()
                .contains(":assumed-role/trailguard/"),
            "through the account's trailguard role: {c}"
        );
        *per_key.entry(arn).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = keys.iter().map(|(k, _)| (k.clone(), 1)).collect();
    assert_eq!(
        per_key, expected,
        "exactly one successful CancelKeyDeletion per key"
    );
    for (arn, conf) in keys {
        let m = aws_sdk_kms::Client::new(conf)
            .describe_key()
            .key_id(arn)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(m.key_state().unwrap().as_str(), "Disabled", "{arn} rescued");
    }
    for g in replicas {
        assert_eq!(
            g.metric("trailguard_remediations_total{action=\"cancel_key_deletion\",outcome=\"failed\"}")
                .await,
            0.0,
            "no failed remediation:\n{}",
            g.logs()
        );
    }
    // Every message handled and deleted; none dead-lettered.
    let sqs = &org.world.sqs;
    let drained = eventually(Duration::from_secs(60), || async {
        (queue_depth(sqs, &org.queue_url).await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the central queue drains:\n{logs}");
    assert_eq!(queue_depth(sqs, &org.dlq_url).await, 0, "nothing dead-lettered");
}

/// Three replicas drain a burst of 1,000 failed uses of 50 keys pending deletion across 10
/// accounts and 2 regions: each key is rescued once, in its own account and region, and every
/// finding is notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_rescue_every_key_of_an_organization_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = tokio::time::Instant::now();
    let org = Org::new(10).await;
    eprintln!("org {:?}", t.elapsed());
    let keys = org.doomed_keys(50).await;
    eprintln!("keys {:?}", t.elapsed());
    let pending = org.failed_uses(&keys, 20).await;
    eprintln!("uses {:?}", t.elapsed());
    assert_eq!(
        pending, 1000,
        "every use failed while the keys were pending deletion"
    );
    org.delivered().await;
    let a = org.replica("a").await;
    let b = org.replica("b").await;
    let c = org.replica("c").await;
    eprintln!("replicas {:?}", t.elapsed());
    assert_guarded(&org, &keys, &[&a, &b, &c]).await;
    eprintln!("guarded {:?}", t.elapsed());
    let mut received = 0.0;
    for g in [&a, &b, &c] {
        assert_eq!(
            g.metric("trailguard_accounts").await,
            11.0,
            "the 10 members and the management account"
        );
        received += g
            .metric("trailguard_queue_messages_total{source=\"eventbridge:trailguard-events\",outcome=\"deleted\"}")
            .await;
    }
    assert!(received >= 1050.0, "the replicas shared the queue: {received}");
    for g in [a, b, c] {
        assert!(g.terminate(Duration::from_secs(30)).await.success());
    }
}

/// A replica killed (SIGKILL) while the burst is being handled loses nothing: what it held
/// returns to the queue when its visibility times out, and the others finish the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_loses_no_finding() {
    let _one = ONE_AT_A_TIME.lock().await;
    let org = Org::new(4).await;
    let keys = org.doomed_keys(16).await;
    let a = org.replica("a").await;
    let b = org.replica("b").await;
    let mut c = org.replica("c").await;
    let uses = org.failed_uses(&keys, 25);
    let kill = async {
        let started = eventually(Duration::from_secs(120), || async {
            (c.metric("trailguard_queue_messages_held{source=\"eventbridge:trailguard-events\"}")
                .await
                > 0.0)
                .then_some(())
        })
        .await;
        assert!(started.is_some(), "replica c took messages:\n{}", c.logs());
        c.child.kill().unwrap();
        c.child.wait().unwrap();
    };
    let (pending, ()) = tokio::join!(uses, kill);
    assert!(pending > 0);
    org.delivered().await;
    assert_guarded(&org, &keys, &[&a, &b]).await;
    for g in [a, b] {
        assert!(g.terminate(Duration::from_secs(30)).await.success());
    }
}

/// An account trailguard cannot enter (its role is missing) fails alone: the event naming a
/// key there is reported with its failed remediation, and the other accounts' keys are rescued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_role_cannot_be_assumed_fails_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    const LOST: &str = "000000000001";
    let org = Org::new(2).await;
    let port = free_port();
    let config = org.config_with("a", port, &format!("ids = [\"{LOST}\"]\n"));
    let mut g = Guard::start(&org.world, &config, port, &[]);
    g.wait_ready().await;
    // A failed use of a key in that account, as its forwarding rule would deliver it.
    let key = format!("arn:aws:kms:us-east-1:{LOST}:key/0b1c2d3e-0000-4000-8000-000000000001");
    let event_id = uuid::Uuid::new_v4().to_string();
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let record = json!({
        "eventVersion": "1.08", "eventTime": now, "eventSource": "kms.amazonaws.com",
        "eventName": "Decrypt", "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.1",
        "userAgent": "app", "errorCode": "KMSInvalidStateException",
        "errorMessage": format!("{key} is pending deletion."),
        "userIdentity": {"type": "AssumedRole", "accountId": LOST,
                         "arn": format!("arn:aws:sts::{LOST}:assumed-role/app/i-1")},
        "requestParameters": null, "responseElements": null, "eventID": event_id,
        "readOnly": true, "resources": [{"accountId": LOST, "type": "AWS::KMS::Key", "ARN": key}],
        "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": LOST,
        "eventCategory": "Management"});
    let envelope = json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "account": LOST,
        "time": now, "region": "us-east-1", "resources": [], "detail": record});
    org.world
        .sqs
        .send_message()
        .queue_url(&org.queue_url)
        .message_body(envelope.to_string())
        .send()
        .await
        .unwrap();
    let keys = org.doomed_keys(2).await;
    let pending = org.failed_uses(&keys, 1).await;
    assert_eq!(pending, 2);
    for (arn, conf) in &keys {
        let kms = aws_sdk_kms::Client::new(conf);
        let rescued = eventually(Duration::from_secs(90), || async {
            let m = kms
                .describe_key()
                .key_id(arn)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap();
            (m.key_state().unwrap().as_str() == "Disabled").then_some(())
        })
        .await;
        assert!(
            rescued.is_some(),
            "{arn} rescued despite the lost account:\n{}",
            g.logs()
        );
    }
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let failed = loop {
        seen.extend(org.world.notifications().await.into_iter().map(|(_, b, _)| b));
        if let Some(n) = seen
            .iter()
            .find(|b| b["finding"]["event_id"] == event_id.as_str())
        {
            break n.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lost account's finding is notified:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(failed["remediation"]["outcome"], "failed", "{failed:#}");
    assert!(
        g.metric(&format!(
            "trailguard_sts_assume_role_failures_total{{account=\"{LOST}\",error_type=\"not_found\"}}"
        ))
        .await
            + g.metric(&format!(
                "trailguard_sts_assume_role_failures_total{{account=\"{LOST}\",error_type=\"access_denied\"}}"
            ))
            .await
            >= 1.0,
        "{}",
        g.logs()
    );
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}
