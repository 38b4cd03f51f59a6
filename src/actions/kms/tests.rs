use super::*;
use std::sync::Mutex;

/// A key in memory that behaves as KMS's state table says.
#[derive(Default)]
struct FakeKms {
    state: Mutex<Option<KeyState>>,
    calls: Mutex<Vec<&'static str>>,
    /// EnableKey answers "invalid state" this many times first (eventual consistency).
    stale_enables: Mutex<u32>,
    fail_cancel: bool,
}

impl FakeKms {
    fn with(state: KeyState) -> Self {
        Self {
            state: Mutex::new(Some(state)),
            ..Default::default()
        }
    }
    fn err(op: &'static str, t: ErrorType) -> AwsError {
        AwsError::local(Service::Kms, op, t, "fake")
    }
}

impl KeyApi for FakeKms {
    async fn describe_key(&self, _: &KeyArn) -> Result<KeyDescription, AwsError> {
        self.calls.lock().unwrap().push("DescribeKey");
        let state = self.state.lock().unwrap().clone().unwrap();
        Ok(KeyDescription {
            deletion_date: state.pending_deletion().then_some(chrono::DateTime::UNIX_EPOCH),
            state,
        })
    }
    async fn cancel_key_deletion(&self, _: &KeyArn) -> Result<(), AwsError> {
        self.calls.lock().unwrap().push("CancelKeyDeletion");
        if self.fail_cancel {
            return Err(Self::err("CancelKeyDeletion", ErrorType::Server));
        }
        *self.state.lock().unwrap() = Some(KeyState::Disabled);
        Ok(())
    }
    async fn enable_key(&self, _: &KeyArn) -> Result<(), AwsError> {
        self.calls.lock().unwrap().push("EnableKey");
        let mut stale = self.stale_enables.lock().unwrap();
        if *stale > 0 {
            *stale -= 1;
            return Err(Self::err("EnableKey", ErrorType::InvalidState));
        }
        *self.state.lock().unwrap() = Some(KeyState::Enabled);
        Ok(())
    }
    async fn list_aliases(&self, _: &KeyArn) -> Result<Vec<String>, AwsError> {
        Ok(vec!["alias/a".into()])
    }
    async fn list_resource_tags(&self, _: &KeyArn) -> Result<Vec<(String, String)>, AwsError> {
        Ok(vec![])
    }
    async fn region_aliases(&self, _: &str, _: &str) -> Result<Vec<(String, Option<String>)>, AwsError> {
        Ok(vec![("alias/a".into(), Some("k-1".into()))])
    }
    async fn region_keys(&self, _: &str, _: &str) -> Result<Vec<String>, AwsError> {
        Ok(vec!["k-1".into()])
    }
}

const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/k-1";

#[tokio::test(start_paused = true)]
async fn rescue_cancels_and_verifies_and_is_idempotent() {
    let kms = KmsRemediator::new(FakeKms::with(KeyState::PendingDeletion), false, false);
    let r = kms.rescue(Some(ARN), Some("111122223333")).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.state_after.as_deref(), Some("Disabled"));
    assert_eq!(
        r.steps,
        [
            "DescribeKey: PendingDeletion",
            "CancelKeyDeletion: ok",
            "DescribeKey: Disabled"
        ]
    );
    let again = kms.rescue(Some(ARN), Some("111122223333")).await;
    assert_eq!(again.outcome, Outcome::NotNeeded);
    let calls = kms.api.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().filter(|c| **c == "CancelKeyDeletion").count(), 1);
}

#[tokio::test(start_paused = true)]
async fn enable_after_cancel_waits_out_eventual_consistency() {
    let api = FakeKms::with(KeyState::PendingDeletion);
    *api.stale_enables.lock().unwrap() = 2;
    let kms = KmsRemediator::new(api, false, true);
    let r = kms.rescue(Some(ARN), None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.state_after.as_deref(), Some("Enabled"));
}

