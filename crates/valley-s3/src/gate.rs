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

/// The synchronous copies made of one write before its local commit (see
/// [`NetworkGate::copy_before_commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCopies {
    /// Copies the bucket's policy asks for, this hub's included (`ack_copies`).
    pub wanted: u32,
    /// Peers that confirmed holding the version.
    pub confirmed: Vec<String>,
    /// Every peer a copy was sent to (the ones that may hold it).
    pub contacted: Vec<String>,
    /// Acknowledge with fewer copies rather than fail (`ack_fallback = degrade`).
    pub degrade: bool,
    pub timeout: std::time::Duration,
}

impl SyncCopies {
    /// Durable copies once committed here, this hub's included.
    #[must_use]
    pub fn made(&self) -> u32 {
        u32::try_from(self.confirmed.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    #[must_use]
    pub fn enough(&self) -> bool {
        self.made() >= self.wanted
    }
}

/// Control records written in the transaction of a bucket change, and what follows its commit
/// (waking the senders, auditing).
pub struct NetworkWrites {
    pub write: valley_store::WriteJob,
    pub committed: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

impl NetworkWrites {
    /// Nothing to write (a lone hub).
    #[must_use]
    pub fn none() -> Self {
        Self {
            write: Box::new(|_| Ok(())),
            committed: Box::new(|| Box::pin(async {})),
        }
    }
}

/// Residency checks, bucket lifecycle records and read-through.
#[async_trait::async_trait]
pub trait NetworkGate: Send + Sync + 'static {
    /// Whether this hub may take a client's data for `bucket`; `Err` names the residency rule
    /// (answered as AccessDenied, before any byte is stored).
    async fn check_write(&self, bucket: &str) -> Result<(), String>;
    /// Whether this hub may copy `source_bucket`'s object `key` into `dest_bucket` (the
    /// source's policy decides, for every hub the destination allows); `Err` names the rule.
    /// When allowed, the destination is held to the source's residency from then on.
    async fn check_copy(&self, source_bucket: &str, key: &str, dest_bucket: &str) -> Result<(), String>;
    /// A request was refused access (`detail` names who, what, and the statement or missing
    /// allow that decided): for the audit log, which records them at a bounded rate.
    fn access_refused(&self, _bucket: &str, _detail: String) {}
    /// The network's records of a bucket a client is creating here (its default placement
    /// policy), to write in the bucket's own transaction: `Err` refuses the creation.
    fn bucket_created_writes(&self, bucket: &str) -> Result<NetworkWrites, String>;
    /// The network's record of `bucket`'s versioning a client is setting here, to write in
    /// the transaction that sets it.
    fn versioning_writes(&self, bucket: &str, versioning: valley_store::record::Versioning) -> NetworkWrites;
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
    /// Copies a write to `bucket` must have, this hub's included, before it is acknowledged
    /// (1: none are made before the local commit).
    async fn ack_copies(&self, _bucket: &str) -> u32 {
        1
    }
    /// Sends `version` of `bucket/key` (stamped, its data durable here, not yet committed) to
    /// the peers its synchronous copies go to, until enough confirmed or the policy's timeout
    /// passed. `Ok(None)`: the bucket asks for none. `Err`: no copy could be attempted.
    async fn copy_before_commit(
        &self,
        _bucket: &str,
        _key: &str,
        _version: &valley_store::record::ObjectVersion,
    ) -> Result<Option<SyncCopies>, String> {
        Ok(None)
    }
    /// Settles a write after its copies: `committed` false retracts (durably) the copies that
    /// may have been applied; a degraded write is audited. `started`: when the write began
    /// waiting for its copies (for its latency).
    async fn settle_copies(
        &self,
        _bucket: &str,
        _key: &str,
        _version: &valley_store::record::ObjectVersion,
        _copies: &SyncCopies,
        _committed: bool,
        _started: std::time::Instant,
    ) -> Result<(), String> {
        Ok(())
    }
    /// The bytes `start..start + len` of a version found by [`Self::find_elsewhere`].
    async fn read_elsewhere(
        &self,
        remote: &RemoteVersion,
        start: u64,
        len: u64,
    ) -> Result<valley_store::ByteStream, String>;
}
