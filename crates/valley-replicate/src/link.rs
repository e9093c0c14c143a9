//! Per-link workers: each ships its peer's outbox entries, oldest first, retrying failures with
//! jittered exponential backoff, and removes an entry only once the peer acknowledged it or the
//! policy engine refused it (refusals are audited).
//!
//! What is in flight is bounded in bytes by the link's bandwidth-delay product, not by a count
//! of requests: small versions travel many per call ([`crate::batch`]), deletes likewise, so a
//! long link carries small objects at its bandwidth rather than at one round trip per object.
//! A worker holds at most [`LOADED_MAX`] entries in memory and reads the rest in pages as
//! those settle: a backlog of any length costs the same memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use valley_policy::TransferKind;

use crate::batch::{self, send::VersionRef};
use crate::client::{self, PeerError};
use crate::core::{Backoff, LinkQueue};
use crate::hook::now_unix_ms;
use crate::hub::Hub;
use crate::outbox::{self, OutboxEntry, Shipment};
use crate::peers::Peers;
use crate::transfer::{self, Sent};
use crate::wire;

/// Outbox entries of one link held in memory at once.
pub const LOADED_MAX: usize = 8192;
/// Outbox entries read per page.
const OUTBOX_PAGE: usize = 4096;
/// Bounds of a link's in-flight window, in bytes.
const WINDOW_BYTES_MIN: u64 = 8 * 1024 * 1024;
const WINDOW_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Window of a link the topology does not describe.
const WINDOW_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// What one entry counts against the window at least (its metadata and framing)…
const ENTRY_COST_MIN: u64 = 512;
/// …and at most: a large version moves in chunks under the link's own stream budget, which is
/// what bounds it; counting it whole would leave a lossy link a few objects' streams.
const ENTRY_COST_MAX: u64 = transfer::CHUNK_BYTES_MIN;
/// Calls carrying one version each in flight on a link at once. Each is a connection; a
/// receiver counts a peer's connections against its per-address limit until their TLS
/// handshake proves the peer (64 on the admin port), so a burst of reconnections after a cut
/// must stay well under that, leaving room for the operator's own calls from the same address.
const SINGLE_CALLS_MAX: usize = 24;
/// A batch of deletes is closed at about this much JSON (the receiver takes 1 MiB).
const DELETE_BATCH_BYTES: usize = 512 * 1024;
/// Longest sleep between outbox scans (new entries also wake the worker at once).
const IDLE_RESCAN: Duration = Duration::from_millis(500);
const BACKOFF: Backoff = Backoff {
    base_ms: 250,
    max_ms: 30_000,
};

/// Starts one worker per peer.
pub fn start(hub: &Arc<Hub>) {
    for peer in hub.peers.ids() {
        let hub = hub.clone();
        tokio::spawn(async move { run(hub, peer).await });
    }
}

/// The bytes to keep in flight on `link`: four bandwidth-delay products (a cut or a slow
/// receiver stalls part of the window), within bounds.
#[must_use]
pub fn window_bytes(link: Option<&valley_policy::Link>) -> u64 {
    let Some(link) = link else { return WINDOW_BYTES_DEFAULT };
    let bytes_per_sec = link
        .replication_limit_mbit
        .unwrap_or(link.bandwidth_mbit)
        .min(link.bandwidth_mbit)
        * 125_000.0;
    let bdp = bytes_per_sec * (link.rtt_ms.max(1.0) / 1000.0);
    ((4.0 * bdp) as u64).clamp(WINDOW_BYTES_MIN, WINDOW_BYTES_MAX)
}

/// What `entry` counts against the window while in flight.
fn cost(entry: &OutboxEntry) -> u64 {
    entry.bytes.clamp(ENTRY_COST_MIN, ENTRY_COST_MAX)
}

/// Whether `entry` goes in a call of its own (not in a batch of versions or of deletes).
fn travels_alone(entry: &OutboxEntry, solo: bool) -> bool {
    match entry.shipment {
        Shipment::Delete { .. } | Shipment::Newer { .. } => false,
        Shipment::Put { .. } => solo || !batched(entry),
        Shipment::Control { .. } => true,
    }
}

