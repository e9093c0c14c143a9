//! `valley serve`: opens the data directory, recovers, and serves the S3 and admin ports
//! until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tracing::{info, warn};
use valley_s3::ValleyS3;
use valley_store::{Catalog, FsBlobs, RedbMeta};

use crate::cli::ServeArgs;
use crate::front::{AdminFront, S3Front, VirtualHosts};
use crate::listener::{Limits, Listener};
use crate::metrics::Metrics;

/// The TLS material of a hub, checked at start.
struct TlsFiles {
    server: valley_tls::ServerTls,
    /// For the admin port: also verifies the certificates clients (peers) present.
    admin: valley_tls::ServerTls,
    peer: Option<valley_tls::PeerTls>,
}

/// Loads `--tls-*`; checks the network CA against the topology's pin.
fn load_tls(args: &ServeArgs, pin: Option<&valley_policy::TlsPin>) -> anyhow::Result<Option<TlsFiles>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        if pin.is_some() {
            anyhow::bail!("the topology pins a network CA ([tls]): this hub needs --tls-cert, --tls-key and --tls-ca");
        }
        return Ok(None);
    };
    let server = valley_tls::ServerTls::load(cert, key, None)?;
    let (admin, peer) = match (&args.tls_ca, pin) {
        (Some(ca), Some(pin)) => {
            let fingerprint = valley_tls::pem_fingerprint(ca)?;
            if fingerprint != pin.ca_sha256 {
                anyhow::bail!(
                    "--tls-ca {} has SHA-256 {fingerprint}, but the topology pins {}",
                    ca.display(),
                    pin.ca_sha256
                );
            }
            (
                valley_tls::ServerTls::load(cert, key, Some(ca))?,
                Some(valley_tls::PeerTls::load(ca, cert, key)?),
            )
        }
        (None, Some(_)) => anyhow::bail!("the topology pins a network CA ([tls]): give it with --tls-ca"),
        (Some(ca), None) => (valley_tls::ServerTls::load(cert, key, Some(ca))?, None),
        (None, None) => (server.clone(), None),
    };
    Ok(Some(TlsFiles { server, admin, peer }))
}

/// Plain HTTP off loopback needs --insecure-http.
fn check_plain_http(args: &ServeArgs, tls: bool) -> anyhow::Result<()> {
    if tls || args.insecure_http {
        return Ok(());
    }
    for (flag, addr) in [("--listen", args.listen), ("--admin-listen", args.admin_listen)] {
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "{flag} {addr} is not on loopback: serve it with TLS (--tls-cert, --tls-key), or pass --insecure-http to serve plain HTTP anyway"
            );
        }
    }
    Ok(())
}

