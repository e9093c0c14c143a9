//! `valley cert init`: a network CA and one certificate per hub of a topology.

use anyhow::Context;

use crate::cli::CertCommand;

pub fn run(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Init { topology, out } => init(&topology, &out),
    }
}

fn init(topology: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(topology).with_context(|| format!("cannot read topology {}", topology.display()))?;
    let parsed =
        valley_policy::Topology::parse(&text).map_err(|e| anyhow::anyhow!("topology {}: {e}", topology.display()))?;
    let specs: Vec<valley_tls::HubCertSpec> = parsed
        .hubs()
        .map(|hub| {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            for endpoint in [&hub.s3_endpoint, &hub.peer_endpoint].into_iter().flatten() {
                if let Some(host) = endpoint
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_owned))
                {
                    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                    if !names.contains(&host) {
                        names.push(host);
                    }
                }
            }
            valley_tls::HubCertSpec {
                id: hub.id.clone(),
                extra_names: names,
            }
        })
        .collect();
    let certs = valley_tls::init_network(&specs, out)?;
    println!("Network CA: {}", certs.ca_pem.display());
    for (hub, cert, key) in &certs.hubs {
        println!("  {hub:<16} {}  {}", cert.display(), key.display());
    }
    println!(
        "\nAdd to the topology (every hub loads the same file):\n\n[tls]\nca_sha256 = \"{}\"",
        certs.ca_fingerprint
    );
    println!(
        "\nThen start each hub with --tls-cert DIR/<hub>/cert.pem --tls-key DIR/<hub>/key.pem --tls-ca {}",
        certs.ca_pem.display()
    );
    Ok(())
}
