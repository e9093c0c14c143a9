//! The command line: raw arguments are parsed once, here, into validated values.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Valley: a sovereign, geo-distributed data hub with an S3 API.
#[derive(Debug, Parser)]
#[command(name = "valley", version, about, long_about = None)]
pub struct Cli {
    /// Admin API of the hub that admin commands talk to; they authenticate with
    /// VALLEY_ACCESS_KEY and VALLEY_SECRET_KEY.
    #[arg(long, global = true, env = "VALLEY_ADMIN", default_value = "http://127.0.0.1:9001")]
    pub admin: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a hub: the S3 API on --listen; metrics, admin and peer APIs on --admin-listen.
    ///
    /// Root credentials come from VALLEY_ACCESS_KEY and VALLEY_SECRET_KEY; when those are
    /// unset, the hub uses the ones stored in DIR/credentials, generating and printing them
    /// once on first start. With --hub and --topology the hub joins a network; hubs
    /// authenticate each other with the shared secret in VALLEY_NETWORK_SECRET.
    Serve(Box<ServeArgs>),
    /// Bucket placement policies.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Grants: recorded legal bases for cross-border flows.
    Grant {
        #[command(subcommand)]
        command: GrantCommand,
    },
    /// The rule packs: which legal bases the law accepts for which cross-border flows.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Declare a hub lost for good (its copies are re-created elsewhere) or back in service.
    Hub {
        #[command(subcommand)]
        command: HubCommand,
    },
    /// Every hub (up/down), every link (backlog, lag) and where each bucket's copies are.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The hub's tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Where a bucket's data is, why it may be there, and the audit records that put it there.
    Residency {
        #[command(subcommand)]
        command: ResidencyCommand,
    },
    /// Tenants: the parties sharing the network, each with its own buckets, users and keys.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// A tenant's users (each made with a first access key, printed once).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Access keys of tenants' users.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Key-encryption keys in the key service (SSE-KMS key ids; SSE-S3's default key is made
    /// on first use): the local keystore, worked on directly with the master key, or the PKCS#11
    /// token, with its PIN; while the hub runs or not. Whoever holds the master key (or the
    /// PIN) manages the keys.
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
    },
    /// Certificates for a network's mutual TLS.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Start the whole example network on loopback, write sample data and show where every
    /// copy went.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding this hub's metadata and blobs (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./valley-data")]
    pub data: PathBuf,

    /// Address of the S3 API.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Address of the admin API (Prometheus /metrics, health, admin and peer calls).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    pub admin_listen: SocketAddr,

    /// Region name this hub reports; clients may sign for it or for us-east-1.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// Domain for virtual-host-style addressing (BUCKET.DOMAIN); repeatable.
    #[arg(long = "domain", value_name = "DOMAIN", default_values_t = vec!["localhost".to_owned()])]
    pub domains: Vec<String>,

    /// This hub's id in the topology (requires --topology).
    #[arg(long, requires = "topology")]
    pub hub: Option<String>,

    /// The network's topology file (requires --hub).
    #[arg(long, value_name = "FILE", requires = "hub")]
    pub topology: Option<PathBuf>,

    /// A rule pack (TOML) to judge cross-border grants and transfers by, in place of the packs
    /// shipped with this build; repeat for several. Every hub of the network must load the
    /// same packs (peers compare their hash).
    #[arg(long = "rule-pack", value_name = "FILE", requires = "topology")]
    pub rule_packs: Vec<PathBuf>,

    /// Seconds between anti-entropy rounds (repair of missing copies, tiering).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub repair_interval: u64,

    /// Declare a peer lost for good after this many seconds without contact, so its copies
    /// are re-created elsewhere (0: only `valley hub lost` declares a hub lost).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub declare_lost_after: u64,

    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,

    /// TLS certificate (PEM) for both ports; reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for --tls-cert; reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The network CA (PEM): verifies the certificates peers present and is presented to them.
    /// Its SHA-256 must be the one the topology's [tls] ca_sha256 pins.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Allow plain HTTP on a listener that is not on loopback (credentials and data would
    /// cross the network readable by anyone on the path).
    #[arg(long)]
    pub insecure_http: bool,

    /// Most connections open at once on each port.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Most connections open at once from one client address on the S3 port (the admin port,
    /// which peers share, allows as many as --max-connections).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_client: u64,

    /// Seconds a connection may stay silent: from accept until its first request, a tenth of
    /// this (at least 5 s); between requests, all of it.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..))]
    pub idle_timeout: u64,

    /// Seconds after which a multipart upload still neither completed nor aborted is aborted
    /// and its parts freed (default: 7 days).
    #[arg(long, value_name = "SECS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(1..))]
    pub multipart_expiry_secs: u64,

    /// Seconds between two signed heads of this hub's audit chain sent to every peer (on a
    /// network with TLS), which record them.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_head_interval: u64,

    /// The key service for server-side encryption (SSE-S3, SSE-KMS). Without one, encrypted
    /// writes are refused.
    #[command(flatten)]
    pub kms: KmsArgs,
}

