//! `valley-faultproxy`: runs the fault proxy between two loopback addresses until Ctrl-C.
//!
//! Every failure the binary reports is one line on stderr and a non-zero exit. The seed is
//! printed first, on stdout, so a failing run can be replayed with `--seed`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use valley_faultproxy::{Config, FaultProxy, Faults};

/// A seeded TCP fault proxy for loopback: emulates a slow, lossy WAN link.
///
/// Loss is emulated as stalls (TCP retransmission pauses and throughput collapse), not as
/// dropped packets. Faults can be changed at runtime over --control (JSON lines, e.g.
/// {"cmd":"set","latency_ms":100}, {"cmd":"partition"}, {"cmd":"heal"}, {"cmd":"cut_all"},
/// {"cmd":"stats"}).
#[derive(Debug, Parser)]
#[command(name = "valley-faultproxy", version, about, long_about = None)]
struct Cli {
    /// Address clients connect to (loopback only).
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Address each connection is forwarded to (loopback only).
    #[arg(long, value_name = "HOST:PORT")]
    target: SocketAddr,
    /// Address of the JSON-lines control protocol (loopback only).
    #[arg(long, value_name = "HOST:PORT")]
    control: Option<SocketAddr>,
    /// Seed for every fault decision; random (and printed) if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Fixed one-way latency per direction, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra one-way delay drawn from 0..=this per segment, in milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Bandwidth cap per direction, in bytes per second; 0 for none.
    #[arg(long, default_value_t = 0)]
    bandwidth_bytes_per_sec: u64,
    /// Probability per 1448-byte segment of a stall (emulated loss).
    #[arg(long, default_value_t = 0.0)]
    stall_probability: f64,
    /// Shortest stall, in milliseconds.
    #[arg(long, default_value_t = Faults::default().stall_ms_min)]
    stall_ms_min: u64,
    /// Longest stall, in milliseconds.
    #[arg(long, default_value_t = Faults::default().stall_ms_max)]
    stall_ms_max: u64,
    /// Probability per connection that it is cut.
    #[arg(long, default_value_t = 0.0)]
    cut_probability: f64,
    /// A planned cut comes after 0..=this many bytes (both directions); 0 disables.
    #[arg(long, default_value_t = Faults::default().cut_after_bytes_max)]
    cut_after_bytes_max: u64,
    /// A planned cut comes 0..=this many milliseconds after accept; 0 disables.
    #[arg(long, default_value_t = Faults::default().cut_after_ms_max)]
    cut_after_ms_max: u64,
    /// Probability per 1448-byte segment that one bit of it is flipped.
    #[arg(long, default_value_t = 0.0)]
    corrupt_probability: f64,
}

impl Cli {
    fn config(&self, seed: u64) -> Config {
        Config {
            listen: self.listen,
            target: self.target,
            control: self.control,
            seed,
            faults: Faults {
                latency_ms: self.latency_ms,
                jitter_ms: self.jitter_ms,
                bandwidth_bytes_per_sec: self.bandwidth_bytes_per_sec,
                stall_probability: self.stall_probability,
                stall_ms_min: self.stall_ms_min,
                stall_ms_max: self.stall_ms_max,
                cut_probability: self.cut_probability,
                cut_after_bytes_max: self.cut_after_bytes_max,
                cut_after_ms_max: self.cut_after_ms_max,
                corrupt_probability: self.corrupt_probability,
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valley-faultproxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let seed = cli.seed.unwrap_or_else(rand::random);
    let config = cli.config(seed);
    // Refuse bad addresses and faults before anything starts.
    config.validate()?;
    println!("seed {seed}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let proxy = FaultProxy::start(config).await?;
        match proxy.control_addr() {
            Some(control) => println!("proxying {} -> {} control {control}", proxy.local_addr(), cli.target),
            None => println!("proxying {} -> {}", proxy.local_addr(), cli.target),
        }
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        tracing::info!(stats = ?proxy.stats(), "stopping");
        Ok(())
    })
}