/// s3s logs every refused client request at ERROR; those are the client's errors, not the
/// hub's, so they stay out of the default log (VALLEY_LOG=info,s3s=debug brings them back).
const DEFAULT_LOG_FILTER: &str = "info,s3s::ops=off,s3s::service=off";
/// Connections one address may hold open on a TLS admin port without a hub's certificate
/// (operators' CLIs, strangers) — handshakes in progress included.
const ADMIN_STRANGERS_PER_CLIENT_MAX: usize = 64;
/// Longest wait for in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let probe = args.data.join(".write-probe");
    std::fs::write(&probe, b"").with_context(|| format!("data directory {} is not writable", args.data.display()))?;
    let _ = std::fs::remove_file(&probe);
    let credentials = crate::credentials::load_or_create(&args.data)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("valley")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, credentials))
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VALLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs, credentials: crate::credentials::Credentials) -> anyhow::Result<()> {
    let blobs =
        FsBlobs::open(&args.data).with_context(|| format!("cannot open blob store in {}", args.data.display()))?;
    let meta_path = args.data.join("meta.redb");
    let meta = RedbMeta::open(&meta_path).with_context(|| {
        format!(
            "cannot open metadata store {} (is another hub using this directory?)",
            meta_path.display()
        )
    })?;
    let mut catalog = Catalog::new(Arc::new(meta), Arc::new(blobs));
    let mut pin = None;
    let network = match (&args.hub, &args.topology) {
        (Some(id), Some(path)) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read topology {}", path.display()))?;
            let mut topology = valley_policy::Topology::parse(&text)
                .map_err(|e| anyhow::anyhow!("topology {}: {e}", path.display()))?;
            if !args.rule_packs.is_empty() {
                topology = topology.with_rules(load_rule_packs(&args.rule_packs)?);
            }
            let topology = Arc::new(topology);
            pin = topology.tls().cloned();
            let secret = std::env::var("VALLEY_NETWORK_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .context("a hub in a network needs VALLEY_NETWORK_SECRET, the secret its hubs share")?;
            let wake = Arc::new(tokio::sync::Notify::new());
            catalog =
                catalog
                    .with_origin(id)
                    .with_hook(valley_replicate::outbox_hook(id, topology.clone(), wake.clone()));
            Some((id.clone(), topology, secret, wake))
        }
        _ => None,
    };
    let tls = load_tls(&args, pin.as_ref())?;
    check_plain_http(&args, tls.is_some())?;
    let metrics = Arc::new(Metrics::new());
    let removed = catalog
        .collect_orphans()
        .await
        .context("recovery: collecting orphan blobs failed")?;
    if removed > 0 {
        info!(removed, "removed blobs left unreferenced by an interrupted write");
    }
    metrics.orphan_blobs_removed.inc_by(removed as u64);
    if catalog
        .prepare_usage()
        .await
        .context("recovery: counting bucket usage failed")?
    {
        info!("counted every bucket's usage once (a store from before the usage counters)");
    }

    let seal_secret = match &network {
        Some((_, _, secret, _)) => secret.as_bytes().to_vec(),
        None => crate::credentials::local_seal_key(&args.data)?,
    };
    let directory = Arc::new(
        valley_tenants::Directory::open(
            catalog.meta().clone(),
            catalog.clock().clone(),
            catalog.origin(),
            valley_tenants::Sealer::from_secret(&seal_secret),
            &credentials.access_key,
            &credentials.secret_key,
        )
        .map_err(|e| anyhow::anyhow!("cannot read the tenant directory: {e}"))?,
    );
    let hub = match network {
        Some((id, topology, secret, wake)) => {
            let hub = valley_replicate::Hub::open(
                &id,
                topology.clone(),
                catalog.clone(),
                secret.into_bytes(),
                tls.as_ref().and_then(|t| t.peer.as_ref()),
                wake,
                &args.data,
            )
            .map_err(|e| anyhow::anyhow!("cannot join the network as hub {id:?}: {e}"))?;
            let hub = Arc::new(hub);
            hub.attach_directory(directory.clone());
            hub.prepare_outbox()
                .await
                .map_err(|e| anyhow::anyhow!("recovery: indexing the replication backlog failed: {e}"))?;
            // On a network with TLS, audit heads are signed with the certificate key and sent
            // to every peer, which records them (so no hub can rewrite its chain unseen).
            if let (Some(_), Some(cert), Some(key), Some(ca)) = (
                tls.as_ref().and_then(|t| t.peer.as_ref()),
                &args.tls_cert,
                &args.tls_key,
                &args.tls_ca,
            ) {
                let check = valley_tls::HubSignatureCheck::load(ca)?;
                hub.auditor
                    .enable_signed_heads(valley_replicate::heads::HeadSigning::new(
                        valley_tls::HubSigner::new(cert, key),
                        check,
                    ));
                valley_replicate::heads::start(&hub, Duration::from_secs(args.audit_head_interval));
            }
            valley_replicate::link::start(&hub);
            valley_replicate::repair::start(
                &hub,
                valley_replicate::repair::RepairConfig {
                    interval: std::time::Duration::from_secs(args.repair_interval),
                    lost_after: (args.declare_lost_after > 0)
                        .then(|| std::time::Duration::from_secs(args.declare_lost_after)),
                },
            );
            hub.note_rule_packs()
                .await
                .context("comparing the rule packs with those loaded before")?;
            info!(
                hub = %id,
                topology = %topology.hash(),
                rules = %topology.rules().versions().join(", "),
                peers = topology.hubs().count() - 1,
                "joined the network"
            );
            Some(hub)
        }
        None => None,
    };
    spawn_upload_expiry(catalog.clone(), Duration::from_secs(args.multipart_expiry_secs));
    let usage_catalog = catalog.clone();
    let encryption = crate::kms::open(&args).context("server-side encryption")?;
    if let Some(encryption) = &encryption {
        // A key destroyed here or at another hub: forget it and destroy this hub's copy, off
        // the async threads (a key service call blocks). Reads under it are refused from the
        // moment the directory holds the record, whatever this takes.
        let encryption = encryption.clone();
        directory.on_key_destroyed(Arc::new(move |record: &valley_tenants::KmsKeyRecord| {
            let encryption = encryption.clone();
            let key_id = record.key_id.clone();
            std::thread::spawn(move || encryption.forget_destroyed(&key_id));
        }));
    }
    let s3 = {
        let mut api = ValleyS3::new(catalog.clone(), args.region.clone(), directory.clone());
        if let Some(encryption) = &encryption {
            api = api.with_encryption(encryption.clone());
        }
        if let Some(hub) = &hub {
            api = api.with_gate(Arc::new(HubGate(hub.clone(), metrics.clone())));
        }
        let mut builder = S3ServiceBuilder::new(api);
        builder.set_auth(valley_s3::TenantAuth::new(directory.clone()));
        let billing = metrics.clone();
        let mut access = valley_s3::TenantAccess::new(directory.clone(), catalog.clone())
            .with_request_counter(Arc::new(move |tenant: &str| billing.count_tenant_request(tenant)));
        if let Some(hub) = &hub {
            access = access.with_gate(Arc::new(HubGate(hub.clone(), metrics.clone())));
        }
        builder.set_access(access);
        builder.set_host(VirtualHosts {
            domains: args.domains.clone(),
        });
        let mut config = S3Config::default();
        config.xml_max_body_size = valley_types::limits::XML_BODY_BYTES_MAX;
        config.post_object_max_file_size = valley_types::limits::FORM_FILE_BYTES_MAX;
        config.form_max_fields_size = valley_types::limits::FORM_FIELDS_BYTES_MAX;
        config.form_max_field_size = valley_types::limits::FORM_FIELDS_BYTES_MAX;
        config.form_max_parts = valley_types::limits::FORM_PARTS_MAX;
        builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
        builder.build()
    };
    let open_files = crate::listener::raise_open_file_limit();
    // Both ports at their caps, plus files for the stores, must fit under the open-file limit.
    let fitting = usize::try_from(open_files.saturating_sub(256) / 2)
        .unwrap_or(usize::MAX)
        .max(16);
    let connections_max = usize::try_from(args.max_connections).unwrap_or(usize::MAX).min(fitting);
    if connections_max < usize::try_from(args.max_connections).unwrap_or(usize::MAX) {
        warn!(
            open_files,
            connections_max, "the open-file limit lowers --max-connections"
        );
    }
    let idle = Duration::from_secs(args.idle_timeout);
    let s3_limits = Limits {
        connections_max,
        per_client_max: usize::try_from(args.max_connections_per_client).unwrap_or(usize::MAX),
        first_request_timeout: (idle / 10).max(Duration::from_secs(5)),
        idle_timeout: idle,
    };
    // Peers share the admin port and may all sit behind one address (one NAT, one loopback).
    // With TLS, a connection whose certificate proves a hub leaves the per-address count after
    // its handshake, so strangers get a small per-address cap; without TLS hubs cannot be told
    // apart from strangers, and the cap is the listener's.
    let admin_limits = Limits {
        per_client_max: if tls.is_some() {
            ADMIN_STRANGERS_PER_CLIENT_MAX.min(connections_max)
        } else {
            connections_max
        },
        ..s3_limits
    };
    let s3_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))?;
    let s3_listener = Listener::new(
        "s3",
        s3_listener,
        tls.as_ref().map(|t| t.server.clone()),
        s3_limits,
        metrics.clone(),
    );
    let admin_listener = Listener::new(
        "admin",
        admin_listener,
        tls.as_ref().map(|t| t.admin.clone()),
        admin_limits,
        metrics.clone(),
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(s3 = %s3_listener.local_addr()?, admin = %admin_listener.local_addr()?, scheme, data = %args.data.display(), "valley hub serving");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // The hub's own region last: refusals name it as the one expected.
    let mut regions = vec!["us-east-1".to_owned()];
    if args.region != "us-east-1" {
        regions.push(args.region.clone());
    }
    let front = S3Front {
        s3,
        client: None,
        metrics: metrics.clone(),
        regions: regions.into(),
        forms: Arc::new(tokio::sync::Semaphore::new(
            valley_types::limits::FORM_UPLOADS_IN_FLIGHT_MAX,
        )),
        cors: Arc::new(crate::cors_front::Cors {
            directory: directory.clone(),
            domains: args.domains.clone().into(),
        }),
    };
    let admin_api = Arc::new(crate::admin::AdminApi {
        hub: hub.clone(),
        directory,
        catalog: usage_catalog,
        replays: valley_replicate::auth::ReplayGuard::new(),
        encryption,
    });
    let admin = AdminFront {
        metrics,
        admin: admin_api,
        hub,
        peer_hub: None,
        metrics_token: std::env::var("VALLEY_METRICS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            admitted = s3_listener.accept() => {
                let front = front.clone();
                s3_listener.serve(admitted, graceful.watcher(), move |info| S3Front {
                    client: Some(valley_s3::ClientInfo { ip: info.ip, secure: info.secure }),
                    ..front
                });
            }
            admitted = admin_listener.accept() => {
                let admin = admin.clone();
                admin_listener.serve(admitted, graceful.watcher(), move |info| AdminFront {
                    peer_hub: info.peer_hub,
                    ..admin
                });
            }
            () = &mut shutdown => break,
        }
    }
    info!("shutting down");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("in-flight requests did not finish in time"),
    }
    Ok(())
}

