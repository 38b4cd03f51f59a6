//! Helpers for end-to-end tests: a sandbox, SDK clients, a trailguard subprocess.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;
use serde_json::Value;
use trailguard_sandbox::{IdentitySpec, Sandbox};

pub const ADMIN: &str = "AKIAADMINTEST";
pub const APP: &str = "AKIAAPPROLETEST";
pub const GUARD: &str = "AKIATRAILGUARD";

pub struct World {
    pub sb: Sandbox,
    pub kms: aws_sdk_kms::Client,
    pub app_kms: aws_sdk_kms::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub topic_arn: String,
    pub queue_url: String,
    pub dir: PathBuf,
}

pub async fn sdk(sb: &Sandbox, key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, "secret", None, None, "test"))
        .load()
        .await
}

impl World {
    pub async fn new() -> Self {
        let sb = Sandbox::start_default()
            .await
            .expect("sandbox starts (run tests/setup.sh first)");
        sb.state().set_identity(
            APP,
            IdentitySpec::AssumedRole {
                role_name: "billing-app".into(),
                session_name: "i-0abc123".into(),
                account_id: None,
            },
        );
        sb.state().set_identity(
            ADMIN,
            IdentitySpec::IAMUser {
                user_name: "ops-admin".into(),
                account_id: None,
            },
        );
        let admin = sdk(&sb, ADMIN).await;
        let sns = aws_sdk_sns::Client::new(&admin);
        let sqs = aws_sdk_sqs::Client::new(&admin);
        let topic_arn = sns
            .create_topic()
            .name("trailguard-alerts")
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let queue_url = sqs
            .create_queue()
            .queue_name("alerts")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("trailguard-e2e-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            kms: aws_sdk_kms::Client::new(&admin),
            app_kms: aws_sdk_kms::Client::new(&sdk(&sb, APP).await),
            sqs,
            sb,
            topic_arn,
            queue_url,
            dir,
        }
    }

