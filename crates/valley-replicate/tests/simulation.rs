//! Seeded simulation of the replicator core: hubs write, deliver from durable outboxes through
//! a network that drops, duplicates, reorders and delays messages, and crash (losing all
//! in-memory link state). After the faults stop, every replica must converge on the
//! last-writer-wins value of every key, and every outbox must drain.
//!
//! Each run prints its seed on failure; replay one with `VALLEY_SIM_SEED=<seed>`.

// Hubs are addressed by index throughout, as the messages name them.
#![allow(clippy::needless_range_loop)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use valley_replicate::core::{Backoff, LinkQueue, supersedes};

const HUBS: usize = 4;
const KEYS: u64 = 12;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    hlc: u64,
    origin: usize,
    value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    Deliver {
        from: usize,
        to: usize,
        seq: u64,
        key: u64,
        version: Version,
    },
    Ack {
        from: usize,
        to: usize,
        seq: u64,
    },
}

struct Hub {
    replica: BTreeMap<u64, Version>,
    /// Durable: per peer, seq → (key, version). Survives crashes.
    outbox: Vec<BTreeMap<u64, (u64, Version)>>,
    /// In memory: lost on crash.
    queues: Vec<LinkQueue>,
    next_seq: u64,
    clock: u64,
}

fn new_queue() -> LinkQueue {
    LinkQueue::new(
        3,
        Backoff {
            base_ms: 20,
            max_ms: 400,
        },
    )
}

impl Hub {
    fn new() -> Self {
        Self {
            replica: BTreeMap::new(),
            outbox: vec![BTreeMap::new(); HUBS],
            queues: (0..HUBS).map(|_| new_queue()).collect(),
            next_seq: 1,
            clock: 0,
        }
    }

    fn apply(&mut self, key: u64, v: Version) {
        self.clock = self.clock.max(v.hlc);
        let wins = match self.replica.get(&key) {
            None => true,
            Some(old) => supersedes((v.hlc, &v.origin.to_string()), (old.hlc, &old.origin.to_string())),
        };
        if wins {
            self.replica.insert(key, v);
        }
    }

    fn crash(&mut self, now: u64) {
        self.queues = (0..HUBS).map(|_| new_queue()).collect();
        for (peer, outbox) in self.outbox.iter().enumerate() {
            for seq in outbox.keys() {
                self.queues[peer].enqueue(*seq, now);
            }
        }
    }
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hubs: Vec<Hub> = (0..HUBS).map(|_| Hub::new()).collect();
    let mut network: BinaryHeap<Reverse<(u64, u64, Message)>> = BinaryHeap::new();
    let mut tiebreak = 0u64;
    let faulty_until = 3_000u64;
    let (drop_p, dup_p) = (rng.random_range(0.0..0.4), rng.random_range(0.0..0.3));
    let mut now = 0u64;
    while now < 60_000 {
        let faulty = now < faulty_until;
        // Writes and crashes happen only while faulty, so the tail checks convergence.
        if faulty && rng.random_bool(0.3) {
            let h = rng.random_range(0..HUBS);
            let key = rng.random_range(0..KEYS);
            let hub = &mut hubs[h];
            hub.clock += 1 + rng.random_range(0..3);
            let version = Version {
                hlc: hub.clock,
                origin: h,
                value: rng.random(),
            };
            hub.apply(key, version.clone());
            for peer in (0..HUBS).filter(|p| *p != h) {
                let seq = hub.next_seq;
                hub.next_seq += 1;
                hub.outbox[peer].insert(seq, (key, version.clone()));
                hub.queues[peer].enqueue(seq, now);
            }
        }
        if faulty && rng.random_bool(0.01) {
            let h = rng.random_range(0..HUBS);
            hubs[h].crash(now);
        }
        // Send what is due.
        for from in 0..HUBS {
            for to in (0..HUBS).filter(|p| *p != from) {
                for seq in hubs[from].queues[to].take_due(now) {
                    let (key, version) = hubs[from].outbox[to][&seq].clone();
                    let msg = Message::Deliver {
                        from,
                        to,
                        seq,
                        key,
                        version,
                    };
                    let copies = if faulty && rng.random_bool(dup_p) { 2 } else { 1 };
                    let mut delivered = false;
                    for _ in 0..copies {
                        if faulty && rng.random_bool(drop_p) {
                            continue;
                        }
                        delivered = true;
                        tiebreak += 1;
                        let delay = rng.random_range(1..if faulty { 200 } else { 20 });
                        network.push(Reverse((now + delay, tiebreak, msg.clone())));
                    }
                    if !delivered {
                        // The sender notices through its request timeout.
                        let entropy = rng.random();
                        hubs[from].queues[to].fail(seq, now + 50, entropy);
                    }
                }
            }
        }
        // Deliver what arrives now.
        while let Some(Reverse((at, _, _))) = network.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, msg))) = network.pop() else {
                break;
            };
            match msg {
                Message::Deliver {
                    from,
                    to,
                    seq,
                    key,
                    version,
                } => {
                    hubs[to].apply(key, version);
                    let ack = Message::Ack {
                        from: to,
                        to: from,
                        seq,
                    };
                    if !(faulty && rng.random_bool(drop_p)) {
                        tiebreak += 1;
                        network.push(Reverse((now + rng.random_range(1..50), tiebreak, ack)));
                    } else {
                        let entropy = rng.random();
                        hubs[from].queues[to].fail(seq, now + 50, entropy);
                    }
                }
                Message::Ack { from, to, seq } => {
                    hubs[to].outbox[from].remove(&seq);
                    hubs[to].queues[from].ack(seq);
                }
            }
        }
        now += 10;
    }
    // Converged: every outbox drained and every replica holds the global winner.
    let mut winners: BTreeMap<u64, Version> = BTreeMap::new();
    for hub in &hubs {
        for (key, v) in &hub.replica {
            let e = winners.entry(*key).or_insert_with(|| v.clone());
            if (v.hlc, v.origin) > (e.hlc, e.origin) {
                *e = v.clone();
            }
        }
    }
    for (i, hub) in hubs.iter().enumerate() {
        let left: usize = hub.outbox.iter().map(BTreeMap::len).sum();
        assert_eq!(left, 0, "seed {seed}: hub {i} still has {left} outbox entries");
        assert_eq!(hub.replica, winners, "seed {seed}: hub {i} diverged");
    }
}

#[test]
fn replicas_converge_under_drops_duplicates_reordering_and_crashes() {
    if let Ok(seed) = std::env::var("VALLEY_SIM_SEED") {
        let seed: u64 = seed.parse().expect("VALLEY_SIM_SEED is a number");
        run(seed);
        return;
    }
    for seed in 0..150 {
        let result = std::panic::catch_unwind(|| run(seed));
        if result.is_err() {
            panic!("simulation failed; replay with VALLEY_SIM_SEED={seed}");
        }
    }
}