/// Whether `entry` travels in a batch of versions.
fn batched(entry: &OutboxEntry) -> bool {
    matches!(entry.shipment, Shipment::Put { .. }) && entry.bytes <= batch::BATCH_ITEM_BYTES_MAX
}

enum Shipped {
    Delivered,
    /// Refused by the policy engine (here or at the peer): the entry is dropped.
    Refused(String),
}

/// One link's worker state: the entries loaded, what is in flight, and the link's health.
struct Worker {
    hub: Arc<Hub>,
    peer: String,
    queue: LinkQueue,
    known: HashMap<u64, OutboxEntry>,
    /// Entries whose batch the peer refused as a whole (not version by version): they go
    /// one per call, so one bad version cannot hold back the rest.
    solo: HashSet<u64>,
    window: u64,
    in_flight_bytes: u64,
    /// Entries in flight one per call (see [`SINGLE_CALLS_MAX`]).
    singles: HashSet<u64>,
    /// Only entries newer than the last page are read: re-reading the backlog after every
    /// delivery would cost time quadratic in it.
    scan_from: u64,
    /// The last page was full, or not read for want of room: more entries wait in the store.
    behind: bool,
    health: LinkHealth,
}

async fn run(hub: Arc<Hub>, peer: String) {
    let window = window_bytes(hub.topology.link(&hub.id, &peer));
    let mut worker = Worker {
        hub,
        peer,
        queue: LinkQueue::new(LOADED_MAX, BACKOFF),
        known: HashMap::new(),
        solo: HashSet::new(),
        window,
        in_flight_bytes: 0,
        singles: HashSet::new(),
        scan_from: 0,
        behind: true,
        health: LinkHealth::default(),
    };
    let mut in_flight: FuturesUnordered<ShipFuture> = FuturesUnordered::new();
    let mut scan_now = true;
    loop {
        let now = now_unix_ms();
        if scan_now || worker.behind {
            worker.load(now).await;
        }
        for shipment in worker.dispatch(now) {
            in_flight.push(shipment);
        }
        let wait = worker.queue.next_due_ms().map_or(IDLE_RESCAN, |due| {
            Duration::from_millis(due.saturating_sub(now)).min(IDLE_RESCAN)
        });
        scan_now = false;
        tokio::select! {
            Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                // Settle every finished delivery at once: one commit removes them all from the
                // outbox, instead of one commit (and fsync) per delivery.
                let mut finished = first;
                while let Some(Some(more)) = in_flight.next().now_or_never() {
                    finished.extend(more);
                }
                worker.settle(finished).await;
            }
            () = worker.hub.links.wake.notified() => scan_now = true,
            () = tokio::time::sleep(wait) => scan_now = true,
        }
    }
}

impl Worker {
    /// Reads the next page of the outbox, if there is room for it.
    async fn load(&mut self, now: u64) {
        if self.known.len() + OUTBOX_PAGE > LOADED_MAX {
            self.behind = true;
            return;
        }
        let scan = {
            let (peer, from) = (self.peer.clone(), self.scan_from);
            self.hub
                .read(move |txn| outbox::pending_from(txn, &peer, from, OUTBOX_PAGE))
                .await
        };
        match scan {
            Ok(entries) => {
                self.behind = entries.len() == OUTBOX_PAGE;
                for (seq, entry) in entries {
                    self.queue.enqueue(seq, now);
                    self.known.entry(seq).or_insert(entry);
                    self.scan_from = self.scan_from.max(seq + 1);
                }
            }
            Err(e) => {
                tracing::error!(peer = self.peer, error = %e, "reading the outbox failed");
            }
        }
    }

