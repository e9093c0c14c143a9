//! `valley demo`: the example network on loopback, walked through in one command.
//!
//! Starts every hub of `examples/network.toml` as its own process (own ports, own data
//! directory), creates buckets with contrasting policies, writes sample data, shows a residency
//! refusal, waits for replication, and prints where every copy went.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use valley_policy::Topology;
use valley_tls::PeerConnector;

use crate::admin::StatusReport;
use crate::cli::DemoArgs;
use crate::commands::{AdminClient, print_status};

const NETWORK: &str = include_str!("../../../examples/network.toml");
const SIGNED_URL_LIFETIME: Duration = Duration::from_secs(300);

/// Stops every hub when the demo ends, however it ends.
struct Hubs(Vec<(String, Child)>);

impl Drop for Hubs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct S3 {
    http: Client<PeerConnector, Full<Bytes>>,
    creds: rusty_s3::Credentials,
}

impl S3 {
    fn bucket(endpoint: &str, name: &str) -> anyhow::Result<rusty_s3::Bucket> {
        let url: url::Url = endpoint.parse().with_context(|| format!("endpoint {endpoint}"))?;
        rusty_s3::Bucket::new(url, rusty_s3::UrlStyle::Path, name.to_owned(), "us-east-1".to_owned())
            .map_err(|e| anyhow::anyhow!("bucket {name}: {e}"))
    }

