//! Per-link workers: each ships its peer's outbox entries, oldest first, a window at a time,
//! retrying failures with jittered exponential backoff, and removes an entry only once the peer
//! acknowledged it or the policy engine refused it (refusals are audited).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use valley_policy::TransferKind;

use crate::client::{self, PeerError};
use crate::core::{Backoff, LinkQueue};
use crate::hook::now_unix_ms;
use crate::hub::Hub;
use crate::outbox::{self, OutboxEntry, Shipment};
use crate::transfer::{self, Sent};
use crate::wire;

/// Entries in flight on one link at once: enough to fill a long, fat pipe with small objects
/// (128 objects of 64 KiB in flight fill a 200 ms link at 40 MB/s).
const LINK_WINDOW: usize = 128;
/// Outbox entries loaded per scan.
const OUTBOX_SCAN: usize = 4096;
/// Longest sleep between outbox scans (new entries also wake the worker at once).
const IDLE_RESCAN: Duration = Duration::from_millis(500);
const BACKOFF: Backoff = Backoff {
    base_ms: 250,
    max_ms: 30_000,
};

/// Starts one worker per peer.
pub fn start(hub: &Arc<Hub>) {
    for peer in hub.peers() {
        let hub = hub.clone();
        tokio::spawn(async move { run(hub, peer).await });
    }
}

enum Shipped {
    Delivered,
    /// Refused by the policy engine (here or at the peer): the entry is dropped.
    Refused(String),
}

async fn run(hub: Arc<Hub>, peer: String) {
    let mut queue = LinkQueue::new(LINK_WINDOW, BACKOFF);
    let mut known: HashMap<u64, OutboxEntry> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    // Only entries newer than the last scan are read: a worker re-reading its whole backlog
    // after every delivery would cost time quadratic in the backlog.
    let mut scan_from = 0u64;
    let mut scan_now = true;
    // Whether deliveries have been failing for want of the peer: the first success after that
    // retries the whole backlog at once.
    let mut health = LinkHealth::default();
    loop {
        let now = now_unix_ms();
        if scan_now {
            let scan = {
                let peer = peer.clone();
                hub.read(move |txn| outbox::pending_from(txn, &peer, scan_from, OUTBOX_SCAN))
                    .await
            };
            match scan {
                Ok(entries) => {
                    // A full batch means more are waiting: read on at the next turn.
                    scan_now = entries.len() == OUTBOX_SCAN;
                    for (seq, entry) in entries {
                        queue.enqueue(seq, now);
                        known.entry(seq).or_insert(entry);
                        scan_from = scan_from.max(seq + 1);
                    }
                }
                Err(e) => {
                    scan_now = false;
                    tracing::error!(peer, error = %e, "reading the outbox failed");
                }
            }
            let (bytes, oldest) = known
                .values()
                .fold((0u64, u64::MAX), |(b, o), e| (b + e.bytes, o.min(e.created_unix_ms)));
            let backlog = known.len() as u64;
            hub.update_link(&peer, |l| {
                l.backlog_entries = backlog;
                l.backlog_bytes = bytes;
                l.lag_seconds = if backlog == 0 {
                    0.0
                } else {
                    now.saturating_sub(oldest) as f64 / 1000.0
                };
            });
        }
        let mut deletes = Vec::new();
        for seq in queue.take_due(now) {
            let Some(entry) = known.get(&seq).cloned() else {
                queue.ack(seq);
                continue;
            };
            if matches!(entry.shipment, Shipment::Delete { .. } | Shipment::Newer { .. }) {
                deletes.push((seq, entry));
                continue;
            }
            let hub = hub.clone();
            let peer = peer.clone();
            in_flight.push(Box::pin(async move {
                let result = ship(&hub, &peer, &entry).await;
                vec![(seq, entry, result)]
            }) as ShipFuture);
        }
        // Deletes (and overwrite notices) are small and many: one request and one commit at
        // the peer for a whole batch.
        if !deletes.is_empty() {
            let hub = hub.clone();
            let peer = peer.clone();
            in_flight.push(Box::pin(async move { ship_deletes(&hub, &peer, deletes).await }) as ShipFuture);
        }
        let wait = queue.next_due_ms().map_or(IDLE_RESCAN, |due| {
            Duration::from_millis(due.saturating_sub(now)).min(IDLE_RESCAN)
        });
        tokio::select! {
            Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                // Settle every finished delivery at once: one commit removes them all from the
                // outbox, instead of one commit (and fsync) per delivery.
                let mut finished = first;
                while let Some(Some(more)) = in_flight.next().now_or_never() {
                    finished.extend(more);
                }
                settle(&hub, &peer, &mut queue, &mut known, finished, &mut health).await;
            }
            () = hub.wake.notified() => scan_now = true,
            () = tokio::time::sleep(wait) => scan_now = true,
        }
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
                hub.update_link(peer, |l| {
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
                hub.update_link(peer, |l| {
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
                hub.update_link(peer, |l| {
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
                outbox::remove(txn, &peer_name, seq);
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
    let endpoint = hub.topology.hub(peer).and_then(|h| h.peer_endpoint.clone());
    let result = match endpoint {
        Some(endpoint) => post_json(hub, &endpoint, "deletes", &messages).await,
        None => Err(PeerError::Unreachable(format!("hub {peer} has no peer endpoint"))),
    };
    entries
        .into_iter()
        .map(|(seq, entry)| (seq, entry, result.clone().map(|()| Shipped::Delivered)))
        .collect()
}

/// POSTs a JSON body to a peer call.
async fn post_json(hub: &Hub, endpoint: &str, route: &str, body: &impl serde::Serialize) -> Result<(), PeerError> {
    let body = serde_json::to_vec(body).map_err(|e| PeerError::Unreachable(e.to_string()))?;
    let path = format!("{}{route}", wire::PREFIX);
    let headers = [("content-type", "application/json".to_owned())];
    hub.client
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
    let endpoint = hub
        .topology
        .hub(peer)
        .and_then(|h| h.peer_endpoint.clone())
        .ok_or_else(|| PeerError::Unreachable(format!("hub {peer} has no peer endpoint")))?;
    match &entry.shipment {
        Shipment::Control { change } => {
            post_json(hub, &endpoint, "control", change).await?;
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