    /// Starts the deliveries that are due and fit the window.
    fn dispatch(&mut self, now: u64) -> Vec<ShipFuture> {
        let (known, solo, window) = (&self.known, &self.solo, self.window);
        let mut budget = self.in_flight_bytes;
        let mut singles = self.singles.len();
        let due = self.queue.take_due_while(now, |seq| {
            let Some(entry) = known.get(&seq) else { return true };
            let c = cost(entry);
            // One entry always goes, however large, when nothing is in flight.
            if budget > 0 && budget + c > window {
                return false;
            }
            let single = travels_alone(entry, solo.contains(&seq));
            if single && singles >= SINGLE_CALLS_MAX {
                return false;
            }
            budget += c;
            singles += usize::from(single);
            true
        });
        self.in_flight_bytes = budget;
        let mut out = Vec::new();
        let mut puts = Batcher::default();
        let mut deletes = Batcher::default();
        for seq in due {
            let Some(entry) = self.known.get(&seq).cloned() else {
                self.queue.ack(seq);
                continue;
            };
            if matches!(entry.shipment, Shipment::Delete { .. } | Shipment::Newer { .. }) {
                let size = delete_size(&entry);
                if let Some(full) = deletes.add(seq, entry, size, DELETE_BATCH_BYTES, usize::MAX) {
                    out.push(self.ship_deletes(full));
                }
            } else if batched(&entry) && !self.solo.contains(&seq) {
                let size = usize::try_from(entry.bytes).unwrap_or(usize::MAX);
                if let Some(full) = puts.add(seq, entry, size, batch::BATCH_PAYLOAD_BYTES, batch::BATCH_ITEMS) {
                    out.push(self.ship_puts(full));
                }
            } else {
                self.singles.insert(seq);
                let (hub, peer) = (self.hub.clone(), self.peer.clone());
                out.push(Box::pin(async move {
                    let result = ship(&hub, &peer, &entry).await;
                    vec![(seq, entry, result)]
                }));
            }
        }
        if let Some(rest) = deletes.finish() {
            out.push(self.ship_deletes(rest));
        }
        if let Some(rest) = puts.finish() {
            out.push(self.ship_puts(rest));
        }
        out
    }

    fn ship_deletes(&self, entries: Vec<(u64, OutboxEntry)>) -> ShipFuture {
        let (hub, peer) = (self.hub.clone(), self.peer.clone());
        Box::pin(async move { ship_deletes(&hub, &peer, entries).await })
    }

    fn ship_puts(&self, entries: Vec<(u64, OutboxEntry)>) -> ShipFuture {
        let (hub, peer) = (self.hub.clone(), self.peer.clone());
        Box::pin(async move { ship_puts(&hub, &peer, entries).await })
    }

    async fn settle(&mut self, finished: Settled) {
        for (seq, entry, _) in &finished {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(cost(entry));
            self.singles.remove(seq);
        }
        let mut batch_refused = Vec::new();
        for (seq, entry, result) in &finished {
            if batched(entry)
                && !self.solo.contains(seq)
                && matches!(result, Err(PeerError::Failed { status, .. }) if *status != 503)
            {
                batch_refused.push(*seq);
            }
        }
        self.solo.extend(batch_refused);
        settle(
            &self.hub,
            &self.peer,
            &mut self.queue,
            &mut self.known,
            finished,
            &mut self.health,
        )
        .await;
        self.solo.retain(|seq| self.known.contains_key(seq));
    }
}

/// Gathers entries into batches closed at a size or count.
#[derive(Default)]
struct Batcher {
    entries: Vec<(u64, OutboxEntry)>,
    size: usize,
}

impl Batcher {
    /// Adds an entry; answers the batch it closed, if any (the entry starts the next).
    fn add(
        &mut self,
        seq: u64,
        entry: OutboxEntry,
        size: usize,
        max_size: usize,
        max_count: usize,
    ) -> Option<Vec<(u64, OutboxEntry)>> {
        let full =
            !self.entries.is_empty() && (self.size.saturating_add(size) > max_size || self.entries.len() >= max_count);
        let closed = full.then(|| {
            self.size = 0;
            std::mem::take(&mut self.entries)
        });
        self.size = self.size.saturating_add(size);
        self.entries.push((seq, entry));
        closed
    }

