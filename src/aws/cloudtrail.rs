//! [`LookupApi`] over the CloudTrail SDK client: every attempt takes a token from the shared
//! [`Limiter`] first, and throttling and 5xx are retried with [`RetryPolicy::LOOKUP`].

use std::sync::Arc;

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime as SmithyTime;

use super::{Aws, AwsError, Limiter, Place, RetryPolicy, Service, call, chrono_time};
use crate::sources::{LookedUp, LookupApi, LookupKey, LookupPage, LookupQuery};
use crate::telemetry;

/// Event history through the SDK, rate limited per account and region.
#[derive(Debug, Clone)]
pub struct CloudTrail {
    aws: Aws,
    limiter: Arc<Limiter>,
}

impl CloudTrail {
    pub fn new(aws: Aws, limiter: Arc<Limiter>) -> Self {
        Self { aws, limiter }
    }
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> SmithyTime {
    SmithyTime::from_millis(t.timestamp_millis())
}

impl LookupApi for CloudTrail {
    async fn lookup(&self, place: &Place, q: &LookupQuery) -> Result<LookupPage, AwsError> {
        let client = self.aws.cloudtrail_in(Some(&place.account), &place.region);
        let attr = LookupAttribute::builder()
            .attribute_key(match q.key {
                LookupKey::EventSource => LookupAttributeKey::EventSource,
                LookupKey::ResourceName => LookupAttributeKey::ResourceName,
            })
            .attribute_value(&q.value)
            .build()
            .expect("attribute key and value are set");
        let (start, end) = (q.start.map(millis), q.end.map(millis));
        let out = call(
            &RetryPolicy::LOOKUP,
            Service::CloudTrail,
            "LookupEvents",
            || async {
                self.limiter.acquire(place).await;
                telemetry::lookup_request(&place.region);
                client
                    .lookup_events()
                    .lookup_attributes(attr.clone())
                    .set_start_time(start)
                    .set_end_time(end)
                    .max_results(50)
                    .set_next_token(q.next_token.clone())
                    .send()
                    .await
            },
        )
        .await?;
        Ok(LookupPage {
            events: out
                .events()
                .iter()
                .filter_map(|e| {
                    Some(LookedUp {
                        time: e.event_time().map(chrono_time),
                        record: e.cloud_trail_event()?.to_owned(),
                    })
                })
                .collect(),
            next_token: out.next_token.filter(|t| !t.is_empty()),
        })
    }
}
