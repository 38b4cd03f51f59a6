//! SQS, forwarded to moto.

use http::Response;

use crate::server::Ctx;
use crate::wire::Body;

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    ctx.pass().await
}