/// Where the tenants' key-encryption keys are: the local keystore, sealed under a master key,
/// or a PKCS#11 token (an HSM, a cloud HSM, SoftHSM2). One or the other, never both.
#[derive(Debug, Args)]
pub struct KmsArgs {
    /// The local keystore's master key: a file of 64 hex digits, kept outside the data dir
    /// (whoever holds the data dir and this key reads every encrypted object); or
    /// VALLEY_KMS_MASTER_KEY holding the key itself.
    #[arg(long, value_name = "FILE", env = "VALLEY_KMS_MASTER_KEY_FILE")]
    pub kms_master_key_file: Option<PathBuf>,

    /// The local keystore: the tenants' key-encryption keys, each sealed under the master key
    /// (default: DATA/kms/keystore.json).
    #[arg(long, value_name = "FILE")]
    pub kms_keystore: Option<PathBuf>,

    /// A PKCS#11 module (the HSM vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so): the
    /// keys are then AES keys generated in its token, which never leave it, instead of the local
    /// keystore (so no master key).
    #[arg(long, value_name = "PATH", env = "VALLEY_KMS_PKCS11_MODULE")]
    pub kms_pkcs11_module: Option<PathBuf>,

    /// The label of the PKCS#11 token holding the keys.
    #[arg(long, value_name = "LABEL")]
    pub kms_pkcs11_token: Option<String>,

