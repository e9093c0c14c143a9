//! End-to-end TLS over real sockets on 127.0.0.1, with certificates made by `init_network`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_service::Service;
use valley_tls::{
    HubCertSpec, NameMode, NetworkCerts, PeerConnector, PeerTls, ServerTls, TlsError, cli_client_config,
    fingerprint_sha256, init_network, issue_hub_cert, load_certs, peer_hub_from_certs, pem_fingerprint,
};

fn spec(id: &str) -> HubCertSpec {
    HubCertSpec {
        id: id.to_string(),
        extra_names: vec!["127.0.0.1".into(), "localhost".into()],
    }
}

fn network(dir: &Path, ids: &[&str]) -> NetworkCerts {
    let specs: Vec<_> = ids.iter().map(|id| spec(id)).collect();
    init_network(&specs, dir).expect("init_network")
}

/// (cert, key) of hub `id` in a network made by `network`.
fn hub_files(net: &NetworkCerts, id: &str) -> (PathBuf, PathBuf) {
    let (_, cert, key) = net.hubs.iter().find(|(h, _, _)| h == id).expect("hub");
    (cert.clone(), key.clone())
}

/// What the test server saw of one connection: the peer hub, or the handshake error.
type Seen = Result<Option<String>, String>;

struct TestServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// A tiny HTTP/1 server over `tls` that answers each request with the peer hub it saw
/// ("none" without a client certificate).
async fn serve(tls: &ServerTls) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, seen) = mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let hub = valley_tls::peer_hub(stream.get_ref().1);
                let _ = tx.send(Ok(hub.clone()));
                let answer = hub.unwrap_or_else(|| "none".to_string());
                let svc = service_fn(move |_req| {
                    let body = Full::new(Bytes::from(answer.clone()));
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer { addr, accepted, seen }
}

impl TestServer {
    async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("server saw nothing")
            .expect("server gone")
    }
}

/// GET `url` through `connector`; the body, or the error chain as text.
async fn get(connector: PeerConnector, url: &str) -> Result<String, String> {
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let req = hyper::Request::get(url).body(Empty::new()).unwrap();
    let fut = async {
        let resp = client.request(req).await.map_err(|e| {
            let mut text = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                text.push_str(&format!(": {s}"));
                src = s.source();
            }
            text
        })?;
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("request hung")
}

fn hubs_map(addr: SocketAddr, id: &str) -> HashMap<String, String> {
    HashMap::from([(addr.to_string(), id.to_string())])
}

/// Dials `addr` expecting hub `id`; the hub named by the certificate the server presented.
async fn dial(peer: &PeerTls, addr: SocketAddr, id: &str) -> Result<Option<String>, TlsError> {
    let mut connector = peer.connector(hubs_map(addr, id)).unwrap();
    let uri: http::Uri = format!("https://{addr}/").parse().unwrap();
    let stream = connector.call(uri).await?;
    let tls = stream.tls().expect("a TLS stream");
    Ok(tls.peer_certificates().and_then(peer_hub_from_certs))
}

fn server_for(net: &NetworkCerts, id: &str) -> ServerTls {
    let (cert, key) = hub_files(net, id);
    ServerTls::load(&cert, &key, Some(&net.ca_pem)).expect("server tls")
}

fn peer_for(net: &NetworkCerts, id: &str) -> PeerTls {
    let (cert, key) = hub_files(net, id);
    PeerTls::load(&net.ca_pem, &cert, &key).expect("peer tls")
}

#[tokio::test]
async fn peer_hub_is_the_client_certificate_hub() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let mut server = serve(&server_for(&net, "alpha")).await;
    let peer = peer_for(&net, "beta");
    let connector = peer.connector(hubs_map(server.addr, "alpha")).unwrap();
    let body = get(connector, &format!("https://{}/", server.addr)).await;
    assert_eq!(body, Ok("beta".to_string()));
    assert_eq!(server.next_seen().await, Ok(Some("beta".to_string())));

    // And the dialling side sees the server's hub.
    assert_eq!(
        dial(&peer, server.addr, "alpha").await.unwrap(),
        Some("alpha".to_string())
    );
}

#[tokio::test]
async fn connector_refuses_a_server_proving_another_hub() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let server = serve(&server_for(&net, "alpha")).await;
    // The topology says beta lives there; alpha's valid certificate is not enough.
    let err = dial(&peer_for(&net, "beta"), server.addr, "beta").await.unwrap_err();
    assert!(
        matches!(&err, TlsError::Handshake { server_name, .. } if server_name == "beta.hub.valley"),
        "{err}"
    );
    let connector = peer_for(&net, "beta").connector(hubs_map(server.addr, "beta")).unwrap();
    let res = get(connector, &format!("https://{}/", server.addr)).await;
    assert!(res.is_err(), "{res:?}");
}

