//! The baseline for the `eventbridge_sqs` source's rate: a plain SQS consumer with the same SDK
//! and the same receive parameters, doing nothing with the messages but deleting them.
//!
//!     cargo run --release --example sqs_drain -- QUEUE_URL MESSAGES [RECEIVERS]
//!
//! RECEIVERS loops (default 2, trailguard's default) each long-poll for 10 messages at a time
//! (`WaitTimeSeconds` 20) and delete what they got in one `DeleteMessageBatch`, until MESSAGES
//! have been deleted. Prints the seconds from the first message received to the last deleted,
//! and the rate. The endpoint and credentials come from the environment (`AWS_ENDPOINT_URL`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(total)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: sqs_drain QUEUE_URL MESSAGES [RECEIVERS]");
    };
    let total: usize = total.parse()?;
    let receivers: usize = args.get(2).map_or(Ok(2), |r| r.parse())?;
    let conf = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let deleted = Arc::new(AtomicUsize::new(0));
    let first: Arc<OnceCell<Instant>> = Arc::default();
    let done = Arc::new(tokio::sync::Notify::new());
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..receivers {
        let (sqs, url, deleted, first, done) = (
            sqs.clone(),
            url.clone(),
            deleted.clone(),
            first.clone(),
            done.clone(),
        );
        loops.spawn(async move {
            while deleted.load(Ordering::Relaxed) < total {
                let got = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(20)
                    .visibility_timeout(60)
                    .send()
                    .await?;
                let messages = got.messages.unwrap_or_default();
                if messages.is_empty() {
                    continue;
                }
                let _ = first.set(Instant::now());
                let entries = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = sqs
                    .delete_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                let n = out.successful.len();
                if deleted.fetch_add(n, Ordering::Relaxed) + n >= total {
                    done.notify_one();
                }
            }
            anyhow::Ok(())
        });
    }
    // The other receivers may be in a long poll of an empty queue: the run ends with the last
    // delete, not with them.
    tokio::select! {
        _ = done.notified() => {}
        r = async {
            while let Some(r) = loops.join_next().await {
                r??;
            }
            anyhow::Ok(())
        } => r?,
    }
    let secs = first.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    let n = deleted.load(Ordering::Relaxed);
    println!("{n} {secs:.3} {:.1}", n as f64 / secs);
    Ok(())
}
