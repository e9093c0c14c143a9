//! Valley's hub network.
//!
//! - [`core`]: the delivery logic (link queues, backoff), free of I/O.
//! - [`control`]: placement policies and grants, held by every hub.
//! - [`outbox`]: what each peer is still owed, written with the change it ships.
//! - [`hook`]: the catalog hook that refuses forbidden writes and fills the outbox.
//! - [`hub`]: one hub's network state and control-plane operations, composed of [`links`] (link
//!   state and per-peer budgets), [`peers`] (signed calls to other hubs), [`auditor`] (the
//!   audit log), `policy_cache` and `grant_ledger`.
//! - [`heads`]: signed audit chain heads exchanged between hubs, and the check of peers' chains.
//! - [`link`]: the per-peer workers that ship the outbox.
//! - [`read_through`]: serving reads of versions held at other hubs.
//! - [`repair`]: anti-entropy, re-creating copies of lost hubs, tiering.
//! - [`residency`]: residency reports, their verification, and dry-runs of policy changes.
//! - [`batch`]: many small versions in one call, applied in one transaction.
//! - [`sync`]: synchronous copies (`ack_copies`): copies made before a write is committed.
//! - [`transfer`]: sending one version (chunked, resumable, rate-limited, audited); [`moved`]:
//!   what was sent to each peer per bucket, for billing.
//! - [`receive`] and [`wire`]: the peer protocol.
//! - [`auth`] and [`client`]: signed requests between hubs; [`refusals`]: auditing refused
//!   calls without letting a stranger grow the log; [`body_timeout`]: bodies that must keep
//!   arriving.

pub mod auditor;
pub mod auth;
pub mod batch;
pub mod body_timeout;
pub mod client;
pub mod control;
pub mod core;
mod export_volume;
mod grant_ledger;
pub mod heads;
pub mod hook;
pub mod hub;
pub mod link;
pub mod links;
pub mod moved;
pub mod outbox;
pub mod peers;
mod policy_cache;
pub mod read_through;
pub mod receive;
pub mod refusals;
pub mod repair;
pub mod residency;
pub mod rule_change;
pub mod sync;
pub mod transfer;
pub mod wire;

pub use hub::{BucketBacklog, Hub, HubError, outbox_hook};
pub use links::LinkStatus;
