//! What the S3 front asks of the hub network when the hub is part of one. Kept as a trait so
//! this crate does not depend on the network layer; a lone hub has no gate.

/// Residency checks and bucket lifecycle notices.
#[async_trait::async_trait]
pub trait NetworkGate: Send + Sync + 'static {
    /// Whether this hub may take a client's data for `bucket`; `Err` names the residency rule
    /// (answered as AccessDenied, before any byte is stored).
    async fn check_write(&self, bucket: &str) -> Result<(), String>;
    /// A client created `bucket` here.
    async fn bucket_created(&self, bucket: &str);
}