#[tokio::test]
async fn connector_refuses_a_server_from_another_ca() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let net1 = network(d1.path(), &["alpha"]);
    let net2 = network(d2.path(), &["alpha", "beta"]);
    assert_ne!(net1.ca_fingerprint, net2.ca_fingerprint);
    let server = serve(&server_for(&net1, "alpha")).await;
    // Same hub id, but the certificate is not from the CA the client trusts.
    let err = dial(&peer_for(&net2, "beta"), server.addr, "alpha").await.unwrap_err();
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
    // Control: a client of the server's own network gets through.
    let (c1, k1) = hub_files(&net1, "alpha");
    let ok = PeerTls::load(&net1.ca_pem, &c1, &k1).unwrap();
    assert_eq!(dial(&ok, server.addr, "alpha").await.unwrap(), Some("alpha".into()));
}

#[tokio::test]
async fn unknown_https_peer_is_never_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let server = serve(&server_for(&net, "alpha")).await;
    let mut connector = peer_for(&net, "beta")
        .connector(hubs_map("127.0.0.1:1".parse().unwrap(), "alpha"))
        .unwrap();
    let uri: http::Uri = format!("https://{}/", server.addr).parse().unwrap();
    let err = connector.call(uri).await.unwrap_err();
    assert!(
        matches!(&err, TlsError::UnknownPeer { authority } if *authority == server.addr.to_string()),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 0);

    // set_hubs (topology change) is seen by the clone the client holds.
    let shared = connector.clone();
    shared.set_hubs(hubs_map(server.addr, "alpha")).unwrap();
    let uri: http::Uri = format!("https://{}/", server.addr).parse().unwrap();
    assert!(connector.call(uri).await.is_ok());
}

#[tokio::test]
async fn client_without_certificate_is_accepted_anonymously() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha"]);
    let mut server = serve(&server_for(&net, "alpha")).await;
    let cli = Arc::new(cli_client_config(Some(&net.ca_pem)).unwrap());
    for host in ["localhost", "127.0.0.1"] {
        let connector = PeerConnector::new(cli.clone(), NameMode::UrlHost).unwrap();
        let url = format!("https://{host}:{}/", server.addr.port());
        assert_eq!(get(connector, &url).await, Ok("none".to_string()), "{url}");
        assert_eq!(server.next_seen().await, Ok(None));
    }
}

#[tokio::test]
async fn cli_mode_verifies_the_url_host() {
    let dir = tempfile::tempdir().unwrap();
    // No extra names: the certificate is valid for gamma.hub.valley only.
    let bare = HubCertSpec {
        id: "gamma".into(),
        extra_names: vec![],
    };
    let net = init_network(&[bare], dir.path()).unwrap();
    let server = serve(&server_for(&net, "gamma")).await;
    let cli = Arc::new(cli_client_config(Some(&net.ca_pem)).unwrap());
    let mut connector = PeerConnector::new(cli, NameMode::UrlHost).unwrap();
    let uri: http::Uri = format!("https://127.0.0.1:{}/", server.addr.port()).parse().unwrap();
    let err = connector.call(uri).await.unwrap_err();
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let net1 = network(d1.path(), &["alpha"]);
    let net2 = network(d2.path(), &["beta"]);
    let mut server = serve(&server_for(&net1, "alpha")).await;
    // Trusts the server's CA, but presents a certificate from another network.
    let (c2, k2) = hub_files(&net2, "beta");
    let intruder = PeerTls::load(&net1.ca_pem, &c2, &k2).unwrap();
    let connector = intruder.connector(hubs_map(server.addr, "alpha")).unwrap();
    let res = get(connector, &format!("https://{}/", server.addr)).await;
    assert!(res.is_err(), "{res:?}");
    let seen = server.next_seen().await;
    assert!(seen.is_err(), "server accepted the handshake: {seen:?}");
}

#[tokio::test]
async fn plain_http_goes_through_the_same_connector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let svc = service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("plain"))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha"]);
    // An empty hub map: plain http needs none.
    let connector = peer_for(&net, "alpha").connector(HashMap::new()).unwrap();
    let body = get(connector, &format!("http://{addr}/")).await;
    assert_eq!(body, Ok("plain".to_string()));
}

fn replace(dst: &Path, src: &Path) {
    std::fs::copy(src, dst).unwrap();
}