    /// A file holding the token's user PIN, kept outside the data dir; or VALLEY_KMS_PKCS11_PIN
    /// holding the PIN itself.
    #[arg(long, value_name = "FILE")]
    pub kms_pkcs11_pin_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Declare a hub lost for good: placement passes it over and the hubs that hold its
    /// copies re-create them on the next hubs the policies allow.
    Lost {
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "declared by the operator")]
        reason: String,
    },
    /// Declare a lost hub back in service (it then receives its copies again).
    Restored { id: String },
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Placement policy of a bucket.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Remove, at the hub --admin names, the copies of a bucket its policy no longer allows
    /// there and that could not be handed to the hubs it does allow (audited). Hubs keep such
    /// copies until then: no policy change removes the last copies of anything on its own.
    PurgeStranded { bucket: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Set a bucket's policy from a TOML file or from flags.
    Set(Box<PolicySetArgs>),
    /// Print a bucket's policy as TOML.
    Show { bucket: String },
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    pub bucket: String,
    /// A TOML policy file (keys: jurisdictions, hubs, copies, distinct_failure_domains,
    /// home_hub, classifications, ack_copies, ack_timeout_seconds, ack_fallback,
    /// max_lag_seconds, individuals_per_object, [tiering] after_days and role).
    #[arg(long, conflicts_with_all = ["jurisdictions", "hubs", "copies", "classification"])]
    pub file: Option<PathBuf>,
    /// Allowed jurisdictions, comma-separated (e.g. CN,HK).
    #[arg(long, value_delimiter = ',')]
    pub jurisdictions: Vec<String>,
    /// Allowed hubs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub hubs: Vec<String>,
    /// Number of copies.
    #[arg(long)]
    pub copies: Option<u32>,
    /// Put copies in distinct failure domains.
    #[arg(long)]
    pub distinct_failure_domains: bool,
    /// The hub that holds the first copy.
    #[arg(long)]
    pub home_hub: Option<String>,
    /// Classification tags, comma-separated (personal-info, important-data, …).
    #[arg(long, value_delimiter = ',')]
    pub classification: Vec<String>,
    /// Tier after this many days…
    #[arg(long, requires = "tier_role")]
    pub tier_after_days: Option<u32>,
    /// …into hubs of this role (east or west).
    #[arg(long, requires = "tier_after_days")]
    pub tier_role: Option<String>,
    /// Acknowledge a write only once this many copies (the local one included) are durable
    /// in distinct failure domains.
    #[arg(long)]
    pub ack_copies: Option<u32>,
    /// Seconds a write waits for those copies (default 10).
    #[arg(long)]
    pub ack_timeout_seconds: Option<u32>,
    /// When they do not come in time: fail (the default) or degrade (acknowledge with fewer
    /// copies, say so in the x-valley-replication header and the audit log).
    #[arg(long)]
    pub ack_fallback: Option<String>,
    /// Slow and then refuse writes (SlowDown) once the bucket's oldest unreplicated write is
    /// older than this many seconds.
    #[arg(long)]
    pub max_lag_seconds: Option<u32>,
    /// How many individuals' data each object carries when it does not declare it in
    /// `x-amz-meta-valley-individuals`: what the rule packs' volume thresholds count.
    #[arg(long)]
    pub individuals_per_object: Option<u64>,
    /// Change nothing: print what the change would copy where, remove where, which grants it
    /// needs, and whether it would strand data.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ResidencyCommand {
    /// For every version of BUCKET network-wide: the hubs holding a copy, the jurisdiction and
    /// failure domain of each, the rule (and grant) that allows it there, and the audit records
    /// of the transfers that put it there; a summary on top.
    Report {
        bucket: String,
        /// Print the report as JSON (what `valley residency verify` checks).
        #[arg(long)]
        json: bool,
        /// The copies whose arrival was recorded by this time (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z, or Unix seconds).
        #[arg(long)]
        at: Option<String>,
    },
    /// Re-check a JSON report against the hubs and their audit chains; exits non-zero naming
    /// the first claim that cannot be confirmed.
    Verify { report: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// What the rule packs the hub judges by require, for the flows asked (all when none
    /// given); with --pack, what the pack files given require (no hub asked).
    Show {
        /// A rule pack file to explain instead of the hub's packs; repeat for several.
        #[arg(long, value_name = "FILE")]
        pack: Vec<std::path::PathBuf>,
        /// The jurisdiction data leaves.
        #[arg(long)]
        from: Option<String>,
        /// The jurisdiction it goes to.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        classification: Option<String>,
    },
    /// Every recorded grant (the caller's tenant's; the operator: all), with whether the hub's
    /// rule packs accept it and why.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Individuals each tenant (the caller's; the operator: all) has sent out of a
    /// jurisdiction this calendar year, by classification: what the packs' volume thresholds
    /// count. Asked of the jurisdiction's exports accountant (its first hub by id).
    Volumes {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Record a grant.
    Add(GrantAddArgs),
    /// List grants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct GrantAddArgs {
    /// Source jurisdiction.
    #[arg(long)]
    pub from: String,
    /// Destination jurisdiction.
    #[arg(long)]
    pub to: String,
    /// Classifications covered, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub classification: Vec<String>,
    /// Legal basis: security-assessment, standard-contract, certification, adequacy, sccs, bcr,
    /// exempt-contract-performance, exempt-hr, exempt-emergency, exempt-volume.
    #[arg(long)]
    pub basis: String,
    /// Reference (e.g. the assessment or contract number).
    #[arg(long)]
    pub reference: String,
    /// A companion record the grant rests on, KIND=REFERENCE (e.g. piia=PIIA-2026-7: the
    /// personal-information protection impact assessment); repeat for several.
    #[arg(long = "companion", value_name = "KIND=REFERENCE")]
    pub companions: Vec<String>,
    /// Last valid day, YYYY-MM-DD.
    #[arg(long)]
    pub expires: String,
    #[arg(long)]
    pub volume_cap_bytes: Option<u64>,
    #[arg(long)]
    pub volume_cap_individuals: Option<u64>,
    /// Grant id (generated when omitted).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hub's audit chain; exits non-zero naming the first bad record.
    Verify {
        /// Verify a log file directly instead of asking the hub.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Show audit records.
    Show {
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long)]
        hub: Option<String>,
        #[arg(long)]
        grant: Option<String>,
        #[arg(long)]
        json: bool,
        /// Read a log file directly instead of asking the hub.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct KeystoreArgs {
    /// The key service, named as to `valley serve`.
    #[command(flatten)]
    pub kms: KmsArgs,
    /// The hub's data directory, for the default keystore.
    #[arg(long, value_name = "DIR", default_value = "./valley-data")]
    pub data: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Make key NAME for TENANT (refused if it exists): clients name it as SSEKMSKeyId.
    Create {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// The tenant whose key it is.
        #[arg(long, default_value = "default")]
        tenant: String,
        name: String,
    },
    /// The keys in the key service, one `TENANT/NAME` a line.
    List {
        #[command(flatten)]
        keystore: KeystoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a network CA and a certificate for every hub of a topology (for operators who
    /// have no CA of their own): DIR/ca.pem, DIR/ca-key.pem and DIR/<hub>/{cert,key}.pem.
    /// Each hub's certificate names it as <id>.hub.valley, plus the hosts of its endpoints,
    /// localhost and 127.0.0.1. Prints the [tls] table to add to the topology.
    Init {
        /// The network's topology file.
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// Where to write the certificates (must not hold any yet).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the hubs keep their data (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the network running after the walk-through until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Most bytes the tenant's objects may hold (every hub's copies counted once).
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Most objects the tenant may hold.
    #[arg(long)]
    pub objects: Option<u64>,
    /// Most buckets the tenant may own.
    #[arg(long)]
    pub buckets: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Add a tenant (the operator only).
    Add {
        id: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// The tenants the caller may see.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A tenant's users, keys (never secrets), buckets and quota.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant that owns no bucket: its users and keys stop working everywhere.
    Remove { id: String },
    /// A tenant's quota.
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// The tenant's Public Access Block, applied to all its buckets on top of their own.
    PublicAccessBlock {
        #[command(subcommand)]
        command: PublicAccessBlockCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PublicAccessBlockCommand {
    /// Set (replace) it: each switch given is on, each left out off.
    Set {
        id: String,
        /// Refuse puts of public ACLs.
        #[arg(long)]
        block_public_acls: bool,
        /// Grant nothing through public ACLs.
        #[arg(long)]
        ignore_public_acls: bool,
        /// Refuse puts of public bucket policies.
        #[arg(long)]
        block_public_policy: bool,
        /// A public bucket policy grants only the tenant's own principals.
        #[arg(long)]
        restrict_public_buckets: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set (replace) a tenant's quota; a limit left out is lifted.
    Set {
        id: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user to a tenant and print its first key pair (the secret is shown only now).
    Add {
        tenant: String,
        name: String,
        /// Every right within the tenant, as an AWS account's root user: its buckets, users, keys.
        #[arg(long)]
        admin_of_tenant: bool,
        /// Print exactly {"tenant","user","arn","access_key","secret_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user: its keys stop working everywhere.
    Remove { tenant: String, name: String },
    /// A user's identity policy (IAM JSON): what it may do, with bucket policies.
    Policy {
        #[command(subcommand)]
        command: UserPolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserPolicyCommand {
    /// Set (replace) a user's identity policy from a JSON file.
    Set {
        tenant: String,
        name: String,
        #[arg(long, value_name = "POLICY.json")]
        file: PathBuf,
    },
    /// Print a user's identity policy.
    Show { tenant: String, name: String },
    /// Remove a user's identity policy (it is then granted only what bucket policies allow).
    Delete { tenant: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Another key pair for a user (the secret is shown only now).
    Add {
        tenant: String,
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Keys (never their secrets), of one tenant or, for the operator, of all.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key for good, at every hub as soon as the change reaches it.
    Revoke { access_key: String },
    /// Crypto-shred: destroy an encryption key in the key service, at every hub. Every object
    /// sealed under it (SSE-S3 or SSE-KMS) becomes unreadable for good, wherever its bytes
    /// are. Give a key NAME of --tenant (`default`: SSE-S3's key; else an SSE-KMS key id), or
    /// --bucket for one bucket's own key. Only the tenant's admin may.
    Destroy {
        /// The tenant whose key it is (default: the caller's own).
        #[arg(long)]
        tenant: Option<String>,
        /// A bucket: destroy its own key (all of its encrypted objects).
        #[arg(long, conflicts_with = "name")]
        bucket: Option<String>,
        /// The key's name, as clients give it (`testkey-1`) or `default`.
        #[arg(required_unless_present = "bucket")]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}
