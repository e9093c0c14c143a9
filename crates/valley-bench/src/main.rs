//! `valley-bench`: a small, bounded S3 load generator for loopback endpoints.
//!
//! Scenarios:
//! - `large`: PUT then GET N objects of SIZE bytes with C concurrent requests (MiB/s per phase);
//! - `small`: PUT, GET and HEAD of small objects for a fixed time or count (ops/s, p50/p99);
//! - `list`: fill a bucket with K tiny objects once, then time 1,000-key ListObjectsV2 pages.
//!
//! Every phase is bounded in operations and time, and only loopback endpoints are accepted.
//! Results are printed as aligned text; `--json FILE` also writes them as JSON.

mod client;
mod scenarios;
mod sigv4;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

/// Load generator for Valley or any S3-compatible server on loopback.
#[derive(Debug, Parser)]
#[command(name = "valley-bench", version, about, long_about = None)]
pub struct Cli {
    /// S3 endpoint; must be a loopback address (http://127.0.0.1:PORT, or https with --ca).
    #[arg(long, env = "BENCH_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,

    /// CA certificate (PEM) an https endpoint's certificate is verified against.
    #[arg(long, env = "BENCH_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,

    #[arg(long, env = "BENCH_ACCESS_KEY")]
    pub access_key: String,

    #[arg(long, env = "BENCH_SECRET_KEY", hide_env_values = true)]
    pub secret_key: String,

    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// Bucket used by `large` and `small` (created if missing).
    #[arg(long, default_value = "bench")]
    pub bucket: String,

    /// A bucket policy (IAM JSON, `{bucket}` standing for the bucket's name) put on every
    /// bucket the scenario creates: the cost of authorization with a policy to evaluate.
    #[arg(long, value_name = "FILE")]
    pub bucket_policy: Option<PathBuf>,

    /// Default encryption put on every bucket the scenario creates (`AES256`: SSE-S3), so
    /// every write is sealed and every read opened: the cost of encryption at rest.
    #[arg(long, value_name = "ALGORITHM")]
    pub bucket_encryption: Option<String>,

    /// Write and read every object with a customer key (SSE-C, a random one per run): the
    /// cost of encryption under the client's own key.
    #[arg(long)]
    pub sse_c: bool,

    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// A label for this run (e.g. "valley" or "garage"), copied into the JSON.
    #[arg(long, default_value = "")]
    pub label: String,

    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// PUT then GET COUNT objects of SIZE bytes; MiB/s per phase.
    Large(LargeArgs),
    /// PUT, GET, HEAD of SIZE-byte objects, each phase for DURATION or MAX_OPS; ops/s and latency.
    Small(SmallArgs),
    /// Fill LIST_BUCKET with KEYS empty objects (once), then time 1,000-key ListObjectsV2 pages.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct LargeArgs {
    /// Object size in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub size: usize,
    /// Number of objects.
    #[arg(long, default_value_t = 32)]
    pub count: u64,
    /// Concurrent requests.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    /// Keep the objects afterwards (they are deleted by default).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct SmallArgs {
    /// Object size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Concurrent requests.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Operations per phase at most.
    #[arg(long, default_value_t = 200_000)]
    pub max_ops: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Bucket to fill and list (created if missing).
    #[arg(long, default_value = "bench-list")]
    pub list_bucket: String,
    /// Number of objects in the bucket.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Concurrent PUTs while filling.
    #[arg(long, default_value_t = 64)]
    pub fill_concurrency: usize,
    /// Give up filling after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub fill_timeout: u64,
    /// Pages to time, each starting after a random key.
    #[arg(long, default_value_t = 50)]
    pub pages: u64,
    /// Keys per page (max-keys).
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Also time a full scan of the bucket through continuation tokens.
    #[arg(long)]
    pub scan: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valley-bench: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let endpoint = client::loopback_endpoint(&cli.endpoint)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let signer = sigv4::Signer::new(&cli.access_key, &cli.secret_key, &cli.region);
        let policy = match &cli.bucket_policy {
            Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
            None => None,
        };
        let s3 = client::S3::new(
            &endpoint,
            cli.ca.as_deref(),
            &cli.bucket,
            signer,
            256,
            Duration::from_secs(cli.timeout.max(1)),
        )?
        .with_bucket_policy(policy)
        .with_bucket_encryption(cli.bucket_encryption.clone())
        .with_customer_key(cli.sse_c);
        let phases = match &cli.scenario {
            Scenario::Large(a) => scenarios::large(&s3, a).await?,
            Scenario::Small(a) => scenarios::small(&s3, a).await?,
            Scenario::List(a) => scenarios::list(&s3, a).await?,
        };
        if let Some(path) = &cli.json {
            let doc = serde_json::json!({
                "label": cli.label,
                "endpoint": cli.endpoint,
                "results": phases.iter().map(|p| p.json()).collect::<Vec<_>>(),
            });
            std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        for p in &phases {
            p.require_success()?;
        }
        Ok(())
    })
}
