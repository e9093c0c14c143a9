//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Valley: a sovereign, geo-distributed data hub with an S3 API.
#[derive(Debug, Parser)]
#[command(name = "valley", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a hub: the S3 API on --listen, metrics and admin on --admin-listen.
    ///
    /// Root credentials come from VALLEY_ACCESS_KEY and VALLEY_SECRET_KEY; when those are
    /// unset, the hub uses the ones stored in DIR/credentials, generating and printing them
    /// once on first start.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding this hub's metadata and blobs (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./valley-data")]
    pub data: PathBuf,

    /// Address of the S3 API.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Address of the admin API (Prometheus /metrics, health).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    pub admin_listen: SocketAddr,

    /// Region name this hub reports; clients may sign for it or for us-east-1.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// Domain for virtual-host-style addressing (BUCKET.DOMAIN); repeatable.
    #[arg(long = "domain", value_name = "DOMAIN", default_values_t = vec!["localhost".to_owned()])]
    pub domains: Vec<String>,

    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
}