    fn finish(self) -> Option<Vec<(u64, OutboxEntry)>> {
        (!self.entries.is_empty()).then_some(self.entries)
    }
}

/// About how much JSON a delete entry becomes on the wire.
fn delete_size(entry: &OutboxEntry) -> usize {
    match &entry.shipment {
        Shipment::Delete {
            bucket,
            key,
            version_id,
            origin,
            ..
        } => 128 + bucket.len() + key.len() * 2 + version_id.as_ref().map_or(0, String::len) + origin.len(),
        Shipment::Newer {
            bucket, key, origin, ..
        } => 128 + bucket.len() + key.len() * 2 + origin.len(),
        _ => 128,
    }
}

async fn settle(
    hub: &Arc<Hub>,
    peer: &str,
    queue: &mut LinkQueue,
    known: &mut HashMap<u64, OutboxEntry>,
    finished: Settled,
    health: &mut LinkHealth,
) {
    let now = now_unix_ms();
    let was_down = health.failing;
    let mut recovered = false;
    let mut done = Vec::new();
    for (seq, entry, result) in finished {
        match &result {
            Ok(Shipped::Delivered) => {
                hub.links.update(peer, |l| {
                    l.reachable = true;
                    l.last_contact_unix_ms = Some(now);
                    l.last_error = None;
                    l.shipped_entries += 1;
                    l.shipped_bytes += entry.bytes;
                });
                recovered = was_down;
                done.push(seq);
            }
            Ok(Shipped::Refused(why)) | Err(PeerError::Refused(why)) => {
                hub.links.update(peer, |l| {
                    l.reachable = true;
                    l.last_contact_unix_ms = Some(now);
                    l.refused_entries += 1;
                });
                tracing::warn!(peer, reason = %why, "transfer refused; dropping it");
                done.push(seq);
            }
            Err(e) => {
                let unreachable = matches!(e, PeerError::Unreachable(_));
                health.failing |= unreachable;
                let message = e.to_string();
                hub.links.update(peer, |l| {
                    if unreachable {
                        l.reachable = false;
                    } else {
                        l.last_contact_unix_ms = Some(now);
                    }
                    l.last_error = Some(message);
                });
                queue.fail(seq, now, rand::random());
            }
        }
    }
    if recovered {
        health.failing = false;
        health.recovered(peer);
        queue.retry_all_now(now);
    }
    if done.is_empty() {
        return;
    }
    let (peer_name, seqs) = (peer.to_owned(), done.clone());
    match hub
        .write(move |txn| {
            for seq in seqs {
                outbox::remove(txn, &peer_name, seq)?;
            }
            Ok(())
        })
        .await
    {
        Ok(()) => {
            for seq in done {
                queue.ack(seq);
                known.remove(&seq);
            }
        }
        Err(e) => {
            tracing::error!(peer, error = %e, "removing delivered outbox entries failed");
            for seq in done {
                queue.fail(seq, now, rand::random());
            }
        }
    }
}