#[tokio::test]
async fn server_reloads_changed_files_and_keeps_the_old_pair_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let ca_key = dir.path().join("ca-key.pem");
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    let (a_cert, a_key) = hub_files(&net, "alpha");
    replace(&cert, &a_cert);
    replace(&key, &a_key);
    let tls = ServerTls::load(&cert, &key, Some(&net.ca_pem)).unwrap();
    let server = serve(&tls).await;
    let client = peer_for(&net, "beta");
    assert_eq!(dial(&client, server.addr, "alpha").await.unwrap(), Some("alpha".into()));
    assert!(!tls.reload_now().unwrap(), "nothing changed yet");

    // Rotate to a certificate for delta, issued by the same CA.
    let (d_cert, d_key) = issue_hub_cert(&net.ca_pem, &ca_key, &spec("delta"), &dir.path().join("d")).unwrap();
    replace(&key, &d_key);
    replace(&cert, &d_cert);
    assert!(tls.reload_now().unwrap());
    assert_eq!(dial(&client, server.addr, "delta").await.unwrap(), Some("delta".into()));
    assert!(dial(&client, server.addr, "alpha").await.is_err());

    // Garbage: refused, delta keeps serving.
    std::fs::write(&cert, b"not a certificate").unwrap();
    let err = tls.reload_now().unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificate { path } if *path == cert),
        "{err}"
    );
    assert_eq!(dial(&client, server.addr, "delta").await.unwrap(), Some("delta".into()));

    // A certificate with someone else's key: refused too.
    let (e_cert, _e_key) = issue_hub_cert(&net.ca_pem, &ca_key, &spec("echo"), &dir.path().join("e")).unwrap();
    replace(&cert, &e_cert);
    let err = tls.reload_now().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert_eq!(dial(&client, server.addr, "delta").await.unwrap(), Some("delta".into()));

    // Without reload_now: a handshake more than a second later picks up a good new pair.
    let (f_cert, f_key) = issue_hub_cert(&net.ca_pem, &ca_key, &spec("foxtrot"), &dir.path().join("f")).unwrap();
    replace(&key, &f_key);
    replace(&cert, &f_cert);
    tokio::time::sleep(valley_tls::RELOAD_CHECK_INTERVAL + Duration::from_millis(200)).await;
    assert_eq!(
        dial(&client, server.addr, "foxtrot").await.unwrap(),
        Some("foxtrot".into())
    );
}

#[tokio::test]
async fn peer_client_certificate_reloads_too() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let mut server = serve(&server_for(&net, "alpha")).await;
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    let (b_cert, b_key) = hub_files(&net, "beta");
    replace(&cert, &b_cert);
    replace(&key, &b_key);
    let peer = PeerTls::load(&net.ca_pem, &cert, &key).unwrap();
    let url = format!("https://{}/", server.addr);
    let addr = server.addr;
    let conn = || peer.connector(hubs_map(addr, "alpha")).unwrap();
    assert_eq!(get(conn(), &url).await, Ok("beta".into()));
    let _ = server.next_seen().await;
    let (h_cert, h_key) = issue_hub_cert(
        &net.ca_pem,
        &dir.path().join("ca-key.pem"),
        &spec("hotel"),
        &dir.path().join("h"),
    )
    .unwrap();
    replace(&key, &h_key);
    replace(&cert, &h_cert);
    assert!(peer.reload_now().unwrap());
    assert_eq!(get(conn(), &url).await, Ok("hotel".into()));
}

fn pem_der_by_hand(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| *l != "-----BEGIN CERTIFICATE-----")
        .skip(1)
        .take_while(|l| *l != "-----END CERTIFICATE-----")
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

#[test]
fn init_network_writes_the_layout_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let net = network(&out, &["alpha", "beta"]);
    assert_eq!(net.ca_pem, out.join("ca.pem"));
    let der = pem_der_by_hand(&net.ca_pem);
    assert!(!der.is_empty());
    let by_hand = hex::encode(Sha256::digest(&der));
    assert_eq!(net.ca_fingerprint, by_hand);
    assert_eq!(pem_fingerprint(&net.ca_pem).unwrap(), by_hand);
    assert_eq!(fingerprint_sha256(&der), by_hand);
    assert_eq!(net.ca_fingerprint.len(), 64);
    assert_eq!(net.ca_fingerprint, net.ca_fingerprint.to_lowercase());

    for (i, id) in ["alpha", "beta"].iter().enumerate() {
        let (hub, cert, key) = &net.hubs[i];
        assert_eq!(hub, id);
        assert_eq!(*cert, out.join(id).join("cert.pem"));
        assert_eq!(*key, out.join(id).join("key.pem"));
        let chain = load_certs(cert).unwrap();
        assert_eq!(chain.len(), 1, "leaf only");
        assert_eq!(peer_hub_from_certs(&chain).as_deref(), Some(*id));
        assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let ca_key = std::fs::metadata(out.join("ca-key.pem")).unwrap();
    assert_eq!(ca_key.permissions().mode() & 0o777, 0o600);
}