    /// A key with an alias, scheduled for deletion; returns its ARN and a ciphertext made with it.
    pub async fn doomed_key(&self, alias: &str) -> (String, aws_smithy_types::Blob) {
        let key = self
            .kms
            .create_key()
            .description("payments")
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        let arn = key.arn().unwrap().to_owned();
        self.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key.key_id())
            .send()
            .await
            .unwrap();
        let ct = self
            .app_kms
            .encrypt()
            .key_id(alias)
            .plaintext(b"card data".as_slice().into())
            .send()
            .await
            .unwrap();
        self.kms
            .schedule_key_deletion()
            .key_id(&arn)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
        (arn, ct.ciphertext_blob.unwrap())
    }

    pub async fn key_state(&self, arn: &str) -> (String, bool) {
        let m = self
            .kms
            .describe_key()
            .key_id(arn)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        (
            m.key_state().unwrap().as_str().to_owned(),
            m.deletion_date().is_some(),
        )
    }

    pub fn config(&self, extra: &str, port: u16) -> PathBuf {
        let path = self.dir.join("trailguard.toml");
        let text = format!(
            "[aws]\nregions = [\"us-east-1\"]\n[cloudtrail]\npoll_interval = \"5s\"\nlookback_interval = \"10s\"\n\
             [notify]\nsns_topic_arn = \"{}\"\naggregation_window = \"30s\"\n[state]\ndir = \"{}\"\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"20s\"\n{extra}",
            self.topic_arn,
            self.dir.join("state").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Every SNS notification delivered to the queue so far: (subject, machine JSON, attributes).
    pub async fn notifications(&self) -> Vec<(String, Value, Value)> {
        self.notifications_full()
            .await
            .into_iter()
            .map(|(s, b, a, _)| (s, b, a))
            .collect()
    }

    /// As [`World::notifications`], with the whole SNS envelope.
    pub async fn notifications_full(&self) -> Vec<(String, Value, Value, Value)> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                let body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap())
                    .unwrap_or_else(|_| panic!("the sqs protocol gets the JSON form: {envelope}"));
                out.push((
                    envelope["Subject"].as_str().unwrap_or_default().to_owned(),
                    body,
                    envelope["MessageAttributes"].clone(),
                    envelope.clone(),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

impl World {
    /// Every SNS envelope delivered to `queue_url` so far (and deletes them).
    pub async fn drain(&self, queue_url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The envelopes on the alerts queue so far.
    pub async fn notifications_raw(&self) -> Vec<Value> {
        self.drain(&self.queue_url).await
    }

    async fn queue(&self, name: &str, fifo: bool) -> (String, String) {
        let mut req = self.sqs.create_queue().queue_name(name);
        if fifo {
            req = req
                .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::ContentBasedDeduplication,
                    "true",
                );
        }
        let url = req.send().await.unwrap().queue_url.unwrap();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        (url, arn)
    }

    /// A second queue subscribed to the alerts topic with a filter policy on attributes.
    pub async fn subscribe_queue(&self, name: &str, filter_policy: Value) -> String {
        let (url, arn) = self.queue(name, false).await;
        let sns = aws_sdk_sns::Client::new(&sdk(&self.sb, ADMIN).await);
        sns.subscribe()
            .topic_arn(&self.topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("FilterPolicy", filter_policy.to_string())
            .send()
            .await
            .unwrap();
        url
    }

    /// A FIFO topic with a FIFO queue subscribed: (topic ARN, queue URL).
    pub async fn fifo_topic(&self, name: &str) -> (String, String) {
        let sns = aws_sdk_sns::Client::new(&sdk(&self.sb, ADMIN).await);
        let topic = sns
            .create_topic()
            .name(name)
            .attributes("FifoTopic", "true")
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let (url, arn) = self.queue(&name.replace(".fifo", "-q.fifo"), true).await;
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .send()
            .await
            .unwrap();
        (topic, url)
    }

    /// Waits for at least `at_least` notifications of `rule`; other rules' messages are dropped.
    pub async fn wait_notes(
        &self,
        rule: &str,
        at_least: usize,
        limit: Duration,
    ) -> Option<Vec<(String, Value, Value, Value)>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        loop {
            got.extend(
                self.notifications_full()
                    .await
                    .into_iter()
                    .filter(|(_, b, _, _)| b["rule_id"] == rule),
            );
            if got.len() >= at_least {
                return Some(got);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // TRAILGUARD_TEST_KEEP=1 keeps the logs and state of every run, to look at afterwards.
        if std::env::var_os("TRAILGUARD_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `trailguard` process; killed on drop.
pub struct Guard {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Guard {
    pub fn start(world: &World, config: &Path, port: u16, args: &[&str]) -> Self {
        Self::start_with(world, config, port, args, GUARD, &[])
    }

    /// Signs with `access_key_id` instead of the default.
    pub fn start_as(world: &World, config: &Path, port: u16, args: &[&str], access_key_id: &str) -> Self {
        Self::start_with(world, config, port, args, access_key_id, &[])
    }

    pub fn start_with(
        world: &World,
        config: &Path,
        port: u16,
        args: &[&str],
        access_key_id: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let log = world.dir.join(format!("trailguard-{}.log", uuid::Uuid::new_v4()));
        // scripts/reliability.sh runs the harness against a release build.
        let bin =
            std::env::var("TRAILGUARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_trailguard").to_owned());
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .env("AWS_ENDPOINT_URL", world.sb.endpoint_url())
            .env("AWS_ACCESS_KEY_ID", access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TRAILGUARD_LOG", "trailguard=debug,info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let status = out.get(9..12)?.parse().ok()?;
        Some((
            status,
            out.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default(),
        ))
    }

    /// Waits (60 s at most: a loaded machine starts slowly) for `/readyz` to answer 200.
    pub async fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("trailguard exited with {status}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("trailguard never became ready:\n{}", self.logs());
    }

    /// The value of one metric series in `/metrics` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.expect("metrics endpoint answers");
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, then the exit status, which must come within `limit`. Every run ends having
    /// taken no action outside its policy.
    pub async fn terminate(mut self, limit: Duration) -> std::process::ExitStatus {
        self.terminate_ref(limit).await
    }

    /// As [`Guard::terminate`], for a guard that cannot be moved.
    pub async fn terminate_ref(&mut self, limit: Duration) -> std::process::ExitStatus {
        let outside = self.metric("trailguard_actions_outside_policy_total").await;
        assert_eq!(outside, 0.0, "actions outside the policy:\n{}", self.logs());
        self.signal("TERM");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trailguard did not stop within {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` returns Some, up to `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A new key with an alias; returns its ARN.
pub async fn aliased_key(world: &World, alias: &str) -> String {
    let k = world.kms.create_key().send().await.unwrap().key_metadata.unwrap();
    world
        .kms
        .create_alias()
        .alias_name(alias)
        .target_key_id(k.key_id())
        .send()
        .await
        .unwrap();
    k.arn().unwrap().to_owned()
}

/// Waits (15 s at most) for the notification of `rule` about `arn`; `seen` keeps what arrived.
pub async fn note_for(world: &World, rule: &str, arn: &str, seen: &mut Vec<Value>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        seen.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
        if let Some(found) = seen
            .iter()
            .find(|b| b["rule_id"] == rule && b["finding"]["key_arn"] == arn)
        {
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {rule} notification for {arn}: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An IAM client as the account's administrator.
pub async fn iam_client(world: &World) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk(&world.sb, ADMIN).await)
}

/// An IAM user with one access key created `created_days` ago and last used `used_days` ago
/// (None: never); returns the key id.
pub async fn iam_user(
    world: &World,
    iam: &aws_sdk_iam::Client,
    name: &str,
    created_days: i64,
    used_days: Option<i64>,
) -> String {
    use trailguard_sandbox::state::{AccessKeyOverride, LastUsed};
    iam.create_user().user_name(name).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let id = key.access_key_id().to_owned();
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now();
    world.sb.state().set_access_key(
        &id,
        AccessKeyOverride {
            create_date: Some(now - chrono::Duration::days(created_days)),
            last_used: Some(used_days.map(|d| LastUsed {
                date: now - chrono::Duration::days(d),
                service: "s3".into(),
                region: "eu-west-1".into(),
            })),
        },
    );
    id
}

/// An access key's status, or None if it is gone.
pub async fn key_status(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> Option<String> {
    let l = iam.list_access_keys().user_name(user).send().await.unwrap();
    l.access_key_metadata()
        .iter()
        .find(|m| m.access_key_id() == Some(key))
        .map(|m| m.status().unwrap().as_str().to_owned())
}

/// A queue with a dead-letter queue after `max_receives` receives (and its own visibility
/// timeout, when given); returns (queue URL, DLQ URL).
pub async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility: Option<u32>,
    max_receives: u32,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = queue_attribute(sqs, &dlq, QueueAttributeName::QueueArn).await;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(visibility.map(|v| [(QueueAttributeName::VisibilityTimeout, v.to_string())].into()))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (url, dlq)
}

/// One attribute of a queue ("" if absent).
pub async fn queue_attribute(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    name: aws_sdk_sqs::types::QueueAttributeName,
) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&name)
        .unwrap_or_default()
}

/// Messages still on a queue, visible or in flight.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut n = 0;
    for a in [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ] {
        n += queue_attribute(sqs, url, a).await.parse::<u64>().unwrap_or(0);
    }
    n
}

/// An EventBridge rule (on `bus`, or the default bus) in the state that forwards read-only
/// management events too (a failed `Decrypt` is one), with one target.
pub async fn eventbridge_rule(
    eb: &aws_sdk_eventbridge::Client,
    name: &str,
    bus: Option<&str>,
    pattern: Value,
    target: &str,
) {
    use aws_sdk_eventbridge::types::{RuleState, Target};
    eb.put_rule()
        .name(name)
        .set_event_bus_name(bus.map(str::to_owned))
        .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule(name)
        .set_event_bus_name(bus.map(str::to_owned))
        .targets(Target::builder().id("t").arn(target).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// The sandbox account's default bus forwarding every KMS event to the queue `queue_url`.
pub async fn forward_kms_events(world: &World, queue_url: &str) {
    let arn = queue_attribute(
        &world.sqs,
        queue_url,
        aws_sdk_sqs::types::QueueAttributeName::QueueArn,
    )
    .await;
    let eb = aws_sdk_eventbridge::Client::new(&sdk(&world.sb, ADMIN).await);
    eventbridge_rule(
        &eb,
        "trailguard-kms",
        None,
        serde_json::json!({"source": ["aws.kms"]}),
        &arn,
    )
    .await;
}
