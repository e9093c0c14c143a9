//! Prometheus metrics, named `valley_<subsystem>_<what>_<unit>`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

/// A tenant's traffic over one link (this hub to `peer`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantPeerLabel {
    pub tenant: String,
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabel {
    pub bucket: String,
}

/// A bucket's replication over one link (this hub to `peer`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLinkLabel {
    pub bucket: String,
    pub peer: String,
}

/// A listener (`s3`, `admin`) and what happened to a connection on it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    pub listener: String,
    pub reason: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// How a write with synchronous copies ended (`synchronous`, `degraded`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<MethodLabel, Histogram>,
    pub requests_in_flight: Gauge,
    pub orphan_blobs_removed: Counter,
    pub link_backlog_entries: Family<PeerLabel, Gauge>,
    pub link_backlog_bytes: Family<PeerLabel, Gauge>,
    pub link_lag_seconds: Family<PeerLabel, FloatGauge>,
    pub link_reachable: Family<PeerLabel, Gauge>,
    pub link_lost: Family<PeerLabel, Gauge>,
    pub link_repaired: Family<PeerLabel, Gauge>,
    pub bucket_backlog_entries: Family<BucketLinkLabel, Gauge>,
    pub bucket_backlog_bytes: Family<BucketLinkLabel, Gauge>,
    pub bucket_lag_seconds: Family<BucketLinkLabel, FloatGauge>,
    pub connections_open: Family<ConnectionLabel, Gauge>,
    pub connections_refused: Family<ConnectionLabel, Counter>,
    pub peer_calls_refused: Gauge,
    pub stranded_versions: Family<BucketLabel, Gauge>,
    pub stranded_bytes: Family<BucketLabel, Gauge>,
    pub tenant_objects: Family<TenantLabel, Gauge>,
    pub tenant_bytes: Family<TenantLabel, Gauge>,
    pub tenant_buckets: Family<TenantLabel, Gauge>,
    pub tenant_requests: Family<TenantLabel, Counter>,
    pub tenant_sent_versions: Family<TenantPeerLabel, Counter>,
    pub tenant_sent_bytes: Family<TenantPeerLabel, Counter>,
    pub sync_writes: Family<OutcomeLabel, Counter>,
    pub sync_write_seconds: Family<OutcomeLabel, Histogram>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("valley");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "s3_requests",
            "S3 API requests by HTTP method and status",
            requests.clone(),
        );
        let request_seconds = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 20))
        });
        registry.register(
            "s3_request_duration_seconds",
            "S3 API request latency until response headers",
            request_seconds.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "s3_requests_in_flight",
            "S3 API requests being served",
            requests_in_flight.clone(),
        );
        let orphan_blobs_removed = Counter::default();
        registry.register(
            "store_orphan_blobs_removed",
            "Unreferenced blobs removed at start-up",
            orphan_blobs_removed.clone(),
        );
        let link_backlog_entries = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "replication_link_backlog_entries",
            "Outbox entries not yet delivered, per peer",
            link_backlog_entries.clone(),
        );
        let link_backlog_bytes = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "replication_link_backlog_bytes",
            "Object bytes not yet delivered, per peer",
            link_backlog_bytes.clone(),
        );
        let link_lag_seconds = Family::<PeerLabel, FloatGauge>::default();
        registry.register(
            "replication_link_lag_seconds",
            "Age of the oldest undelivered entry, per peer",
            link_lag_seconds.clone(),
        );
        let link_reachable = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "replication_link_reachable",
            "1 when the last call to the peer got an answer",
            link_reachable.clone(),
        );
        let link_lost = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "replication_peer_lost",
            "1 when the peer is declared lost for good (its copies are re-created elsewhere)",
            link_lost.clone(),
        );
        let link_repaired = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "replication_link_repaired_versions",
            "Versions anti-entropy found missing at the peer and sent, since this hub started",
            link_repaired.clone(),
        );
        let bucket_backlog_entries = Family::<BucketLinkLabel, Gauge>::default();
        registry.register(
            "replication_bucket_backlog_entries",
            "Outbox entries not yet delivered, per bucket and receiving hub",
            bucket_backlog_entries.clone(),
        );
        let bucket_backlog_bytes = Family::<BucketLinkLabel, Gauge>::default();
        registry.register(
            "replication_bucket_backlog_bytes",
            "Object bytes not yet delivered, per bucket and receiving hub",
            bucket_backlog_bytes.clone(),
        );
        let bucket_lag_seconds = Family::<BucketLinkLabel, FloatGauge>::default();
        registry.register(
            "replication_bucket_lag_seconds",
            "Age of the oldest unreplicated write (the recovery point), per bucket and receiving hub",
            bucket_lag_seconds.clone(),
        );
        let connections_open = Family::<ConnectionLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "Connections open, per listener",
            connections_open.clone(),
        );
        let connections_refused = Family::<ConnectionLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept (listener or client cap, failed TLS handshake) and failed accepts",
            connections_refused.clone(),
        );
        let peer_calls_refused = Gauge::default();
        registry.register(
            "peer_calls_refused",
            "Peer calls refused before being served (bad signature, replay, stranger, implausible clock), since start",
            peer_calls_refused.clone(),
        );
        let stranded_versions = Family::<BucketLabel, Gauge>::default();
        registry.register(
            "replication_stranded_versions",
            "Versions held here of a bucket whose policy no longer allows this hub (kept until handed off or purged)",
            stranded_versions.clone(),
        );
        let stranded_bytes = Family::<BucketLabel, Gauge>::default();
        registry.register(
            "replication_stranded_bytes",
            "Bytes of those versions",
            stranded_bytes.clone(),
        );
        let tenant_objects = Family::<TenantLabel, Gauge>::default();
        registry.register(
            "tenant_objects",
            "Object versions this hub holds of each tenant's buckets (what an operator bills by)",
            tenant_objects.clone(),
        );
        let tenant_bytes = Family::<TenantLabel, Gauge>::default();
        registry.register(
            "tenant_bytes",
            "Bytes this hub holds of each tenant's buckets",
            tenant_bytes.clone(),
        );
        let tenant_buckets = Family::<TenantLabel, Gauge>::default();
        registry.register("tenant_buckets", "Buckets each tenant owns", tenant_buckets.clone());
        let tenant_requests = Family::<TenantLabel, Counter>::default();
        registry.register(
            "tenant_requests",
            "S3 requests on each tenant's buckets (refused ones only from its own users), and requests on no bucket by its users",
            tenant_requests.clone(),
        );
        let tenant_sent_versions = Family::<TenantPeerLabel, Counter>::default();
        registry.register(
            "tenant_replication_sent_versions",
            "Versions of each tenant's buckets this hub delivered to each peer",
            tenant_sent_versions.clone(),
        );
        let tenant_sent_bytes = Family::<TenantPeerLabel, Counter>::default();
        registry.register(
            "tenant_replication_sent_bytes",
            "Bytes of each tenant's buckets this hub delivered to each peer",
            tenant_sent_bytes.clone(),
        );
        let sync_writes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "replication_sync_writes",
            "Writes to buckets with ack_copies above 1, by outcome (synchronous, degraded, failed)",
            sync_writes.clone(),
        );
        let sync_write_seconds = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        registry.register(
            "replication_sync_write_duration_seconds",
            "Time from stamping a write with synchronous copies to its settlement (copies and local commit), by outcome",
            sync_write_seconds.clone(),
        );
        Self {
            registry,
            tenant_objects,
            tenant_bytes,
            tenant_buckets,
            tenant_requests,
            tenant_sent_versions,
            tenant_sent_bytes,
            sync_writes,
            sync_write_seconds,
            stranded_versions,
            stranded_bytes,
            connections_open,
            connections_refused,
            peer_calls_refused,
            link_backlog_entries,
            link_backlog_bytes,
            link_lag_seconds,
            link_reachable,
            link_lost,
            link_repaired,
            bucket_backlog_entries,
            bucket_backlog_bytes,
            bucket_lag_seconds,
            requests,
            request_seconds,
            requests_in_flight,
            orphan_blobs_removed,
        }
    }

    /// Counts a write with synchronous copies and, when known, how long it took.
    pub fn observe_sync_write(&self, outcome: valley_replicate::sync::SyncOutcome, took: Option<std::time::Duration>) {
        let label = OutcomeLabel {
            outcome: outcome.as_str().to_owned(),
        };
        self.sync_writes.get_or_create(&label).inc();
        if let Some(took) = took {
            self.sync_write_seconds
                .get_or_create(&label)
                .observe(took.as_secs_f64());
        }
    }

    /// Refreshes the per-tenant usage gauges: every tenant's buckets' counters at this hub.
    pub async fn observe_tenants(&self, directory: &valley_tenants::Directory, catalog: &valley_store::Catalog) {
        for tenant in directory.tenants() {
            let buckets = directory.buckets_of(&tenant);
            let (mut objects, mut bytes) = (0u64, 0u64);
            for bucket in &buckets {
                if let Ok((o, b)) = catalog.bucket_usage(bucket).await {
                    objects += o;
                    bytes += b;
                }
            }
            let label = TenantLabel { tenant };
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.tenant_objects.get_or_create(&label).set(gauge(objects));
            self.tenant_bytes.get_or_create(&label).set(gauge(bytes));
            self.tenant_buckets
                .get_or_create(&label)
                .set(gauge(buckets.len() as u64));
        }
    }

    /// Counts one S3 request billed to `tenant`.
    pub fn count_tenant_request(&self, tenant: &str) {
        self.tenant_requests
            .get_or_create(&TenantLabel {
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    /// Brings the per-tenant traffic counters up to what the hub has delivered, per bucket,
    /// summed by each bucket's owner.
    pub fn observe_tenant_traffic(&self, hub: &valley_replicate::Hub, directory: &valley_tenants::Directory) {
        let mut sums: std::collections::HashMap<TenantPeerLabel, valley_replicate::moved::Moved> =
            std::collections::HashMap::new();
        for (bucket, peer, moved) in hub.moved.snapshot() {
            let label = TenantPeerLabel {
                tenant: directory.owner_of(&bucket),
                peer,
            };
            let sum = sums.entry(label).or_default();
            sum.versions += moved.versions;
            sum.bytes += moved.bytes;
        }
        // Counters only go up: a bucket re-created by another tenant leaves its old owner's
        // total as it was.
        let raise = |counter: &Counter, to: u64| {
            let now = counter.get();
            if to > now {
                counter.inc_by(to - now);
            }
        };
        for (label, sum) in sums {
            raise(&self.tenant_sent_versions.get_or_create(&label), sum.versions);
            raise(&self.tenant_sent_bytes.get_or_create(&label), sum.bytes);
        }
    }

    /// Refreshes the replication gauges from the hub's outbox and links.
    pub async fn observe_network(&self, hub: &valley_replicate::Hub) {
        self.peer_calls_refused
            .set(i64::try_from(hub.peers.refusals.total()).unwrap_or(i64::MAX));
        for link in hub.link_status().await {
            let label = PeerLabel {
                peer: link.peer.clone(),
            };
            self.link_backlog_entries
                .get_or_create(&label)
                .set(i64::try_from(link.backlog_entries).unwrap_or(i64::MAX));
            self.link_backlog_bytes
                .get_or_create(&label)
                .set(i64::try_from(link.backlog_bytes).unwrap_or(i64::MAX));
            self.link_lag_seconds.get_or_create(&label).set(link.lag_seconds);
            self.link_reachable.get_or_create(&label).set(i64::from(link.reachable));
            self.link_lost.get_or_create(&label).set(i64::from(link.lost));
            self.link_repaired
                .get_or_create(&label)
                .set(i64::try_from(link.repaired_versions).unwrap_or(i64::MAX));
        }
        self.stranded_versions.clear();
        self.stranded_bytes.clear();
        for (bucket, versions, bytes) in hub.stranded().await.unwrap_or_default() {
            let label = BucketLabel { bucket };
            self.stranded_versions
                .get_or_create(&label)
                .set(i64::try_from(versions).unwrap_or(i64::MAX));
            self.stranded_bytes
                .get_or_create(&label)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.bucket_backlog_entries.clear();
        self.bucket_backlog_bytes.clear();
        self.bucket_lag_seconds.clear();
        for row in hub.bucket_backlog().await.unwrap_or_default() {
            let label = BucketLinkLabel {
                bucket: row.bucket.clone(),
                peer: row.peer.clone(),
            };
            self.bucket_backlog_entries
                .get_or_create(&label)
                .set(i64::try_from(row.entries).unwrap_or(i64::MAX));
            self.bucket_backlog_bytes
                .get_or_create(&label)
                .set(i64::try_from(row.bytes).unwrap_or(i64::MAX));
            self.bucket_lag_seconds.get_or_create(&label).set(row.lag_seconds);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