#[tokio::test(start_paused = true)]
async fn failures_dry_runs_and_other_accounts_say_so() {
    let api = FakeKms {
        fail_cancel: true,
        ..FakeKms::with(KeyState::PendingDeletion)
    };
    let r = KmsRemediator::new(api, false, false)
        .rescue(Some(ARN), None)
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.detail.contains("still scheduled for deletion"), "{}", r.detail);

    let dry = KmsRemediator::new(FakeKms::with(KeyState::PendingDeletion), true, false);
    assert_eq!(dry.rescue(Some(ARN), None).await.outcome, Outcome::DryRun);
    assert!(!dry.api.calls.lock().unwrap().contains(&"CancelKeyDeletion"));

    let other = KmsRemediator::new(FakeKms::with(KeyState::PendingDeletion), false, false);
    let r = other.rescue(Some(ARN), Some("444455556666")).await;
    assert_eq!(r.outcome, Outcome::NotActionable);
    assert!(other.api.calls.lock().unwrap().is_empty());

    let disabled = KmsRemediator::new(FakeKms::with(KeyState::Disabled), false, false);
    assert_eq!(disabled.enable(Some(ARN), None).await.outcome, Outcome::Applied);
}

/// Two keys in a region; the second one's key policy does not let trailguard read its tags.
struct OneUnreadable;

impl KeyApi for OneUnreadable {
    async fn describe_key(&self, _: &KeyArn) -> Result<KeyDescription, AwsError> {
        unreachable!()
    }
    async fn cancel_key_deletion(&self, _: &KeyArn) -> Result<(), AwsError> {
        unreachable!()
    }
    async fn enable_key(&self, _: &KeyArn) -> Result<(), AwsError> {
        unreachable!()
    }
    async fn list_aliases(&self, _: &KeyArn) -> Result<Vec<String>, AwsError> {
        unreachable!()
    }
    async fn list_resource_tags(&self, key: &KeyArn) -> Result<Vec<(String, String)>, AwsError> {
        match key.key_id.as_str() {
            "k-1" => Ok(vec![("trailguard:protect".into(), "true".into())]),
            _ => Err(FakeKms::err("ListResourceTags", ErrorType::AccessDenied)),
        }
    }
    async fn region_aliases(&self, _: &str, _: &str) -> Result<Vec<(String, Option<String>)>, AwsError> {
        Ok(vec![("alias/prod-db".into(), Some("k-1".into()))])
    }
    async fn region_keys(&self, _: &str, _: &str) -> Result<Vec<String>, AwsError> {
        Ok(vec!["k-1".into(), "k-2".into()])
    }
}

#[tokio::test(start_paused = true)]
async fn one_key_whose_tags_cannot_be_read_does_not_stop_the_refresh_of_the_others() {
    let kms = KmsRemediator::new(OneUnreadable, false, false);
    let facts = kms
        .region_facts("eu-west-1", "111122223333", true)
        .await
        .expect("k-1's aliases and tags were read: the refresh must keep them");
    assert_eq!(
        facts.len(),
        1,
        "k-2 is left out (its last known facts stand): {facts:?}"
    );
    assert_eq!(facts[0].0, ARN);
    assert_eq!(
        facts[0].1.tags,
        [("trailguard:protect".to_owned(), "true".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rescue_resumed_after_its_cancel_re_enables_the_key_only_with_enable_after_cancel() {
    let acct = Some("111122223333");
    let cut = KmsRemediator::new(FakeKms::with(KeyState::Disabled), false, true);
    let r = cut.resume(Action::CancelKeyDeletion, Some(ARN), acct).await;
    assert_eq!(
        (r.action, r.outcome),
        (ActionKind::CancelKeyDeletion, Outcome::Applied),
        "{r:?}"
    );
    assert_eq!(r.state_after.as_deref(), Some("Enabled"));
    assert!(r.detail.contains("a restart cut the rescue"), "{}", r.detail);
    // Still pending (cut before the cancel): the whole rescue.
    let early = KmsRemediator::new(FakeKms::with(KeyState::PendingDeletion), false, true);
    let r = early.resume(Action::CancelKeyDeletion, Some(ARN), acct).await;
    assert_eq!(r.state_after.as_deref(), Some("Enabled"), "{r:?}");
    assert_eq!(*early.api.calls.lock().unwrap().first().unwrap(), "DescribeKey");
    // Without kms.enable_after_cancel a Disabled key is left as it is.
    let left = KmsRemediator::new(FakeKms::with(KeyState::Disabled), false, false);
    let r = left.resume(Action::CancelKeyDeletion, Some(ARN), acct).await;
    assert_eq!(r.outcome, Outcome::NotNeeded, "{r:?}");
    assert!(!left.api.calls.lock().unwrap().contains(&"EnableKey"));
}
