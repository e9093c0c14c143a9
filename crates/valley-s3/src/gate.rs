//! What the S3 front asks of the hub network when the hub is part of one. Kept as a trait so
//! this crate does not depend on the network layer; a lone hub has no gate.

/// A version this hub does not hold, found at another hub of the network.
#[derive(Debug, Clone)]
pub struct RemoteVersion {
    pub holder: String,
    pub bucket: String,
    pub key: String,
    pub version: valley_store::record::ObjectVersion,
}

/// Residency checks, bucket lifecycle notices and read-through.
#[async_trait::async_trait]
pub trait NetworkGate: Send + Sync + 'static {
    /// Whether this hub may take a client's data for `bucket`; `Err` names the residency rule
    /// (answered as AccessDenied, before any byte is stored).
    async fn check_write(&self, bucket: &str) -> Result<(), String>;
    /// Whether this hub may copy `source_bucket`'s object `key` into `dest_bucket` (the
    /// source's policy decides, for every hub the destination allows); `Err` names the rule.
    /// When allowed, the destination is held to the source's residency from then on.
    async fn check_copy(&self, source_bucket: &str, key: &str, dest_bucket: &str) -> Result<(), String>;
    /// A client created `bucket` here.
    async fn bucket_created(&self, bucket: &str);
    /// A client set `bucket`'s versioning here (already applied to the local bucket).
    async fn versioning_set(&self, bucket: &str, versioning: valley_store::record::Versioning);
    /// Looks for a version this hub does not hold at the hubs that may hold it. `Ok(None)`:
    /// nowhere; `Err` names the residency rule that forbids reading it through this hub
    /// (answered as AccessDenied).
    async fn find_elsewhere(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<RemoteVersion>, String>;
    /// A version of `key` newer than `local` (this hub's latest) that another hub holds, if
    /// this hub has heard of one. Errors mean "serve the local one".
    async fn newer_elsewhere(
        &self,
        bucket: &str,
        key: &str,
        local: &valley_store::record::ObjectVersion,
    ) -> Result<Option<RemoteVersion>, String>;
    /// The bytes `start..start + len` of a version found by [`Self::find_elsewhere`].
    async fn read_elsewhere(
        &self,
        remote: &RemoteVersion,
        start: u64,
        len: u64,
    ) -> Result<valley_store::ByteStream, String>;
}
