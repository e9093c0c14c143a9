//! Anti-entropy, repair and tiering: the periodic sweep that makes every hub hold what the
//! policies say it should, whatever happened in between (an outbox lost with a disk, a restored
//! backup, a long partition, a hub lost for good, a policy that now wants more copies, data
//! that aged into its tiering rule).
//!
//! Each round, for every bucket this hub may hold and every peer, the two hubs compare the
//! versions *both* should hold (every hub computes the same placement from the same policy,
//! topology and set of lost hubs): 256 partition digests first, then only the items of the
//! partitions that differ. This hub sends what the peer lacks; the peer's own round sends what
//! this hub lacks. A peer that still has an outbox backlog is skipped: divergence there is
//! expected, and the outbox is already closing it.
//!
//! Deleted versions leave tombstones (see the store), so a repair cannot bring back what was
//! deleted while the repair was in flight.
//!
//! A hub unreachable for longer than `lost_after` is declared lost (a control change every hub
//! learns); placement then passes it over and the next hubs the policy allows receive its
//! copies from the hubs that still hold them. A lost hub that answers again is declared back.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use valley_audit::AuditKind;
use valley_policy::{PlacementPolicy, Topology, TransferKind, place_avoiding};
use valley_store::VersionSummary;
use valley_store::replica::SummaryCursor;

use crate::client::PeerError;
use crate::control::{self, ControlChange};
use crate::hook::now_unix_ms;
use crate::hub::{Hub, HubError};
use crate::outbox;
use crate::transfer::{self, Sent};
use crate::wire::{self, DigestReply, DigestRequest, ItemId, ItemsReply};

/// Partitions of a bucket's key space compared at once.
pub const PARTITIONS: usize = 256;
/// Versions read per page by a pass over a bucket.
const PASS_PAGE: usize = 1024;
/// Versions of this hub held at once while finding what a peer lacks.
const REPAIR_ITEMS_MAX: usize = 65_536;
/// The most versions one digest answer names.
pub(crate) const ITEMS_REPLY_MAX: usize = 262_144;
/// Versions a digest answer names per page: what either side holds of a peer's answer, however
/// many versions the partitions asked for hold.
const ITEMS_PAGE: usize = 16_384;
/// Versions sent at once by one repair.
const REPAIR_CONCURRENCY: usize = 4;
/// Staged chunks whose transfer has not finished in this long are dropped.
const STAGED_MAX_AGE_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy)]
pub struct RepairConfig {
    /// Time between rounds (a round also starts early when woken).
    pub interval: Duration,
    /// Declare a peer lost after this long without contact (`None`: only by the operator).
    pub lost_after: Option<Duration>,
}

/// Where a bucket's versions belong, computed once per (origin, tiered) pair.
pub(crate) struct Placement<'a> {
    topology: &'a Topology,
    policy: &'a PlacementPolicy,
    lost: &'a BTreeSet<String>,
    now_ns: u64,
    cache: HashMap<(String, bool), Vec<String>>,
}

impl<'a> Placement<'a> {
    pub(crate) fn new(topology: &'a Topology, policy: &'a PlacementPolicy, lost: &'a BTreeSet<String>) -> Self {
        Self {
            topology,
            policy,
            lost,
            now_ns: now_unix_ms().saturating_mul(1_000_000),
            cache: HashMap::new(),
        }
    }

    /// Whether the tiering rule applies to a version written at `hlc` (nanoseconds).
    pub(crate) fn tiered(&self, hlc: u64) -> bool {
        self.policy.tiering.as_ref().is_some_and(|t| {
            let age_days = self.now_ns.saturating_sub(hlc) as f64 / 86_400e9;
            age_days >= f64::from(t.after_days)
        })
    }

    /// The hubs that should hold `version`.
    pub(crate) fn targets(&mut self, version: &VersionSummary) -> &[String] {
        let tiered = self.tiered(version.hlc);
        let (topology, policy, lost) = (self.topology, self.policy, self.lost);
        self.cache
            .entry((version.origin.clone(), tiered))
            .or_insert_with(|| place_avoiding(policy, topology, &version.origin, tiered, lost).unwrap_or_default())
    }
}

fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for b in *part {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The partition of a key (all versions of a key fall in one).
pub(crate) fn partition_of(key: &str) -> u16 {
    (fnv64(&[key.as_bytes()]) % PARTITIONS as u64) as u16
}

/// Adds `item` to the order-independent digest of its partition.
fn add_to_digest(digests: &mut [u64], item: &ItemId) {
    let h = fnv64(&[item.key.as_bytes(), &item.hlc.to_be_bytes(), item.origin.as_bytes()]);
    if let Some(d) = digests.get_mut(usize::from(partition_of(&item.key))) {
        *d = d.wrapping_add(h);
    }
}

/// Calls `visit` with each page of `bucket`'s versions, in key order: a pass over a bucket of
/// any size holds one page in memory.
async fn each_page(hub: &Arc<Hub>, bucket: &str, mut visit: impl FnMut(&[VersionSummary])) -> Result<(), HubError> {
    let mut cursor = SummaryCursor::default();
    loop {
        let (page, next) = hub.catalog.version_summaries_page(bucket, &cursor, PASS_PAGE).await?;
        visit(&page);
        match next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

/// What one pass learned of the versions this hub and one peer should both hold: digests and
/// sizes per partition.
struct Tally {
    digests: Vec<u64>,
    counts: Vec<usize>,
    items: usize,
}

impl Tally {
    fn new() -> Self {
        Self {
            digests: vec![0; PARTITIONS],
            counts: vec![0; PARTITIONS],
            items: 0,
        }
    }

    fn add(&mut self, item: &ItemId) {
        add_to_digest(&mut self.digests, item);
        if let Some(c) = self.counts.get_mut(usize::from(partition_of(&item.key))) {
            *c += 1;
        }
        self.items += 1;
    }
}

/// The answer to a digest request.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum DigestAnswer {
    Digests(DigestReply),
    Items(ItemsReply),
}

/// Of `summaries`, the versions that should be at both `me` and `other`, each with whether
/// the tiering rule applies to it.
fn shared_items(
    summaries: &[VersionSummary],
    placement: &mut Placement<'_>,
    me: &str,
    other: &str,
) -> Vec<(ItemId, bool)> {
    let mut shared = Vec::new();
    for s in summaries {
        let targets = placement.targets(s);
        if targets.iter().any(|t| t == me) && targets.iter().any(|t| t == other) {
            let item = ItemId {
                key: s.key.clone(),
                hlc: s.hlc,
                origin: s.origin.clone(),
            };
            shared.push((item, placement.tiered(s.hlc)));
        }
    }
    shared
}

/// Answers a peer's digest request: digests, or the items of the partitions it names (at most
/// [`ITEMS_REPLY_MAX`]: the asker asks for few partitions at a time). One pass over the bucket,
/// a page at a time.
pub(crate) async fn answer_digest(hub: &Arc<Hub>, request: &DigestRequest) -> Result<DigestAnswer, HubError> {
    let policy = hub.policy(&request.bucket).await?;
    let lost = hub.read(control::lost_hubs).await?;
    let mut placement = Placement::new(&hub.topology, &policy, &lost);
    if request.partitions.is_empty() {
        let mut digests = vec![0u64; PARTITIONS];
        each_page(hub, &request.bucket, |page| {
            for (item, _) in shared_items(page, &mut placement, &hub.id, &request.hub) {
                add_to_digest(&mut digests, &item);
            }
        })
        .await?;
        return Ok(DigestAnswer::Digests(DigestReply { digests }));
    }
    let wanted: HashSet<u16> = request.partitions.iter().copied().collect();
    // A page ends at a key boundary (every version of its last key is in it), so the next page
    // can begin after that key. An asker of an earlier release asks for no page: it gets all.
    let page = request
        .page
        .map(|p| usize::try_from(p).unwrap_or(ITEMS_PAGE).clamp(1, ITEMS_PAGE));
    let mut cursor = match &request.after {
        Some(key) => SummaryCursor::after_key(&request.bucket, key),
        None => SummaryCursor::default(),
    };
    let mut items: Vec<ItemId> = Vec::new();
    loop {
        let (summaries, next) = hub
            .catalog
            .version_summaries_page(&request.bucket, &cursor, PASS_PAGE)
            .await?;
        for (item, _) in shared_items(&summaries, &mut placement, &hub.id, &request.hub) {
            if !wanted.contains(&partition_of(&item.key)) {
                continue;
            }
            if let Some(page) = page
                && items.len() >= page
                && items.last().is_some_and(|last| last.key != item.key)
            {
                let more_after = items.last().map(|last| last.key.clone());
                return Ok(DigestAnswer::Items(ItemsReply { items, more_after }));
            }
            if items.len() >= ITEMS_REPLY_MAX {
                return Err(HubError::Invalid(format!(
                    "the partitions asked for hold more than {ITEMS_REPLY_MAX} versions: ask for fewer at a time, or a page at a time"
                )));
            }
            items.push(item);
        }
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    Ok(DigestAnswer::Items(ItemsReply {
        items,
        more_after: None,
    }))
}

/// Takes from `mine` every version `peer` holds of the partitions in `group`, asking a page
/// at a time: what is left is what it lacks.
async fn drop_held(
    hub: &Arc<Hub>,
    peer: &str,
    bucket: &str,
    group: &[u16],
    mine: &mut Vec<(ItemId, bool)>,
) -> Result<(), PeerError> {
    let mut after: Option<String> = None;
    loop {
        let request = DigestRequest {
            bucket: bucket.to_owned(),
            hub: hub.id.clone(),
            partitions: group.to_vec(),
            page: u32::try_from(ITEMS_PAGE).ok(),
            after: after.clone(),
        };
        let held: ItemsReply = hub.peers.post_json(peer, "digest", &request).await?;
        let page: HashSet<ItemId> = held.items.into_iter().collect();
        mine.retain(|(item, _)| !page.contains(item));
        match next_page(peer, after.as_deref(), held.more_after)? {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Where the page after one that ended at `more_after` begins (`None`: that was the last).
/// Each page must end further on than the one before, or a peer could keep this hub asking
/// forever.
fn next_page(peer: &str, after: Option<&str>, more_after: Option<String>) -> Result<Option<String>, PeerError> {
    match more_after {
        None => Ok(None),
        Some(next) if after.is_none_or(|previous| next.as_str() > previous) => Ok(Some(next)),
        Some(next) => Err(PeerError::Refused(format!(
            "{peer}'s digest pages do not advance (a page after {after:?} ends at {next:?})"
        ))),
    }
}

/// A hash of every control record held here: two hubs with the same hash agree on policies,
/// grants and hub states.
pub(crate) async fn control_digest(hub: &Hub) -> Result<String, HubError> {
    // Records are compared by their stamps: last-writer-wins makes equal stamps equal
    // records (except a grant's usage counts, which each hub keeps for itself).
    let changes = hub.read(control::all_changes).await?;
    let stamps: Vec<String> = changes.iter().map(ControlChange::identity).collect();
    Ok(format!("{:016x}", fnv64(&[stamps.join("\n").as_bytes()])))
}

pub fn start(hub: &Arc<Hub>, config: RepairConfig) {
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut unreachable_since: HashMap<String, u64> = HashMap::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep(config.interval) => {}
                () = hub.repair_wake.notified() => {
                    // Let a burst of changes settle into one round.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            check_peers(&hub, config, &mut unreachable_since).await;
            if let Err(e) = round(&hub).await {
                tracing::warn!(error = %e, "repair round failed");
            }
        }
    });
}

/// Says hello to every peer: keeps reachability current even on idle links, declares lost
/// the peers silent for too long, and back the lost ones that answer again.
async fn check_peers(hub: &Arc<Hub>, config: RepairConfig, unreachable_since: &mut HashMap<String, u64>) {
    let lost = hub.read(control::lost_hubs).await.unwrap_or_default();
    let hellos = futures::future::join_all(hub.peers.ids().into_iter().map(|peer| {
        let hub = hub.clone();
        async move {
            let answer = hub.peers.get(&peer, "hello").await;
            (peer, answer)
        }
    }))
    .await;
    let now = now_unix_ms();
    for (peer, answer) in hellos {
        match answer {
            Ok(_) => {
                unreachable_since.remove(&peer);
                hub.links.update(&peer, |l| {
                    l.reachable = true;
                    l.last_contact_unix_ms = Some(now);
                });
                if lost.contains(&peer) {
                    let reason = "answered again".to_owned();
                    if let Err(e) = hub.set_hub_state(&peer, false, reason).await {
                        tracing::error!(peer, error = %e, "declaring a hub back failed");
                    }
                }
            }
            Err(e) => {
                let since = *unreachable_since.entry(peer.clone()).or_insert(now);
                hub.links.update(&peer, |l| {
                    l.reachable = false;
                    l.last_error = Some(e.to_string());
                });
                if let Some(after) = config.lost_after
                    && !lost.contains(&peer)
                    && now.saturating_sub(since) >= u64::try_from(after.as_millis()).unwrap_or(u64::MAX)
                {
                    let reason = format!("no contact for {} s", now.saturating_sub(since) / 1000);
                    if let Err(e) = hub.set_hub_state(&peer, true, reason).await {
                        tracing::error!(peer, error = %e, "declaring a hub lost failed");
                    }
                }
            }
        }
    }
}

/// One anti-entropy and tiering pass over every bucket.
async fn round(hub: &Arc<Hub>) -> Result<(), HubError> {
    sync_control(hub).await;
    let lost = hub.read(control::lost_hubs).await?;
    let Some(me) = hub.topology.hub(&hub.id) else {
        return Ok(());
    };
    let peers: Vec<String> = hub.peers.ids().into_iter().filter(|p| !lost.contains(p)).collect();
    let idle_peers: Vec<String> = {
        let peers = peers.clone();
        hub.read(move |txn| {
            let mut idle = Vec::new();
            for p in peers {
                if outbox::pending(txn, &p, 1)?.is_empty() {
                    idle.push(p);
                }
            }
            Ok(idle)
        })
        .await?
    };
    for (bucket, policy) in hub.policies().await? {
        let mut placement = Placement::new(&hub.topology, &policy, &lost);
        if !policy.allows(me) {
            hand_off(hub, &bucket, &mut placement, HandOff::Stranded).await?;
            continue;
        }
        if !idle_peers.is_empty() {
            // One pass tallies what every idle peer should share with this hub.
            let mut tallies: Vec<Tally> = idle_peers.iter().map(|_| Tally::new()).collect();
            each_page(hub, &bucket, |page| {
                for (peer, tally) in idle_peers.iter().zip(tallies.iter_mut()) {
                    for (item, _) in shared_items(page, &mut placement, &hub.id, peer) {
                        tally.add(&item);
                    }
                }
            })
            .await?;
            for (peer, tally) in idle_peers.iter().zip(&tallies) {
                if tally.items == 0 {
                    continue;
                }
                match repair_pair(hub, peer, &bucket, tally, &mut placement).await {
                    Ok(0) => {}
                    Ok(sent) => {
                        hub.links.update(peer, |l| l.repaired_versions += sent as u64);
                        let detail =
                            format!("anti-entropy: sent {sent} missing versions of bucket {bucket:?} to {peer}");
                        tracing::info!("{detail}");
                        hub.auditor
                            .record(
                                hub.auditor
                                    .event(AuditKind::Transfer, detail)
                                    .with_bucket(&bucket)
                                    .with_peer(peer),
                            )
                            .await;
                    }
                    Err(e) => tracing::debug!(peer, bucket, error = %e, "anti-entropy with peer failed"),
                }
            }
        }
        if policy.tiering.is_some() {
            hand_off(hub, &bucket, &mut placement, HandOff::Tiering).await?;
        }
    }
    if let Err(e) = hub.catalog.expire_staged(STAGED_MAX_AGE_MS).await {
        tracing::warn!(error = %e, "expiring staged chunks failed");
    }
    Ok(())
}

/// Compares with `peer` the versions both should hold (tallied in `ours`) and sends what it
/// lacks; returns how many versions went. The partitions that differ are settled a group at a
/// time, each group holding at most about [`REPAIR_ITEMS_MAX`] of this hub's versions (one
/// more pass over the bucket per group), so a peer that lacks a million versions costs passes,
/// not memory.
async fn repair_pair(
    hub: &Arc<Hub>,
    peer: &str,
    bucket: &str,
    ours: &Tally,
    placement: &mut Placement<'_>,
) -> Result<usize, PeerError> {
    let local = |e: HubError| PeerError::Unreachable(format!("local store: {e}"));
    let request = DigestRequest {
        bucket: bucket.to_owned(),
        hub: hub.id.clone(),
        partitions: Vec::new(),
        page: None,
        after: None,
    };
    let theirs: DigestReply = hub.peers.post_json(peer, "digest", &request).await?;
    let differing: Vec<u16> = (0..PARTITIONS)
        .filter(|p| theirs.digests.get(*p) != ours.digests.get(*p))
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    let mut sent = 0;
    for group in group_partitions(&differing, &ours.counts, REPAIR_ITEMS_MAX) {
        let wanted: HashSet<u16> = group.iter().copied().collect();
        let mut mine: Vec<(ItemId, bool)> = Vec::new();
        each_page(hub, bucket, |page| {
            for (item, tiered) in shared_items(page, placement, &hub.id, peer) {
                if wanted.contains(&partition_of(&item.key)) {
                    mine.push((item, tiered));
                }
            }
        })
        .await
        .map_err(local)?;
        if mine.is_empty() {
            continue;
        }
        drop_held(hub, peer, bucket, &group, &mut mine).await?;
        let results: Vec<Result<Sent, PeerError>> =
            futures::stream::iter(mine)
                .map(|(item, tiered)| {
                    let (hub, peer, bucket) = (hub.clone(), peer.to_owned(), bucket.to_owned());
                    let kind = if tiered {
                        TransferKind::Tiering
                    } else {
                        TransferKind::Replication
                    };
                    async move {
                        transfer::send_version(&hub, &peer, &bucket, &item.key, item.hlc, &item.origin, kind).await
                    }
                })
                .buffer_unordered(REPAIR_CONCURRENCY)
                .collect()
                .await;
        for r in results {
            match r {
                Ok(Sent::Delivered) => sent += 1,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(sent)
}

/// `partitions` in groups of at most `max` versions by `counts` (a partition larger than that
/// is a group of its own).
fn group_partitions(partitions: &[u16], counts: &[usize], max: usize) -> Vec<Vec<u16>> {
    let mut groups: Vec<Vec<u16>> = Vec::new();
    let mut in_group = 0usize;
    for &p in partitions {
        let count = counts.get(usize::from(p)).copied().unwrap_or(0);
        match groups.last_mut() {
            Some(group) if in_group + count <= max => group.push(p),
            _ => {
                groups.push(vec![p]);
                in_group = 0;
            }
        }
        in_group += count;
    }
    groups
}

/// Why copies leave this hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandOff {
    /// They aged into the bucket's tiering rule and this hub is no longer among their hubs.
    Tiering,
    /// The bucket's policy no longer allows this hub at all.
    Stranded,
}

/// Moves copies off this hub once they are no longer meant to be here: each is sent to every
/// hub that should now hold it, and dropped here only once all of them have it. A copy with
/// nowhere to go (its new hubs down, lost, or refusing it) stays, and a stranded one is shown by
/// `valley status` and `/metrics` until it can move or an operator purges it: no policy change,
/// mistaken or forged, removes the last copies of anything.
async fn hand_off(hub: &Arc<Hub>, bucket: &str, placement: &mut Placement<'_>, why: HandOff) -> Result<(), HubError> {
    let mut cursor = SummaryCursor::default();
    loop {
        let (page, next) = hub.catalog.version_summaries_page(bucket, &cursor, PASS_PAGE).await?;
        hand_off_page(hub, bucket, &page, placement, why).await;
        match next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

async fn hand_off_page(
    hub: &Arc<Hub>,
    bucket: &str,
    summaries: &[VersionSummary],
    placement: &mut Placement<'_>,
    why: HandOff,
) {
    let kind = match why {
        HandOff::Tiering => TransferKind::Tiering,
        HandOff::Stranded => TransferKind::Migration,
    };
    for s in summaries {
        if why == HandOff::Tiering && !placement.tiered(s.hlc) {
            continue;
        }
        let targets = placement.targets(s).to_vec();
        if targets.is_empty() || targets.contains(&hub.id) {
            continue;
        }
        let mut all_hold = true;
        for t in &targets {
            match transfer::send_version(hub, t, bucket, &s.key, s.hlc, &s.origin, kind).await {
                Ok(Sent::Delivered | Sent::Nothing) => {}
                Ok(Sent::Refused(_)) | Err(_) => all_hold = false,
            }
        }
        if !all_hold {
            continue;
        }
        let stamp = valley_store::keys::Stamp {
            hlc: s.hlc,
            origin_tag: valley_store::keys::origin_tag(&s.origin),
        };
        match hub.catalog.drop_local_copy(bucket, &s.key, stamp).await {
            Ok(true) => {
                let what = match why {
                    HandOff::Tiering => "tiering",
                    HandOff::Stranded => "stranded by the policy",
                };
                hub.auditor
                    .record(
                        hub.auditor
                            .event(
                                AuditKind::Transfer,
                                format!(
                                    "{what}: copy of {:?} held at [{}]; dropped here",
                                    s.key,
                                    targets.join(", ")
                                ),
                            )
                            .with_bucket(bucket)
                            .with_key(&s.key)
                            .with_allowed(true)
                            .with_bytes(s.size),
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(bucket, key = s.key, error = %e, "dropping a copy handed off failed"),
        }
    }
}

/// Sends every control record to each peer whose control digest differs from ours. Records
/// apply last-writer-wins, so sending ours never overrides a newer one; the peer's own round
/// sends us what we lack.
async fn sync_control(hub: &Arc<Hub>) {
    let Ok(ours) = control_digest(hub).await else { return };
    let Ok(changes) = hub.read(control::all_changes).await else {
        return;
    };
    for peer in hub.peers.ids() {
        let Ok(theirs) = hub.peers.get(&peer, "control-digest").await else {
            continue;
        };
        if theirs.as_ref() == ours.as_bytes() {
            continue;
        }
        for change in &changes {
            if let Err(e) = hub.peers.post_json::<wire::Outcome>(&peer, "control", change).await {
                tracing::debug!(peer, error = %e, "control sync failed");
                break;
            }
        }
    }
}

#[cfg(test)]
mod grouping_tests {
    use super::group_partitions;

    #[test]
    fn differing_partitions_are_settled_in_groups_bounded_by_their_versions() {
        let mut counts = vec![0usize; super::PARTITIONS];
        for (p, c) in [(1, 40), (2, 30), (3, 50), (4, 200), (5, 10)] {
            counts[p] = c;
        }
        assert_eq!(
            group_partitions(&[1, 2, 3, 4, 5], &counts, 100),
            vec![vec![1, 2], vec![3], vec![4], vec![5]]
        );
        assert_eq!(group_partitions(&[1, 2, 5], &counts, 1000), vec![vec![1, 2, 5]]);
        assert!(group_partitions(&[], &counts, 100).is_empty());
    }
}

#[cfg(test)]
mod digest_page_tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use valley_policy::{PlacementPolicy, Topology};
    use valley_store::record::{ObjectData, ObjectVersion, Versioning};
    use valley_store::{Catalog, MemBlobs, MemMeta, MetaStore};

    use super::{DigestAnswer, answer_digest};
    use crate::client::PeerError;
    use crate::control::{self, PolicyRecord};
    use crate::hub::Hub;
    use crate::wire::{DigestRequest, ItemId};

    const BUCKET: &str = "b";

    fn topology() -> Arc<Topology> {
        let hub = |id: &str, port: u16| {
            format!(
                "[[hub]]\nid = \"{id}\"\njurisdiction = \"CN\"\nrole = \"east\"\nlat = 30.0\nlon = 110.0\n\
                 failure_domain = \"{id}\"\npeer_endpoint = \"http://127.0.0.1:{port}\"\n\n"
            )
        };
        Arc::new(Topology::parse(&(hub("hub-a", 1) + &hub("hub-b", 2))).expect("topology"))
    }

    /// A hub holding `keys` keys of a versioned bucket, key `i` with `1 + i % 3` versions.
    async fn hub_with(keys: usize) -> (Arc<Hub>, std::path::PathBuf) {
        let topology = topology();
        let meta = Arc::new(MemMeta::new());
        let wake = Arc::new(tokio::sync::Notify::new());
        let catalog = Catalog::new(meta.clone(), Arc::new(MemBlobs::new()))
            .with_origin("hub-a")
            .with_hook(crate::outbox_hook("hub-a", topology.clone(), wake.clone()));
        catalog.create_bucket(BUCKET, None).await.unwrap();
        catalog
            .update_bucket(BUCKET, |b| b.versioning = Versioning::Enabled)
            .await
            .unwrap();
        let record = PolicyRecord {
            policy: PlacementPolicy {
                jurisdictions: vec!["CN".into()],
                copies: 2,
                ..PlacementPolicy::default()
            },
            hlc: 1,
            origin: "hub-a".into(),
            deleted: false,
        };
        meta.write(Box::new(move |txn| {
            control::put_policy(txn, BUCKET, &record).map(|_| ())
        }))
        .unwrap();
        for i in 0..keys {
            for _ in 0..=(i % 3) {
                let version = ObjectVersion {
                    version_id: None,
                    hlc: 0,
                    origin: String::new(),
                    delete_marker: false,
                    size: 1,
                    etag: String::new(),
                    data: ObjectData::Inline(vec![7]),
                    headers: Default::default(),
                    checksums: Default::default(),
                    tags: Vec::new(),
                    part_sizes: Vec::new(),
                    part_checksums: Vec::new(),
                    acl: None,
                    sealing: None,
                };
                catalog
                    .put_object(BUCKET, &format!("k{i:04}"), version, None)
                    .await
                    .unwrap();
            }
        }
        let dir = std::env::temp_dir().join(format!("valley-digest-pages-{}-{keys}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hub = Hub::open("hub-a", topology, catalog, b"secret".to_vec(), None, wake, &dir).unwrap();
        (Arc::new(hub), dir)
    }

    fn request(partitions: &[u16], page: Option<u32>, after: Option<String>) -> DigestRequest {
        DigestRequest {
            bucket: BUCKET.into(),
            hub: "hub-b".into(),
            partitions: partitions.to_vec(),
            page,
            after,
        }
    }

    async fn items(hub: &Arc<Hub>, request: &DigestRequest) -> (Vec<ItemId>, Option<String>) {
        match answer_digest(hub, request).await.unwrap() {
            DigestAnswer::Items(reply) => (reply.items, reply.more_after),
            DigestAnswer::Digests(_) => panic!("items were asked for"),
        }
    }

    /// An asker follows a peer's pages only forward: a page ending where the last one did, or
    /// before it, is refused (a hostile peer cannot keep a hub asking forever).
    #[test]
    fn an_asker_follows_only_pages_that_advance() {
        assert_eq!(super::next_page("p", None, None).unwrap(), None);
        assert_eq!(
            super::next_page("p", None, Some("k1".into())).unwrap().as_deref(),
            Some("k1")
        );
        assert_eq!(
            super::next_page("p", Some("k1"), Some("k2".into())).unwrap().as_deref(),
            Some("k2")
        );
        assert_eq!(super::next_page("p", Some("k2"), None).unwrap(), None);
        for stuck in ["k2", "k1", ""] {
            let refused = super::next_page("p", Some("k2"), Some(stuck.into()));
            assert!(
                matches!(&refused, Err(PeerError::Refused(why)) if why.contains("do not advance")),
                "{stuck:?}: {refused:?}"
            );
        }
    }

    /// Paged answers hold exactly what one answer holds, each page ends with every version of
    /// its last key, and an answer without a page (an earlier release's asker) is whole.
    #[tokio::test]
    async fn item_pages_cover_the_answer_and_end_at_key_boundaries() {
        let (hub, dir) = hub_with(300).await;
        let partitions: Vec<u16> = (0..super::PARTITIONS as u16).filter(|p| p % 2 == 0).collect();
        let (whole, more) = items(&hub, &request(&partitions, None, None)).await;
        assert!(more.is_none(), "an answer without a page is whole");
        assert!(whole.len() > 100, "the partitions hold versions: {}", whole.len());
        let mut paged = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (page, more) = items(&hub, &request(&partitions, Some(7), after.clone())).await;
            pages += 1;
            assert!(!page.is_empty());
            assert!(page.len() <= 7 + 2, "a page holds its size and the rest of one key");
            if let Some(last) = &more {
                assert_eq!(&page.last().unwrap().key, last);
                assert!(after.as_ref().is_none_or(|a| last > a), "pages advance");
            }
            paged.extend(page);
            match more {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        assert!(pages > 10, "{pages} pages");
        assert_eq!(paged, whole, "the pages hold what one answer holds, once each");
        let keys: BTreeSet<&str> = whole.iter().map(|i| i.key.as_str()).collect();
        for key in keys {
            let versions = |list: &[ItemId]| list.iter().filter(|i| i.key == key).count();
            assert_eq!(versions(&paged), versions(&whole), "{key}");
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