/// Aborts abandoned multipart uploads: every `expiry / 3` (at most hourly), those older than
/// `expiry`.
fn spawn_upload_expiry(catalog: Catalog, expiry: Duration) {
    let every = (expiry / 3).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let cutoff = u64::try_from(now.saturating_sub(expiry).as_nanos()).unwrap_or(u64::MAX);
            match catalog.expire_uploads(cutoff).await {
                Ok(0) => {}
                Ok(n) => info!(
                    aborted = n,
                    older_than_secs = expiry.as_secs(),
                    "abandoned multipart uploads aborted"
                ),
                Err(e) => warn!(error = %e, "expiring abandoned multipart uploads failed"),
            }
            tokio::time::sleep(every).await;
        }
    });
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A version found at `holder`, as the S3 front names it.
fn remote(
    bucket: &str,
    key: &str,
    (holder, version): (String, valley_store::record::ObjectVersion),
) -> valley_s3::RemoteVersion {
    valley_s3::RemoteVersion {
        holder,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version,
    }
}

/// The S3 front's view of the network: residency checks and bucket creation notices.
struct HubGate(Arc<valley_replicate::Hub>, Arc<Metrics>);

fn replicate_copies(copies: &valley_s3::SyncCopies) -> valley_replicate::sync::SyncCopies {
    valley_replicate::sync::SyncCopies {
        wanted: copies.wanted,
        confirmed: copies.confirmed.clone(),
        contacted: copies.contacted.clone(),
        fallback: if copies.degrade {
            valley_policy::AckFallback::Degrade
        } else {
            valley_policy::AckFallback::Fail
        },
        timeout: copies.timeout,
        elapsed: Duration::ZERO,
    }
}

