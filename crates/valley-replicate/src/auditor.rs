//! [`Auditor`]: this hub's audit log — appending to it off the async threads, the refused S3
//! requests it records (at most once per interval), and the signing of its chain's heads.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use valley_audit::{AuditEvent, AuditKind, AuditLog};

use crate::heads::HeadSigning;
use crate::refusals::RefusalLimiter;

pub struct Auditor {
    /// This hub, the author of every event made here.
    hub: String,
    log: Arc<AuditLog>,
    /// S3 requests refused by their access check: counted, audited once per interval.
    pub access_refusals: RefusalLimiter,
    /// Signing this hub's audit heads and checking its peers' (networks with TLS only).
    head_signing: OnceLock<HeadSigning>,
}

/// Appends `event` to `log`; a failure to audit is logged loudly (the action stands).
async fn append(log: Arc<AuditLog>, event: AuditEvent) {
    let result = tokio::task::spawn_blocking(move || log.append(event)).await;
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "audit append failed"),
        Err(e) => tracing::error!(error = %e, "audit task failed"),
    }
}

impl Auditor {
    /// The audit log of hub `hub`, in `data_dir`.
    pub(crate) fn open(hub: &str, data_dir: &Path) -> Result<Self, valley_audit::AuditError> {
        Ok(Self {
            hub: hub.to_owned(),
            log: Arc::new(AuditLog::open(data_dir.join("audit.log"))?),
            access_refusals: RefusalLimiter::new("S3 request refused"),
            head_signing: OnceLock::new(),
        })
    }

    /// An event of this hub, to fill in and record.
    pub fn event(&self, kind: AuditKind, detail: impl Into<String>) -> AuditEvent {
        AuditEvent::new(self.hub.clone(), kind, detail)
    }

    /// Appends to the audit log; a failure to audit is logged loudly (the action stands).
    pub async fn record(&self, event: AuditEvent) {
        append(self.log.clone(), event).await;
    }

    /// Records several events with one write and one fsync.
    pub async fn record_batch(&self, events: Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        let log = self.log.clone();
        let result = tokio::task::spawn_blocking(move || log.append_batch(events)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit append failed"),
            Err(e) => tracing::error!(error = %e, "audit task failed"),
        }
    }

    /// An S3 request refused by its access check: counted, and recorded with the statement (or
    /// missing allow) that decided at most once per interval, so a stranger cannot flood the log.
    pub fn access_refused(&self, bucket: &str, detail: &str) {
        if let Some(recorded) = self.access_refusals.note("access-denied", detail) {
            let event = self
                .event(AuditKind::RefusedRequest, recorded)
                .with_bucket(bucket)
                .with_allowed(false);
            tokio::spawn(append(self.log.clone(), event));
        }
    }

    /// The newest durable record of this hub's audit chain.
    #[must_use]
    pub fn head(&self) -> valley_audit::Head {
        self.log.head()
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Signs this hub's audit heads with its certificate key and checks its peers' heads
    /// against the network CA (call once, on a network with TLS, before [`crate::heads::start`]).
    pub fn enable_signed_heads(&self, signing: HeadSigning) {
        let _ = self.head_signing.set(signing);
    }

    pub(crate) fn head_signing(&self) -> Option<&HeadSigning> {
        self.head_signing.get()
    }
}
