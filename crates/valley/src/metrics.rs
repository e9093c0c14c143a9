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
pub struct MethodLabel {
    pub method: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<MethodLabel, Histogram>,
    pub requests_in_flight: Gauge,
    pub orphan_blobs_removed: Counter,
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
        Self {
            registry,
            requests,
            request_seconds,
            requests_in_flight,
            orphan_blobs_removed,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