#[async_trait::async_trait]
impl valley_s3::NetworkGate for HubGate {
    async fn check_write(&self, bucket: &str) -> Result<(), String> {
        self.0.check_write(bucket).await
    }

    async fn check_copy(&self, source_bucket: &str, key: &str, dest_bucket: &str) -> Result<(), String> {
        self.0.check_copy(source_bucket, key, dest_bucket).await
    }

    fn access_refused(&self, bucket: &str, detail: String) {
        self.0.auditor.access_refused(bucket, &detail);
    }

    fn bucket_created_writes(&self, bucket: &str) -> Result<valley_s3::NetworkWrites, String> {
        let (write, written) = self.0.bucket_created_writes(bucket).map_err(|e| e.to_string())?;
        let hub = self.0.clone();
        let bucket = bucket.to_owned();
        Ok(valley_s3::NetworkWrites {
            write,
            committed: Box::new(move || Box::pin(async move { hub.bucket_recorded(&bucket, &written).await })),
        })
    }

    fn versioning_writes(
        &self,
        bucket: &str,
        versioning: valley_store::record::Versioning,
    ) -> valley_s3::NetworkWrites {
        let hub = self.0.clone();
        valley_s3::NetworkWrites {
            write: Box::new(self.0.versioning_writes(bucket, versioning)),
            committed: Box::new(move || {
                Box::pin(async move {
                    hub.links.wake_senders();
                })
            }),
        }
    }

