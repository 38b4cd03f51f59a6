//! [`LeaseApi`] over DynamoDB: one item per account, `lease_id` (the account id) as the key,
//! `holder`, `expires_at` (epoch milliseconds) and `version`. A claim is one conditional
//! `UpdateItem`: it succeeds when the item is absent, expired, or already ours.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};
use crate::lease::{Claim, Holder, LeaseApi};

#[derive(Debug, Clone)]
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLease {
    pub fn new(aws: &Aws, region: &str, table: &str) -> Self {
        Self {
            client: aws.dynamodb(region),
            table: table.to_owned(),
        }
    }

    async fn current(&self, account: &str) -> Result<Option<Holder>, AwsError> {
        let out = call(&RetryPolicy::ACTION, Service::DynamoDb, "GetItem", || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("lease_id", AttributeValue::S(account.to_owned()))
                .consistent_read(true)
                .send()
        })
        .await?;
        Ok(out.item.as_ref().and_then(holder))
    }
}

fn num(v: Option<&AttributeValue>) -> Option<i64> {
    v.and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

fn holder(item: &std::collections::HashMap<String, AttributeValue>) -> Option<Holder> {
    Some(Holder {
        holder: item.get("holder")?.as_s().ok()?.clone(),
        expires_at: DateTime::from_timestamp_millis(num(item.get("expires_at"))?)?,
        version: num(item.get("version")).unwrap_or(0) as u64,
    })
}

impl LeaseApi for DynamoLease {
    async fn claim(
        &self,
        account: &str,
        me: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Claim, AwsError> {
        let sent = call(&RetryPolicy::ACTION, Service::DynamoDb, "UpdateItem", || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("lease_id", AttributeValue::S(account.to_owned()))
                .update_expression(
                    "SET holder = :me, expires_at = :until, version = if_not_exists(version, :zero) + :one",
                )
                .condition_expression("attribute_not_exists(lease_id) OR expires_at < :now OR holder = :me")
                .expression_attribute_values(":me", AttributeValue::S(me.to_owned()))
                .expression_attribute_values(
                    ":until",
                    AttributeValue::N(until.timestamp_millis().to_string()),
                )
                .expression_attribute_values(":now", AttributeValue::N(now.timestamp_millis().to_string()))
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .return_values(ReturnValue::AllNew)
                .send()
        })
        .await;
        match sent {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(holder)
                .map(Claim::Held)
                .ok_or_else(|| {
                    AwsError::local(
                        Service::DynamoDb,
                        "UpdateItem",
                        ErrorType::Other,
                        "no lease item in the answer",
                    )
                }),
            Err(e) if e.code.as_deref() == Some("ConditionalCheckFailedException") => {
                let other = self.current(account).await?.unwrap_or(Holder {
                    holder: "(unknown)".into(),
                    expires_at: until,
                    version: 0,
                });
                Ok(Claim::Taken(other))
            }
            Err(e) => Err(e),
        }
    }

    async fn release(&self, account: &str, me: &str) -> Result<(), AwsError> {
        let sent = call(&RetryPolicy::ACTION, Service::DynamoDb, "DeleteItem", || {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("lease_id", AttributeValue::S(account.to_owned()))
                .condition_expression("holder = :me")
                .expression_attribute_values(":me", AttributeValue::S(me.to_owned()))
                .send()
        })
        .await;
        match sent {
            Err(e) if e.code.as_deref() != Some("ConditionalCheckFailedException") => Err(e),
            _ => Ok(()),
        }
    }
}
