//! A certificate and key that follow their files: checked at most once per second, on a
//! handshake; a bad new pair is refused with one warning and the old pair keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use crate::TlsError;
use crate::pem::load_certified_key;

/// The least time between two looks at the files.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of one file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Both files' stamps; `None` for a file that cannot be inspected (missing, ...).
type PairStamp = [Option<FileStamp>; 2];

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    loaded: PairStamp,
    /// The stamp of the last pair refused: not retried (nor warned about) until it changes.
    refused: Option<PairStamp>,
    last_check: Instant,
}

/// A hub's certificate and key, reloaded when their files change.
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

impl ReloadingCert {
    /// Loads the pair now; an error here is the caller's (nothing to fall back to).
    pub(crate) fn load(cert_path: &Path, key_path: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let loaded = [stamp(cert_path), stamp(key_path)];
        let current = Arc::new(load_certified_key(cert_path, key_path, &provider)?);
        Ok(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            state: Mutex::new(State {
                current,
                loaded,
                refused: None,
                last_check: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent State (fields are replaced whole).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pair to use for a handshake, after looking at the files if a second has passed.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.lock();
        if state.last_check.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.last_check = Instant::now();
            let now = [stamp(&self.cert_path), stamp(&self.key_path)];
            if now != state.loaded
                && state.refused != Some(now)
                && let Err(e) = self.reload_into(&mut state, now)
            {
                tracing::warn!(
                    error = %e,
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "TLS certificate files changed but cannot be used; still serving the previous certificate"
                );
            }
        }
        state.current.clone()
    }

    /// Looks at the files now. Ok(true): a new pair was loaded; Ok(false): files unchanged;
    /// Err: they changed but the new pair is unusable (the old one stays).
    pub(crate) fn reload_now(&self) -> Result<bool, TlsError> {
        let mut state = self.lock();
        state.last_check = Instant::now();
        let now = [stamp(&self.cert_path), stamp(&self.key_path)];
        if now == state.loaded {
            return Ok(false);
        }
        self.reload_into(&mut state, now).map(|()| true)
    }

    fn reload_into(&self, state: &mut State, now: PairStamp) -> Result<(), TlsError> {
        match load_certified_key(&self.cert_path, &self.key_path, &self.provider) {
            Ok(pair) => {
                state.current = Arc::new(pair);
                state.loaded = now;
                state.refused = None;
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                state.refused = Some(now);
                Err(e)
            }
        }
    }
}

/// Serves the current pair to every client (a hub has one identity on a port).
impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Presents the current pair when a server asks for a client certificate (hub-to-hub dials).
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{HubCertSpec, init_network};

    /// Counts WARN events; nothing else.
    struct CountWarnings(Arc<AtomicUsize>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Lets the next `current()` look at the files.
    fn rewind(cert: &ReloadingCert) {
        cert.lock().last_check = Instant::now() - RELOAD_CHECK_INTERVAL;
    }

    #[test]
    fn one_warning_per_bad_change_and_the_old_pair_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let specs = ["a", "b"].map(|id| HubCertSpec {
            id: id.into(),
            extra_names: vec![],
        });
        let net = init_network(&specs, dir.path()).unwrap();
        let (_, a_cert, a_key) = &net.hubs[0];
        let (_, b_cert, b_key) = &net.hubs[1];
        let live = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::copy(a_cert, &live.0).unwrap();
        std::fs::copy(a_key, &live.1).unwrap();
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = CountWarnings(warnings.clone());
        tracing::subscriber::with_default(subscriber, || {
            let cert = ReloadingCert::load(&live.0, &live.1, crate::pem::provider()).unwrap();
            let original = cert.current();
            // Within the interval, a change is not looked at.
            std::fs::write(&live.0, b"garbage").unwrap();
            assert!(Arc::ptr_eq(&cert.current(), &original));
            for _ in 0..3 {
                rewind(&cert);
                assert!(Arc::ptr_eq(&cert.current(), &original));
            }
            assert_eq!(warnings.load(Ordering::SeqCst), 1, "one warning per change");
            // A second bad change: one more warning.
            std::fs::write(&live.0, b"more garbage").unwrap();
            rewind(&cert);
            assert!(Arc::ptr_eq(&cert.current(), &original));
            rewind(&cert);
            cert.current();
            assert_eq!(warnings.load(Ordering::SeqCst), 2);
            // A good pair is taken.
            std::fs::copy(b_key, &live.1).unwrap();
            std::fs::copy(b_cert, &live.0).unwrap();
            rewind(&cert);
            let new = cert.current();
            assert!(!Arc::ptr_eq(&new, &original));
            assert_eq!(crate::peer_hub_from_certs(&new.cert).as_deref(), Some("b"));
            assert_eq!(warnings.load(Ordering::SeqCst), 2);
        });
    }
}
