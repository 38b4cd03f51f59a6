//! [`IamApi`] over the IAM SDK client (IAM is global: its calls go to the partition's home
//! region), paced to `iam.max_requests_per_second`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_iam::types::StatusType;

use super::{Aws, AwsError, Limiter, Place, RetryPolicy, SdkError, SdkErrorKind, Service, call, chrono_time};
use crate::iam::LastUse;
use crate::iam::api::{AccessKey, CredentialReport, IamApi, User};

#[derive(Debug, Clone)]
pub struct Iam {
    aws: Aws,
    /// The account whose IAM this is (through its role, unless it is trailguard's own).
    account: Option<String>,
    region: String,
    pacer: Arc<Limiter>,
    calls: Arc<AtomicU64>,
}

impl Iam {
    /// IAM of `account` in `region` (the partition's home region), at most `rate` calls per
    /// second.
    pub fn new(aws: Aws, account: Option<&str>, region: &str, rate: f64) -> Self {
        Self {
            aws,
            account: account.map(str::to_owned),
            region: region.to_owned(),
            pacer: Arc::new(Limiter::new(rate)),
            calls: Arc::default(),
        }
    }

    /// One paced IAM call under the action policy; `send` gets the client.
    async fn iam<T, E, Fut>(
        &self,
        op: &'static str,
        send: impl Fn(aws_sdk_iam::Client) -> Fut,
    ) -> Result<T, AwsError>
    where
        E: SdkErrorKind,
        Fut: Future<Output = Result<T, SdkError<E>>>,
    {
        let client = self.aws.iam_in(self.account.as_deref(), &self.region);
        call(&RetryPolicy::ACTION, Service::Iam, op, || {
            let fut = send(client.clone());
            async move {
                self.pacer.acquire(&Place::new("iam", &self.region)).await;
                self.calls.fetch_add(1, Ordering::Relaxed);
                fut.await
            }
        })
        .await
    }
}

impl IamApi for Iam {
    async fn list_users(&self) -> Result<Vec<User>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let m = marker.clone();
            let page = self
                .iam("ListUsers", |c| {
                    c.list_users().set_marker(m.clone()).max_items(1000).send()
                })
                .await?;
            out.extend(page.users().iter().map(|u| User {
                name: u.user_name().to_owned(),
                arn: u.arn().to_owned(),
                path: u.path().to_owned(),
            }));
            match page.marker().filter(|_| page.is_truncated()) {
                Some(m) => marker = Some(m.to_owned()),
                None => return Ok(out),
            }
        }
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKey>, AwsError> {
        let out = self
            .iam("ListAccessKeys", |c| c.list_access_keys().user_name(user).send())
            .await?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|m| {
                Some(AccessKey {
                    id: m.access_key_id()?.to_owned(),
                    active: m.status() == Some(&StatusType::Active),
                    created: m.create_date().map(chrono_time),
                })
            })
            .collect())
    }

    async fn last_used(&self, access_key_id: &str) -> Result<Option<LastUse>, AwsError> {
        let out = self
            .iam("GetAccessKeyLastUsed", |c| {
                c.get_access_key_last_used().access_key_id(access_key_id).send()
            })
            .await?;
        Ok(out.access_key_last_used().and_then(|u| {
            u.last_used_date().map(|d| LastUse {
                date: chrono_time(d),
                service: u.service_name().to_owned(),
                region: u.region().to_owned(),
            })
        }))
    }

    async fn user_tags(&self, user: &str) -> Result<Vec<(String, String)>, AwsError> {
        let out = self
            .iam("ListUserTags", |c| c.list_user_tags().user_name(user).send())
            .await?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn deactivate(&self, user: &str, access_key_id: &str) -> Result<(), AwsError> {
        self.iam("UpdateAccessKey", |c| {
            c.update_access_key()
                .user_name(user)
                .access_key_id(access_key_id)
                .status(StatusType::Inactive)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, user: &str, access_key_id: &str) -> Result<(), AwsError> {
        self.iam("DeleteAccessKey", |c| {
            c.delete_access_key()
                .user_name(user)
                .access_key_id(access_key_id)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, AwsError> {
        match self
            .iam("GetCredentialReport", |c| c.get_credential_report().send())
            .await
        {
            Ok(r) => Ok(Some(CredentialReport {
                generated: r.generated_time().map(chrono_time),
                csv: r.content.map(|c| c.into_inner()).unwrap_or_default(),
            })),
            Err(e)
                if matches!(
                    e.code.as_deref(),
                    Some("ReportNotPresent" | "ReportExpired" | "ReportInProgress")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn generate_credential_report(&self) -> Result<(), AwsError> {
        self.iam("GenerateCredentialReport", |c| {
            c.generate_credential_report().send()
        })
        .await?;
        Ok(())
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