    async fn find_elsewhere(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<valley_s3::RemoteVersion>, String> {
        Ok(self
            .0
            .find_elsewhere(bucket, key, version_id)
            .await?
            .map(|found| remote(bucket, key, found)))
    }

    async fn newer_elsewhere(
        &self,
        bucket: &str,
        key: &str,
        local: &valley_store::record::ObjectVersion,
    ) -> Result<Option<valley_s3::RemoteVersion>, String> {
        Ok(self
            .0
            .newer_elsewhere(bucket, key, local)
            .await?
            .map(|found| remote(bucket, key, found)))
    }

    async fn ack_copies(&self, bucket: &str) -> u32 {
        self.0.cached_policy(bucket).await.map_or(1, |p| p.ack_copies)
    }

    async fn copy_before_commit(
        &self,
        bucket: &str,
        key: &str,
        version: &valley_store::record::ObjectVersion,
    ) -> Result<Option<valley_s3::SyncCopies>, String> {
        let copies = valley_replicate::sync::copy_before_commit(&self.0, bucket, key, version).await;
        if copies.is_err() {
            self.1
                .observe_sync_write(valley_replicate::sync::SyncOutcome::Failed, None);
        }
        Ok(copies?.map(|c| valley_s3::SyncCopies {
            wanted: c.wanted,
            confirmed: c.confirmed,
            contacted: c.contacted,
            degrade: c.fallback == valley_policy::AckFallback::Degrade,
            timeout: c.timeout,
        }))
    }

    async fn settle_copies(
        &self,
        bucket: &str,
        key: &str,
        version: &valley_store::record::ObjectVersion,
        copies: &valley_s3::SyncCopies,
        committed: bool,
        started: std::time::Instant,
    ) -> Result<(), String> {
        let copies = replicate_copies(copies);
        let result = valley_replicate::sync::settle(&self.0, bucket, key, version, &copies, committed).await;
        let outcome = match &result {
            Ok(outcome) => *outcome,
            Err(_) => valley_replicate::sync::SyncOutcome::Failed,
        };
        self.1.observe_sync_write(outcome, Some(started.elapsed()));
        result.map(|_| ())
    }

    async fn read_elsewhere(
        &self,
        remote: &valley_s3::RemoteVersion,
        start: u64,
        len: u64,
    ) -> Result<valley_store::ByteStream, String> {
        self.0
            .read_elsewhere(&remote.holder, &remote.bucket, &remote.key, &remote.version, start, len)
            .await
    }
}

/// The rule packs in `files`, each read and checked (a pack that does not parse stops the hub,
/// naming the file and the problem).
fn load_rule_packs(files: &[std::path::PathBuf]) -> anyhow::Result<valley_policy::RuleBook> {
    let mut texts = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read rule pack {}", path.display()))?;
        texts.push((path.display().to_string(), text));
    }
    Ok(valley_policy::RuleBook::parse_files(&texts)?)
}
