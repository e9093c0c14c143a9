//! Running a phase with N concurrent workers, and reporting what it measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// A phase stops at the first of: `max_ops` operations started, `deadline` passed, or more
/// than `MAX_ERRORS` failures.
const MAX_ERRORS: u64 = 100;

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub scenario: &'static str,
    pub name: String,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub bytes: u64,
    pub secs: f64,
    /// Per-operation latencies, microseconds, sorted.
    pub lat_us: Vec<u64>,
    pub first_error: Option<String>,
}

impl Phase {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }

    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.secs.max(1e-9)
    }

    /// The q-quantile latency in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.lat_us.len() as f64).ceil() as usize).clamp(1, self.lat_us.len());
        self.lat_us[rank - 1] as f64 / 1000.0
    }

    pub fn text_line(&self) -> String {
        let mut line = format!(
            "{:<6} {:<7} c={:<3} ops={:<8} err={:<3} secs={:>7.2}  ops/s={:>9.1}",
            self.scenario,
            self.name,
            self.concurrency,
            self.ops,
            self.errors,
            self.secs,
            self.ops_per_sec()
        );
        if self.bytes > 0 {
            line += &format!("  MiB/s={:>8.1}", self.mib_per_sec());
        }
        line += &format!(
            "  p50={:>8.2}ms  p99={:>8.2}ms  max={:>8.2}ms",
            self.quantile_ms(0.50),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0)
        );
        if let Some(e) = &self.first_error {
            line += &format!("\n       first error: {e}");
        }
        line
    }

    pub fn json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "phase": self.name,
            "concurrency": self.concurrency,
            "ops": self.ops,
            "errors": self.errors,
            "bytes": self.bytes,
            "secs": self.secs,
            "ops_per_sec": self.ops_per_sec(),
            "mib_per_sec": self.mib_per_sec(),
            "p50_ms": self.quantile_ms(0.50),
            "p99_ms": self.quantile_ms(0.99),
            "max_ms": self.quantile_ms(1.0),
            "first_error": self.first_error,
        })
    }

    /// Fails when the phase did nothing useful.
    pub fn require_success(&self) -> Result<()> {
        if self.ops == 0 || self.errors > 0 {
            bail!(
                "{} {}: {} ok, {} failed; first error: {}",
                self.scenario,
                self.name,
                self.ops,
                self.errors,
                self.first_error.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    }
}

/// Runs `op(i)` for i = 0, 1, 2, … on `concurrency` tasks until `max_ops` were started or
/// `duration` (if any) has passed. `op` returns the payload bytes it moved.
pub async fn run_phase<F, Fut>(
    scenario: &'static str,
    name: &str,
    concurrency: usize,
    max_ops: u64,
    duration: Option<Duration>,
    op: F,
) -> Phase
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (op, next, errors) = (op.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut bytes, mut first_error) = (0u64, None);
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) || errors.load(Ordering::Relaxed) > MAX_ERRORS {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_ops {
                    break;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(n) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        bytes += n;
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (lat, bytes, first_error)
        }));
    }
    let mut phase = Phase {
        scenario,
        name: name.to_owned(),
        concurrency,
        ops: 0,
        errors: 0,
        bytes: 0,
        secs: 0.0,
        lat_us: Vec::new(),
        first_error: None,
    };
    for t in tasks {
        match t.await {
            Ok((lat, bytes, first_error)) => {
                phase.lat_us.extend(lat);
                phase.bytes += bytes;
                if phase.first_error.is_none() {
                    phase.first_error = first_error;
                }
            }
            Err(e) => {
                phase.first_error.get_or_insert_with(|| format!("worker panicked: {e}"));
            }
        }
    }
    phase.secs = start.elapsed().as_secs_f64();
    phase.errors = errors.load(Ordering::Relaxed);
    phase.ops = phase.lat_us.len() as u64;
    phase.lat_us.sort_unstable();
    phase
}
