//! DynamoDB over moto, with conditional writes made atomic.
//!
//! moto 5.2.1 evaluates `ConditionExpression` on `PutItem`, `UpdateItem` and `DeleteItem`
//! (`ConditionalCheckFailedException`) but, serving requests on several threads, checks and
//! writes in two steps. The sandbox lets one DynamoDB write at a time through to moto, so a
//! conditional write is one step as on AWS. Reads are not held back.

use http::Response;

use crate::server::{self, Ctx};
use crate::wire::Body;

/// Operations that change items.
fn writes(op: &str) -> bool {
    matches!(
        op,
        "PutItem"
            | "UpdateItem"
            | "DeleteItem"
            | "BatchWriteItem"
            | "TransactWriteItems"
            | "ExecuteStatement"
    )
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    if !writes(&ctx.operation) {
        return ctx.pass().await;
    }
    let lock = ctx.shared.write_lock("dynamodb");
    let _held = lock.lock().await;
    match server::forward(&ctx.shared.moto_url, &ctx.parts, ctx.body.clone()).await {
        Ok(up) => up.into_response(),
        Err(e) => ctx.error(502, "InternalServerError", &e),
    }
}
