//! Encryption at rest, as S3's server-side encryption does it, with keys a tenant holds.
//!
//! Three layers of keys (envelope encryption):
//! - a **data key** per object version, random, sealing the object's bytes ([`chunk`]);
//! - a **bucket key** wrapping the data keys of a bucket's objects ([`envelope`]), itself kept
//!   only wrapped, so one key-service call opens many objects;
//! - the tenant's **key-encryption key**, which never leaves its key service ([`kms::Kms`]).
//!
//! Everything that moves between hubs (replication, repair, read-through) is ciphertext and
//! wrapped keys: a hub that stores or serves a copy never needs a plaintext key to do so.
//! Destroying the key-encryption key makes every object under it unreadable, whatever its size
//! and wherever its copies are (crypto-shredding).
//!
//! Pure computation and local files only (no network, no clock), except [`Pkcs11Kms`], which
//! calls the PKCS#11 module (an HSM's library) it is given.

pub mod chunk;
pub mod envelope;
pub mod error;
pub mod kms;
pub mod pkcs11;
pub mod stream;

pub use chunk::{ChunkLayout, SegmentSealer};
pub use envelope::{DataKey, WrappedKey};
pub use error::CryptoError;
pub use kms::{Kms, LocalKeystore};
pub use pkcs11::Pkcs11Kms;
pub use stream::IncrementalSealer;
