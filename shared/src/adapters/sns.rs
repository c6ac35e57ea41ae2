//! An SNS topic: one message per notice, a JSON document, with `kind` and `service` as message
//! attributes so subscriptions can filter (only failures to the pager, say).

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use sha2::{Digest, Sha256};

use super::aws::Lazy;
use crate::ports::notifier::{Notice, NotifyError, Sink};

/// PublishBatch's limit.
const BATCH: usize = 10;
/// SNS subjects: printable ASCII, under 100 characters.
const SUBJECT_MAX: usize = 99;

pub struct SnsTopic {
    client: Lazy<aws_sdk_sns::Client>,
    topic_arn: String,
}

impl SnsTopic {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client: Lazy::ready(client),
            topic_arn: topic_arn.into(),
        }
    }

    /// The functions' topic: the SNS client is built on the first notice.
    pub fn from_sdk(sdk: &aws_types::SdkConfig, topic_arn: impl Into<String>) -> Self {
        let sdk = sdk.clone();
        Self {
            client: Lazy::new(move || aws_sdk_sns::Client::new(&sdk)),
            topic_arn: topic_arn.into(),
        }
    }

    fn fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }

    fn entry(&self, i: usize, n: &Notice) -> Result<PublishBatchRequestEntry, NotifyError> {
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| NotifyError::Sns(e.to_string()))
        };
        let message = n.to_json();
        let mut entry = PublishBatchRequestEntry::builder()
            .id(format!("n{i}"))
            .subject(subject(n))
            .message_attributes("kind", attr(n.kind.as_str())?)
            .message_attributes("service", attr(&n.service)?);
        if self.fifo() {
            // A FIFO topic orders per service and drops the copy a redelivery would publish.
            let dedup = hex::encode(Sha256::digest(message.as_bytes()));
            entry = entry
                .message_group_id(n.service.clone())
                .message_deduplication_id(dedup);
        }
        entry
            .message(message)
            .build()
            .map_err(|e| NotifyError::Sns(e.to_string()))
    }
}

/// The notice's line, cut to what SNS takes as a subject.
fn subject(n: &Notice) -> String {
    let printable: String = n
        .text()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if printable.len() <= SUBJECT_MAX {
        printable
    } else {
        format!("{}...", &printable[..SUBJECT_MAX - 3])
    }
}

#[async_trait::async_trait]
impl Sink for SnsTopic {
    fn name(&self) -> &'static str {
        "sns"
    }

    async fn send(&self, notices: &[Notice]) -> Result<(), NotifyError> {
        for chunk in notices.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, n)| self.entry(i, n))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .get()
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    NotifyError::Sns(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
                })?;
            if let Some(failed) = out.failed().first() {
                return Err(NotifyError::Sns(format!(
                    "{} of {} messages refused: {} {}",
                    out.failed().len(),
                    chunk.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::notifier::NoticeKind;

    #[test]
    fn subjects_are_printable_ascii_under_100_characters() {
        let n = Notice {
            kind: NoticeKind::DeploymentBlocked,
            service: "prod/api".into(),
            image: format!("r.example.com/a@sha256:{}", "ab".repeat(32)),
            stage: None,
            detail: Some("waits for eu-west-1 — replication\nfailed".into()),
            event_id: None,
        };
        let s = subject(&n);
        assert!(s.len() <= SUBJECT_MAX, "{s}");
        assert!(s.starts_with("Deployment blocked: prod/api -> r.example.com/a@sha256:"));
        assert!(s.ends_with("..."));
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
        let short = Notice {
            detail: Some("é\nx".into()),
            image: "a".into(),
            ..n
        };
        assert_eq!(subject(&short), "Deployment blocked: prod/api -> a: ??x");
    }
}