    async fn send(&self, method: http::Method, url: url::Url, body: Bytes) -> anyhow::Result<(u16, String)> {
        let request = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(Full::new(body))?;
        let response = self.http.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn create_bucket(&self, endpoint: &str, name: &str) -> anyhow::Result<()> {
        use rusty_s3::S3Action;
        let bucket = Self::bucket(endpoint, name)?;
        let url = rusty_s3::actions::CreateBucket::new(&bucket, &self.creds).sign(SIGNED_URL_LIFETIME);
        let (status, body) = self.send(http::Method::PUT, url, Bytes::new()).await?;
        if status != 200 {
            bail!("creating bucket {name} at {endpoint}: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// GETs an object; returns the HTTP status and the body (or the S3 error message).
    async fn get(&self, endpoint: &str, bucket: &str, key: &str) -> anyhow::Result<(u16, String)> {
        use rusty_s3::S3Action;
        let b = Self::bucket(endpoint, bucket)?;
        let url = rusty_s3::actions::GetObject::new(&b, Some(&self.creds), key).sign(SIGNED_URL_LIFETIME);
        let (status, body) = self.send(http::Method::GET, url, Bytes::new()).await?;
        Ok((status, if status == 200 { body } else { s3_message(&body) }))
    }

    /// PUTs an object; returns the HTTP status and S3 error message, if any.
    async fn put(&self, endpoint: &str, bucket: &str, key: &str, data: &[u8]) -> anyhow::Result<(u16, String)> {
        use rusty_s3::S3Action;
        let b = Self::bucket(endpoint, bucket)?;
        let url = rusty_s3::actions::PutObject::new(&b, Some(&self.creds), key).sign(SIGNED_URL_LIFETIME);
        let (status, body) = self.send(http::Method::PUT, url, Bytes::copy_from_slice(data)).await?;
        Ok((status, s3_message(&body)))
    }
}

/// The `<Message>` of an S3 error body, unescaped.
fn s3_message(body: &str) -> String {
    body.split("<Message>")
        .nth(1)
        .and_then(|m| m.split("</Message>").next())
        .unwrap_or("")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("valley-demo-{}", hex::encode(rand::random::<[u8; 4]>()))),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let example = Topology::parse(NETWORK).map_err(|e| anyhow::anyhow!("example network: {e}"))?;
    // Every hub gets a certificate from a network CA made for this run, pinned in the topology:
    // hubs talk over mutual TLS, and clients verify the hubs against the CA.
    let specs: Vec<valley_tls::HubCertSpec> = example
        .hubs()
        .map(|h| valley_tls::HubCertSpec {
            id: h.id.clone(),
            extra_names: vec!["127.0.0.1".into(), "localhost".into()],
        })
        .collect();
    let certs = valley_tls::init_network(&specs, &dir.join("certs")).context("making the demo's certificates")?;
    let network = format!(
        "[tls]\nca_sha256 = \"{}\"\n\n{}",
        certs.ca_fingerprint,
        NETWORK.replace("\"http://", "\"https://")
    );
    let topology = Topology::parse(&network).map_err(|e| anyhow::anyhow!("example network with TLS: {e}"))?;
    let topology_path = dir.join("network.toml");
    std::fs::write(&topology_path, &network)?;
    let access = format!("DEMO{}", hex::encode_upper(rand::random::<[u8; 6]>()));
    let secret = hex::encode(rand::random::<[u8; 20]>());
    let network_secret = hex::encode(rand::random::<[u8; 20]>());
    let exe = std::env::current_exe().context("cannot find the valley binary")?;

    println!(
        "Starting {} hubs of the example network in {}",
        topology.hubs().count(),
        dir.display()
    );
    let mut hubs = Hubs(Vec::new());
    for hub in topology.hubs() {
        let listen = host_port(hub.s3_endpoint.as_deref())?;
        let admin = host_port(hub.peer_endpoint.as_deref())?;
        let log = std::fs::File::create(dir.join(format!("{}.log", hub.id)))?;
        let (_, cert, key) = certs
            .hubs
            .iter()
            .find(|(id, _, _)| *id == hub.id)
            .context("a certificate for every hub")?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--tls-ca")
            .arg(&certs.ca_pem)
            .args(["--hub", &hub.id])
            .arg("--topology")
            .arg(&topology_path)
            .arg("--data")
            .arg(dir.join(&hub.id))
            .args(["--listen", &listen, "--admin-listen", &admin])
            .env("VALLEY_ACCESS_KEY", &access)
            .env("VALLEY_SECRET_KEY", &secret)
            .env("VALLEY_NETWORK_SECRET", &network_secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start hub {}", hub.id))?;
        hubs.0.push((hub.id.clone(), child));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(walk_through(
        &topology,
        &dir,
        &certs.ca_pem,
        &access,
        &secret,
        &mut hubs,
        args.keep_running,
    ))
}

fn host_port(endpoint: Option<&str>) -> anyhow::Result<String> {
    let endpoint = endpoint.context("every hub of the example network names its endpoints")?;
    Ok(endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned())
}

fn endpoint<'t>(topology: &'t Topology, hub: &str, peer: bool) -> &'t str {
    topology
        .hub(hub)
        .and_then(|h| {
            if peer {
                h.peer_endpoint.as_deref()
            } else {
                h.s3_endpoint.as_deref()
            }
        })
        .unwrap_or("")
}

/// An HTTPS client that trusts the demo's network CA.
fn https_client(ca: &Path) -> anyhow::Result<Client<PeerConnector, Full<Bytes>>> {
    let config = valley_tls::cli_client_config(Some(ca))?;
    let connector = PeerConnector::new(std::sync::Arc::new(config), valley_tls::NameMode::UrlHost)?;
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn wait_healthy(topology: &Topology, hubs: &mut Hubs, dir: &Path, ca: &Path) -> anyhow::Result<()> {
    let http = https_client(ca)?;
    let started = Instant::now();
    for hub in topology.hubs() {
        let url = format!("{}{}", endpoint(topology, &hub.id, false), crate::front::HEALTH_PATH);
        loop {
            if let Some((_, child)) = hubs.0.iter_mut().find(|(id, _)| *id == hub.id)
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "hub {} exited ({status}); see {}",
                    hub.id,
                    dir.join(format!("{}.log", hub.id)).display()
                );
            }
            let request = http::Request::get(&url).body(Full::new(Bytes::new()))?;
            if let Ok(r) = http.request(request).await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "hub {} did not become healthy; see its log in {}",
                    hub.id,
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The residency report of the bucket that crosses a border, made at one of its hubs and
/// verified at the other against every hub's audit chain (a hub the bucket may not be at is
/// refused its evidence: key names are the bucket's data too).
async fn residency_walk(maker: &AdminClient, checker: &AdminClient) -> anyhow::Result<()> {
    let body = maker
        .call_large(http::Method::GET, "residency-report?bucket=cn-eu-contracts", Vec::new())
        .await?;
    let report: valley_replicate::residency::Report = serde_json::from_slice(&body)?;
    let s = &report.summary;
    let per: Vec<String> = s
        .copies_per_jurisdiction
        .iter()
        .map(|(j, n)| format!("{n} in {j}"))
        .collect();
    let grants: std::collections::BTreeSet<&str> = report
        .versions
        .iter()
        .flat_map(|v| v.copies.iter().filter_map(|c| c.grant.as_ref().map(|g| g.id.as_str())))
        .collect();
    let records: usize = report
        .versions
        .iter()
        .flat_map(|v| v.copies.iter().map(|c| c.records.len()))
        .sum();
    println!(
        "\nResidency report of cn-eu-contracts (made at frankfurt): {} versions, {} copies ({}), cross-border copies under grant {}, {records} audit records cited.",
        s.versions,
        s.copies,
        per.join(", "),
        grants.into_iter().collect::<Vec<_>>().join(", ")
    );
    if s.copies_not_allowed > 0 {
        bail!(
            "the report finds {} copies the policy does not allow",
            s.copies_not_allowed
        );
    }
    let answer = checker
        .call_large(http::Method::POST, "residency-verify", body.to_vec())
        .await?;
    let check: crate::admin_residency::ReportCheck = serde_json::from_slice(&answer)?;
    if !check.ok {
        bail!("the residency report did not verify: {}", check.detail);
    }
    println!("Verified at yrd-demo-zone: {}", check.detail);
    Ok(())
}

struct DemoBucket {
    name: &'static str,
    created_at: &'static str,
    policy: &'static str,
    story: &'static str,
}

const BUCKETS: [DemoBucket; 4] = [
    DemoBucket {
        name: "cn-personal",
        created_at: "zhangjiakou",
        policy: "jurisdictions = [\"CN\"]\ncopies = 2\ndistinct_failure_domains = true\nclassifications = [\"personal-info\"]\n",
        story: "Chinese personal information: two copies in China, in different failure domains",
    },
    DemoBucket {
        name: "eu-customers",
        created_at: "frankfurt",
        policy: "jurisdictions = [\"EU\"]\ncopies = 1\nclassifications = [\"personal-info\"]\n",
        story: "EU personal data: stays in the EU",
    },
    DemoBucket {
        name: "global-catalog",
        created_at: "yrd-demo-zone",
        policy: "jurisdictions = [\"CN\", \"HK\", \"EU\"]\ncopies = 3\ndistinct_failure_domains = true\n",
        story: "an unclassified product catalogue: three copies anywhere, each in its own failure domain",
    },
    DemoBucket {
        name: "cn-eu-contracts",
        created_at: "yrd-demo-zone",
        policy: "hubs = [\"yrd-demo-zone\", \"frankfurt\"]\ncopies = 2\nhome_hub = \"yrd-demo-zone\"\nclassifications = [\"personal-info\"]\nindividuals_per_object = 1\n",
        story: "personal information that may go from Shanghai to Frankfurt, under a recorded standard contract",
    },
];

async fn walk_through(
    topology: &Topology,
    dir: &Path,
    ca: &Path,
    access: &str,
    secret: &str,
    hubs: &mut Hubs,
    keep_running: bool,
) -> anyhow::Result<()> {
    wait_healthy(topology, hubs, dir, ca).await?;
    println!(
        "All hubs are up; they talk over mutual TLS (certificates in {}).\n",
        dir.join("certs").display()
    );
    let s3 = S3 {
        http: https_client(ca)?,
        creds: rusty_s3::Credentials::new(access, secret),
    };
    let admin_of = |hub: &str| AdminClient::with_ca(endpoint(topology, hub, true), access, secret, Some(ca));

    let grant = crate::admin::GrantRequest {
        id: Some("cn-eu-scc-1".into()),
        from: "CN".into(),
        to: "EU".into(),
        classifications: vec!["personal-info".into()],
        basis: "standard-contract".into(),
        reference: "CAC-SC-2026-0042".into(),
        companions: [("piia".to_owned(), "PIIA-2026-0042".to_owned())].into(),
        expires: "2027-06-30".into(),
        volume_cap_bytes: Some(1 << 30),
        volume_cap_individuals: Some(100_000),
    };
    admin_of("yrd-demo-zone")?
        .call(http::Method::POST, "grants", serde_json::to_vec(&grant)?)
        .await?;
    println!("Recorded grant cn-eu-scc-1: CN -> EU, personal-info, standard contract, until 2027-06-30.");

    for b in &BUCKETS {
        s3.create_bucket(endpoint(topology, b.created_at, false), b.name)
            .await?;
        admin_of(b.created_at)?
            .call(
                http::Method::PUT,
                &format!("policy?bucket={}", b.name),
                b.policy.as_bytes().to_vec(),
            )
            .await?;
        println!("Bucket {:<16} created at {:<14} {}", b.name, b.created_at, b.story);
    }
    // Let every hub learn the policies before data flows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!();
    for b in &BUCKETS {
        for n in 0..5 {
            let key = format!("sample/{n:02}.json");
            let body = format!("{{\"bucket\":\"{}\",\"n\":{n}}}", b.name);
            let (status, message) = s3
                .put(endpoint(topology, b.created_at, false), b.name, &key, body.as_bytes())
                .await?;
            if status != 200 {
                bail!("writing {}/{key}: HTTP {status} {message}", b.name);
            }
        }
        println!("Wrote 5 objects into {} at {}", b.name, b.created_at);
    }

    println!("\nTrying to write Chinese personal information into Frankfurt:");
    let (status, message) = s3
        .put(
            endpoint(topology, "frankfurt", false),
            "cn-personal",
            "leak.json",
            b"{}",
        )
        .await?;
    println!("  HTTP {status}: {message}");
    if status != 403 {
        bail!("the residency rule did not hold: HTTP {status}");
    }

    println!("\nWaiting for replication to finish…");
    let asker = admin_of("zhangjiakou")?;
    let started = Instant::now();
    let report = loop {
        let body = asker.call(http::Method::GET, "status", Vec::new()).await?;
        let report: StatusReport = serde_json::from_slice(&body)?;
        let backlog: u64 = report.links.iter().map(|l| l.backlog_entries).sum();
        if backlog == 0 || started.elapsed() > Duration::from_secs(60) {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!();
    print_status(&report);
    let stray: Vec<String> = report
        .buckets
        .iter()
        .flat_map(|b| {
            b.holders
                .iter()
                .filter(|h| h.forbidden)
                .map(move |h| format!("{} at {}", b.bucket, h.hub))
        })
        .collect();
    if !stray.is_empty() {
        bail!("data found where its policy forbids it: {}", stray.join(", "));
    }
    // Read-through: a CN hub without a copy serves the object from one that has it; Frankfurt
    // may not receive Chinese personal information at all, so it refuses.
    let holders: Vec<&str> = report
        .buckets
        .iter()
        .filter(|b| b.bucket == "cn-personal")
        .flat_map(|b| b.holders.iter().map(|h| h.hub.as_str()))
        .collect();
    if let Some(reader) = topology
        .hubs()
        .find(|h| h.jurisdiction == "CN" && !holders.contains(&h.id.as_str()))
    {
        let (status, body) = s3
            .get(endpoint(topology, &reader.id, false), "cn-personal", "sample/00.json")
            .await?;
        println!(
            "\nReading cn-personal/sample/00.json at {} (no copy there; copies at {}):",
            reader.id,
            holders.join(", ")
        );
        println!("  HTTP {status}: {body}  (read through from a hub that holds it)");
        if status != 200 {
            bail!("read-through at {} failed: HTTP {status}", reader.id);
        }
    }
    let (status, message) = s3
        .get(endpoint(topology, "frankfurt", false), "cn-personal", "sample/00.json")
        .await?;
    println!("Reading it at frankfurt:\n  HTTP {status}: {message}");
    if status != 403 {
        bail!("the residency rule did not hold for a read: HTTP {status}");
    }

    residency_walk(&admin_of("frankfurt")?, &admin_of("yrd-demo-zone")?).await?;

    println!("\nEvery copy is where its policy allows; each decision is in the hubs' audit logs:");
    println!(
        "  VALLEY_CA={} VALLEY_ACCESS_KEY={access} VALLEY_SECRET_KEY={secret} valley --admin {} audit show --bucket cn-eu-contracts",
        ca.display(),
        endpoint(topology, "yrd-demo-zone", true)
    );
    if keep_running {
        println!(
            "\nThe network keeps running (Ctrl-C stops it). S3 endpoints (HTTPS; trust {}):",
            ca.display()
        );
        for hub in topology.hubs() {
            println!("  {:<14} {}", hub.id, endpoint(topology, &hub.id, false));
        }
        let _ = tokio::signal::ctrl_c().await;
    }
    // Dropping `hubs` (in `run`) stops every hub.
    Ok(())
}