#[test]
fn init_network_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha"]);
    let before = std::fs::read(&net.ca_pem).unwrap();
    let err = init_network(&[spec("alpha")], dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
    assert_eq!(std::fs::read(&net.ca_pem).unwrap(), before);

    // One existing hub file is enough to refuse, and nothing else gets written.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir2.path().join("beta")).unwrap();
    std::fs::write(dir2.path().join("beta").join("key.pem"), b"keep").unwrap();
    let err = init_network(&[spec("alpha"), spec("beta")], dir2.path()).unwrap_err();
    assert!(
        matches!(&err, TlsError::AlreadyExists { path } if path.ends_with("beta/key.pem")),
        "{err}"
    );
    assert!(!dir2.path().join("ca.pem").exists());
    assert!(!dir2.path().join("alpha").exists());
}

#[test]
fn bad_hub_ids_and_names_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    for id in ["Alpha", "-a", "a.b", "", "under_score"] {
        let err = init_network(&[spec("ok"), spec(id)], &out).unwrap_err();
        assert!(
            matches!(&err, TlsError::InvalidHubId { id: bad, .. } if bad == id),
            "{id:?}: {err}"
        );
        assert!(err.to_string().contains(&format!("{id:?}")), "{err}");
    }
    let err = init_network(&[spec("a"), spec("a")], &out).unwrap_err();
    assert!(matches!(err, TlsError::InvalidHubId { .. }), "{err}");
    let bad_name = HubCertSpec {
        id: "a".into(),
        extra_names: vec!["not a host!".into()],
    };
    let err = init_network(&[bad_name], &out).unwrap_err();
    assert!(matches!(err, TlsError::InvalidName { .. }), "{err}");
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn server_load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), &["alpha", "beta"]);
    let (a_cert, a_key) = hub_files(&net, "alpha");
    let (_, b_key) = hub_files(&net, "beta");
    let missing = dir.path().join("missing.pem");
    let err = ServerTls::load(&missing, &a_key, None).unwrap_err();
    assert!(matches!(&err, TlsError::Io { path, .. } if *path == missing), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let err = ServerTls::load(&a_key, &a_key, None).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificate { path } if *path == a_key),
        "{err}"
    );

    let err = ServerTls::load(&a_cert, &a_cert, None).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoPrivateKey { path } if *path == a_cert),
        "{err}"
    );

    let err = ServerTls::load(&a_cert, &b_key, None).unwrap_err();
    assert!(
        matches!(&err, TlsError::KeyMismatch { cert, key } if *cert == a_cert && *key == b_key),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ServerTls::load(&garbage, &a_key, None).unwrap_err();
    assert!(matches!(err, TlsError::BadCertificate { .. }), "{err}");
    let err = ServerTls::load(&a_cert, &a_key, Some(&garbage)).unwrap_err();
    assert!(matches!(err, TlsError::BadCertificate { .. }), "{err}");

    assert!(ServerTls::load(&a_cert, &a_key, Some(&net.ca_pem)).is_ok());
}

#[test]
fn issue_hub_cert_checks_the_ca_pair() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let net1 = network(d1.path(), &["alpha"]);
    let _net2 = network(d2.path(), &["alpha"]);
    let wrong_key = d2.path().join("ca-key.pem");
    let out = d1.path().join("new");
    let err = issue_hub_cert(&net1.ca_pem, &wrong_key, &spec("beta"), &out).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(!out.exists());

    let right_key = d1.path().join("ca-key.pem");
    let (cert, key) = issue_hub_cert(&net1.ca_pem, &right_key, &spec("beta"), &out).unwrap();
    assert_eq!(
        peer_hub_from_certs(&load_certs(&cert).unwrap()).as_deref(),
        Some("beta")
    );
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let err = issue_hub_cert(&net1.ca_pem, &right_key, &spec("beta"), &out).unwrap_err();
    assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
    let err = issue_hub_cert(&net1.ca_pem, &right_key, &spec("Bad"), &out).unwrap_err();
    assert!(matches!(err, TlsError::InvalidHubId { .. }), "{err}");
}