/// Shortest time between two "link works again" lines of one link: under a link cut every few
/// seconds, recoveries come many a second, and each would be a line.
const RECOVERY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Whether deliveries have been failing for want of the peer (the first success after that
/// retries the whole backlog at once), and the rate limit of the line that says so.
#[derive(Debug, Default)]
struct LinkHealth {
    failing: bool,
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl LinkHealth {
    fn recovered(&mut self, peer: &str) {
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < RECOVERY_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        let since = std::mem::take(&mut self.unlogged);
        self.last_logged = Some(now);
        if since == 0 {
            tracing::info!(peer, "link works again: retrying its backlog now");
        } else {
            tracing::info!(
                peer,
                recoveries = since + 1,
                "link works again ({} times in the last {} s): retrying its backlog now",
                since + 1,
                RECOVERY_LOG_INTERVAL.as_secs()
            );
        }
    }
}

type Settled = Vec<(u64, OutboxEntry, Result<Shipped, PeerError>)>;
type ShipFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>;

/// Ships a batch of delete entries in one request.
async fn ship_deletes(hub: &Arc<Hub>, peer: &str, entries: Vec<(u64, OutboxEntry)>) -> Settled {
    let messages: Vec<wire::DeleteMessage> = entries
        .iter()
        .filter_map(|(_, e)| e.shipment.delete_message())
        .collect();
    let result = match hub.peers.endpoint_of(peer) {
        Ok(endpoint) => post_json(&hub.peers, &endpoint, "deletes", &messages).await,
        Err(e) => Err(e),
    };
    entries
        .into_iter()
        .map(|(seq, entry)| (seq, entry, result.clone().map(|()| Shipped::Delivered)))
        .collect()
}

/// Ships a batch of small versions in one call.
async fn ship_puts(hub: &Arc<Hub>, peer: &str, entries: Vec<(u64, OutboxEntry)>) -> Settled {
    let wanted: Vec<VersionRef> = entries
        .iter()
        .filter_map(|(_, e)| match &e.shipment {
            Shipment::Put {
                bucket,
                key,
                hlc,
                origin,
            } => Some(VersionRef {
                bucket: bucket.clone(),
                key: key.clone(),
                hlc: *hlc,
                origin: origin.clone(),
            }),
            _ => None,
        })
        .collect();
    let results = batch::send::send_batch(hub, peer, &wanted, TransferKind::Replication).await;
    entries
        .into_iter()
        .zip(results)
        .map(|((seq, entry), result)| {
            let shipped = result.map(|sent| match sent {
                Sent::Delivered | Sent::Nothing => Shipped::Delivered,
                Sent::Refused(why) => Shipped::Refused(why),
            });
            (seq, entry, shipped)
        })
        .collect()
}

/// POSTs a JSON body to a peer call.
async fn post_json(peers: &Peers, endpoint: &str, route: &str, body: &impl serde::Serialize) -> Result<(), PeerError> {
    let body = serde_json::to_vec(body).map_err(|e| PeerError::Unreachable(e.to_string()))?;
    let path = format!("{}{route}", wire::PREFIX);
    let headers = [("content-type", "application/json".to_owned())];
    peers
        .client
        .call(
            http::Method::POST,
            endpoint,
            &path,
            &headers,
            client::Payload::Bytes(body.into()),
            0,
        )
        .await?;
    Ok(())
}

/// Ships one entry; the policy engine decides every object transfer again at send time,
/// since the policy or a grant may have changed since the write.
async fn ship(hub: &Arc<Hub>, peer: &str, entry: &OutboxEntry) -> Result<Shipped, PeerError> {
    let endpoint = hub.peers.endpoint_of(peer)?;
    match &entry.shipment {
        Shipment::Control { change } => {
            post_json(&hub.peers, &endpoint, "control", change).await?;
            Ok(Shipped::Delivered)
        }
        // Deletes and newer-version notices travel in batches (`ship_deletes`).
        Shipment::Delete { .. } | Shipment::Newer { .. } => {
            Err(PeerError::Unreachable("deletes are shipped in batches".into()))
        }
        Shipment::Put {
            bucket,
            key,
            hlc,
            origin,
        } => match transfer::send_version(hub, peer, bucket, key, *hlc, origin, TransferKind::Replication).await? {
            Sent::Delivered | Sent::Nothing => Ok(Shipped::Delivered),
            Sent::Refused(why) => Ok(Shipped::Refused(why)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recoveries_are_logged_at_most_once_per_interval_and_counted() {
        let mut health = LinkHealth::default();
        for _ in 0..100 {
            health.recovered("peer");
        }
        // The first is logged; the 99 after it within the interval are counted for the next line.
        assert_eq!(health.unlogged, 99);
        let logged = health.last_logged.expect("logged once");
        health.last_logged = Some(logged - RECOVERY_LOG_INTERVAL);
        health.recovered("peer");
        assert_eq!(health.unlogged, 0, "the next line reports the count and resets it");
    }
}
