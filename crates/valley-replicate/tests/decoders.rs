//! Property tests of every decoder of the peer protocol: what a hub reads from a socket before
//! it trusts anything. Arbitrary and mutated input must give an error or a value, never a
//! panic, a hang or an unbounded allocation; valid encodings must round-trip.

use md5::{Digest, Md5};
use proptest::prelude::*;
use valley_policy::{Basis, Grant, PlacementPolicy, Role, Tiering};
use valley_replicate::control::{ControlChange, GrantRecord, HubStateRecord, PolicyRecord, VersioningRecord};
use valley_replicate::wire::{
    self, DeleteMessage, DigestReply, DigestRequest, ExportUse, GrantUse, Hello, Inventory, ItemsReply,
};
use valley_replicate::wire::{EtagCheck, Outcome, StageState};
use valley_store::BlobId;
use valley_store::record::{BlobRef, Checksums, ObjectData, ObjectHeaders, ObjectVersion, Versioning};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Any string, including controls, NULs and non-ASCII (serde_json must escape them).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9._/-]{0,24}",
        1 => any::<String>(),
        1 => proptest::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn checksums() -> impl Strategy<Value = Checksums> {
    (
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        any::<bool>(),
    )
        .prop_map(|(crc32, crc32c, sha1, sha256, crc64nvme, composite)| Checksums {
            crc32,
            crc32c,
            sha1,
            sha256,
            crc64nvme,
            composite,
        })
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((text(), text()), 0..4)
}

fn headers() -> impl Strategy<Value = ObjectHeaders> {
    (
        (opt_text(), opt_text(), opt_text(), opt_text(), opt_text()),
        (opt_text(), opt_text(), opt_text(), pairs()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, content_disposition, content_language, cache_control),
                (expires, website_redirect_location, storage_class, user_metadata),
            )| ObjectHeaders {
                content_type,
                content_encoding,
                content_disposition,
                content_language,
                cache_control,
                expires,
                website_redirect_location,
                storage_class,
                user_metadata,
            },
        )
}

fn data() -> impl Strategy<Value = ObjectData> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(ObjectData::Inline),
        proptest::collection::vec(
            ("[0-9a-f]{32}", any::<u64>()).prop_map(|(id, size)| BlobRef { id: BlobId(id), size }),
            0..4
        )
        .prop_map(ObjectData::Blobs),
        Just(ObjectData::InlineApart),
    ]
}

fn version() -> impl Strategy<Value = ObjectVersion> {
    (
        (opt_text(), any::<u64>(), text(), any::<bool>(), any::<u64>(), text()),
        (data(), headers(), checksums(), pairs()),
        (
            proptest::collection::vec(any::<u64>(), 0..6),
            proptest::collection::vec(checksums(), 0..3),
            opt_text(),
        ),
    )
        .prop_map(
            |(
                (version_id, hlc, origin, delete_marker, size, etag),
                (data, headers, checksums, tags),
                (part_sizes, part_checksums, acl),
            )| ObjectVersion {
                version_id,
                hlc,
                origin,
                delete_marker,
                size,
                etag,
                data,
                headers,
                checksums,
                tags,
                part_sizes,
                part_checksums,
                acl,
                sealing: None,
            },
        )
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::East), Just(Role::West)]
}

fn policy() -> impl Strategy<Value = PlacementPolicy> {
    (
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec(text(), 0..3),
        any::<u32>(),
        any::<bool>(),
        opt_text(),
        proptest::collection::vec(text(), 0..3),
        proptest::option::of((any::<u32>(), role()).prop_map(|(after_days, role)| Tiering { after_days, role })),
    )
        .prop_map(
            |(jurisdictions, hubs, copies, distinct_failure_domains, home_hub, classifications, tiering)| {
                PlacementPolicy {
                    jurisdictions,
                    hubs,
                    copies,
                    distinct_failure_domains,
                    home_hub,
                    classifications,
                    tiering,
                    ..PlacementPolicy::default()
                }
            },
        )
}

fn grant() -> impl Strategy<Value = Grant> {
    (
        (text(), text(), text(), proptest::collection::vec(text(), 0..3)),
        (proptest::sample::select(Basis::ALL.to_vec()), text(), any::<i64>()),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (id, from, to, classifications),
                (basis, reference, expires),
                (volume_cap_bytes, volume_cap_individuals, revoked, usage_year, used_bytes, used_individuals),
            )| Grant {
                tenant: format!("t-{}", id.len()),
                id,
                from,
                to,
                classifications,
                basis,
                companions: if reference.len() % 2 == 0 {
                    Default::default()
                } else {
                    [("piia".to_owned(), reference.clone())].into()
                },
                reference,
                expires,
                volume_cap_bytes,
                volume_cap_individuals,
                revoked,
                usage_year,
                used_bytes,
                used_individuals,
            },
        )
}

fn control_change() -> impl Strategy<Value = ControlChange> {
    let versioning = prop_oneof![
        Just(Versioning::Unversioned),
        Just(Versioning::Enabled),
        Just(Versioning::Suspended)
    ];
    prop_oneof![
        (text(), policy(), any::<u64>(), text(), any::<bool>()).prop_map(|(bucket, policy, hlc, origin, deleted)| {
            ControlChange::Policy {
                bucket,
                record: PolicyRecord {
                    policy,
                    hlc,
                    origin,
                    deleted,
                },
            }
        }),
        (grant(), any::<u64>(), text()).prop_map(|(grant, hlc, origin)| ControlChange::Grant {
            record: GrantRecord { grant, hlc, origin }
        }),
        (text(), any::<bool>(), text(), any::<u64>(), text()).prop_map(|(hub, lost, reason, hlc, origin)| {
            ControlChange::HubState {
                hub,
                record: HubStateRecord {
                    lost,
                    reason,
                    hlc,
                    origin,
                },
            }
        }),
        (text(), versioning, any::<u64>(), text()).prop_map(|(bucket, versioning, hlc, origin)| {
            ControlChange::Versioning {
                bucket,
                record: VersioningRecord {
                    versioning,
                    hlc,
                    origin,
                },
            }
        }),
    ]
}

/// A byte-level edit of a valid encoding.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ];
    proptest::collection::vec(edit, 1..4)
}

/// Applies `edits` to `bytes` (positions taken modulo the current length).
fn mutate(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let n = bytes.len();
        match edit {
            Edit::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
            Edit::Set { at, byte } if n > 0 => bytes[at % n] = *byte,
            Edit::Insert { at, bytes: new } => {
                let at = at % (n + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete { at, len } if n > 0 => {
                let at = at % n;
                bytes.drain(at..(at + len).min(n));
            }
            Edit::Truncate { at } => bytes.truncate(at % (n + 1)),
            _ => {}
        }
    }
}

/// What the wire carries of a version: everything but its data.
fn without_data(v: &ObjectVersion) -> ObjectVersion {
    let mut v = v.clone();
    v.data = ObjectData::Inline(Vec::new());
    v
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// The x-valley-version header
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2_000))]

    /// Round trip over arbitrary versions: the header carries every field but the data.
    #[test]
    fn version_header_round_trips(v in version()) {
        let header = wire::encode_version(&v);
        prop_assert!(!header.is_empty());
        // It must be sendable as an HTTP header value as-is.
        prop_assert!(http::HeaderValue::from_str(&header).is_ok(), "not a header value: {header:?}");
        let decoded = wire::decode_version(&header);
        prop_assert_eq!(decoded, Some(without_data(&v)));
    }

    /// Any string a peer can put in the header: `None` or a version, never a panic.
    #[test]
    fn version_header_arbitrary_string_never_panics(s in any::<String>()) {
        if let Some(v) = wire::decode_version(&s) {
            // What decoded must be re-encodable to the same value.
            prop_assert_eq!(wire::decode_version(&wire::encode_version(&v)), Some(without_data(&v)));
        }
    }

    /// Valid base64 of arbitrary bytes (past the base64 layer, into the JSON decoder).
    #[test]
    fn version_header_arbitrary_payload_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Some(v) = wire::decode_version(&b64(&bytes)) {
            prop_assert_eq!(wire::decode_version(&wire::encode_version(&v)), Some(without_data(&v)));
        }
    }

    /// Mutations of a valid header, at the base64 layer and inside the JSON it carries.
    #[test]
    fn version_header_mutations_never_panic(v in version(), edits in edits(), inside in any::<bool>()) {
        let header = wire::encode_version(&v);
        let mutated = if inside {
            let mut json = serde_json::to_vec(&without_data(&v)).expect("serialize");
            mutate(&mut json, &edits);
            b64(&json)
        } else {
            let mut raw = header.clone().into_bytes();
            mutate(&mut raw, &edits);
            String::from_utf8_lossy(&raw).into_owned()
        };
        match wire::decode_version(&mutated) {
            Some(d) => {
                // Decoding is a function of the bytes: an unchanged header gives the original.
                if mutated == header {
                    prop_assert_eq!(&d, &without_data(&v));
                }
                prop_assert_eq!(wire::decode_version(&wire::encode_version(&d)), Some(without_data(&d)));
            }
            None => prop_assert_ne!(mutated, header, "the unmodified header failed to decode"),
        }
    }
}

#[test]
fn version_header_refuses_deep_nesting_without_overflowing_the_stack() {
    for depth in [200usize, 10_000, 200_000] {
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(wire::decode_version(&b64(json.as_bytes())), None, "depth {depth}");
        let json = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert_eq!(wire::decode_version(&b64(json.as_bytes())), None, "depth {depth}");
    }
}

#[test]
fn version_header_with_a_long_array_decodes_promptly() {
    // 100,000 part sizes but no other field: refused (a version needs every field), promptly.
    let big = format!(
        "{{\"part_sizes\":[{}]}}",
        vec!["18446744073709551615"; 100_000].join(",")
    );
    let started = std::time::Instant::now();
    assert_eq!(wire::decode_version(&b64(big.as_bytes())), None);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn query_param_arbitrary_input_never_panics(query in any::<String>(), name in any::<String>()) {
        if let Some(v) = wire::query_param(&query, &name) {
            // A value is only ever found behind `name=` in the query.
            prop_assert!(query.contains(&format!("{name}=")), "{query:?} {name:?} -> {v:?}");
        }
    }

    /// Percent-encoding garbage (lone `%`, `%zz`, encoded invalid UTF-8) never panics.
    #[test]
    fn query_param_percent_garbage_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("%".to_owned()),
                "%[0-9a-fA-F]{0,2}",
                "%[g-zG-Z]{2}",
                "%[89a-fA-F][0-9a-fA-F]",
                "[a-z=&]{0,4}",
            ],
            0..12,
        )
    ) {
        let query = format!("key={}", parts.concat());
        let _ = wire::query_param(&query, "key");
    }

    /// Values written by `wire::path` read back exactly, whatever they contain.
    #[test]
    fn query_values_round_trip(bucket in any::<String>(), key in any::<String>(), extra in any::<String>()) {
        let path = wire::path("object", &[("bucket", &bucket), ("key", &key), ("version_id", &extra)]);
        let (route, query) = path.split_once('?').expect("a query");
        prop_assert_eq!(route, "/_valley/peer/v1/object");
        prop_assert_eq!(wire::query_param(query, "bucket"), Some(bucket));
        prop_assert_eq!(wire::query_param(query, "key"), Some(key));
        prop_assert_eq!(wire::query_param(query, "version_id"), Some(extra));
        prop_assert_eq!(wire::query_param(query, "absent"), None);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------------------------

/// Decodes `bytes` as every JSON type a hub reads from a peer body. Returns how many decoded.
fn decode_every_body(bytes: &[u8]) -> usize {
    let mut ok = 0;
    macro_rules! try_decode {
        ($($t:ty),* $(,)?) => {
            $( if serde_json::from_slice::<$t>(bytes).is_ok() { ok += 1; } )*
        };
    }
    try_decode!(
        Hello,
        Vec<DeleteMessage>,
        DeleteMessage,
        Outcome,
        GrantUse,
        ExportUse,
        StageState,
        DigestRequest,
        DigestReply,
        ItemsReply,
        Inventory,
        ControlChange,
        Vec<ControlChange>,
        PolicyRecord,
        GrantRecord,
        HubStateRecord,
        VersioningRecord,
        Grant,
        PlacementPolicy,
    );
    ok
}

/// Valid encodings of the body types, to mutate.
fn valid_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        control_change().prop_map(|c| to_json(&c)),
        proptest::collection::vec(control_change(), 0..3).prop_map(|c| to_json(&c)),
        (text(), text(), opt_text(), any::<u64>(), text(), any::<bool>()).prop_map(
            move |(bucket, key, version_id, hlc, origin, newer_only)| to_json(&vec![DeleteMessage {
                bucket,
                key,
                version_id,
                hlc,
                origin,
                newer_only
            }])
        ),
        (
            text(),
            text(),
            proptest::collection::vec(any::<u16>(), 0..8),
            proptest::option::of(any::<u32>()),
            proptest::option::of(text())
        )
            .prop_map(|(bucket, hub, partitions, page, after)| to_json(&DigestRequest {
                bucket,
                hub,
                partitions,
                page,
                after
            })),
        (any::<bool>(), proptest::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(done, staged)| to_json(&StageState { done, staged })),
        (text(), text(), any::<u64>(), proptest::option::of(any::<u64>())).prop_map(
            |(grant, transfer, bytes, individuals)| to_json(&GrantUse {
                grant,
                transfer,
                bytes,
                individuals
            })
        ),
        (text(), text(), proptest::collection::vec(text(), 0..3), any::<u64>()).prop_map(
            |(tenant, export, classifications, individuals)| to_json(&ExportUse {
                format: ExportUse::FORMAT,
                tenant,
                from: "CN".into(),
                grant: "g".into(),
                classifications,
                export,
                individuals,
                bytes: individuals / 2,
            })
        ),
    ]
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize")
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn bodies_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_every_body(&bytes);
    }

    #[test]
    fn bodies_mutated_never_panic(body in valid_body(), edits in edits()) {
        prop_assert!(decode_every_body(&body) >= 1, "the valid body does not decode: {}", String::from_utf8_lossy(&body));
        let mut mutated = body.clone();
        mutate(&mut mutated, &edits);
        decode_every_body(&mutated);
    }

    /// A control change survives the trip between hubs unchanged, and so does its identity.
    #[test]
    fn control_change_round_trips(change in control_change()) {
        let json = serde_json::to_vec(&change).expect("serialize");
        let back: ControlChange = serde_json::from_slice(&json).expect("decode");
        prop_assert_eq!(back.identity(), change.identity());
        prop_assert_eq!(back.hlc(), change.hlc());
        prop_assert_eq!(back, change);
    }

    /// A grant decoded from a peer (any day numbers, any usage) can be asked about any day.
    #[test]
    fn decoded_grant_questions_never_panic(g in grant(), today in any::<i64>(), bytes in any::<u64>(), people in any::<u64>()) {
        let json = serde_json::to_vec(&g).expect("serialize");
        let mut back: Grant = serde_json::from_slice(&json).expect("decode");
        prop_assert_eq!(&back, &g);
        let _ = back.refusal(today, bytes, Some(people));
        let _ = back.refusal(today, bytes, None);
        back.record_use(today, bytes, people);
        // Just counted today: today's usage includes it.
        let (used_bytes, used_people) = back.used_in(today);
        prop_assert!(used_bytes >= bytes && used_people >= people, "{:?} after {} / {}", back, bytes, people);
    }
}

#[test]
fn bodies_refuse_deep_nesting_without_overflowing_the_stack() {
    for depth in [200usize, 10_000, 200_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(decode_every_body(arrays.as_bytes()), 0, "depth {depth}");
        let objects = format!("{}null{}", "{\"type\":".repeat(depth), "}".repeat(depth));
        assert_eq!(decode_every_body(objects.as_bytes()), 0, "depth {depth}");
    }
}

// ---------------------------------------------------------------------------------------------
// The ETag check run over bytes as they arrive, with part sizes from the (peer-sent) header
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1_000))]

    /// Any part sizes a peer declares (zeros, u64::MAX, more or fewer than the bytes) and any
    /// chunking: no panic, no hang.
    #[test]
    fn etag_check_any_part_sizes_never_panics(
        part_sizes in proptest::collection::vec(prop_oneof![Just(0u64), 0u64..64, Just(u64::MAX)], 0..300),
        data in proptest::collection::vec(any::<u8>(), 0..512),
        chunk in 1usize..64,
    ) {
        let mut check = EtagCheck::new(&part_sizes);
        for c in data.chunks(chunk) {
            check.update(c);
        }
        let etag = check.finish();
        if part_sizes.is_empty() {
            prop_assert_eq!(etag, hex::encode(Md5::digest(&data)));
        } else {
            prop_assert!(etag.ends_with(&format!("-{}", part_sizes.len())), "{etag}");
        }
    }

    /// When the declared parts cover the bytes exactly, the check gives S3's multipart ETag
    /// whatever the chunking.
    #[test]
    fn etag_check_matches_the_multipart_rule(
        part_sizes in proptest::collection::vec(1u64..200, 1..8),
        chunk in 1usize..300,
        seed in any::<u8>(),
    ) {
        let total: u64 = part_sizes.iter().sum();
        let data: Vec<u8> = (0..total).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let mut digests = Vec::new();
        let mut at = 0usize;
        for &p in &part_sizes {
            digests.extend_from_slice(&Md5::digest(&data[at..at + p as usize]));
            at += p as usize;
        }
        let want = format!("{}-{}", hex::encode(Md5::digest(&digests)), part_sizes.len());
        let mut check = EtagCheck::new(&part_sizes);
        for c in data.chunks(chunk) {
            check.update(c);
        }
        prop_assert_eq!(check.finish(), want);
    }
}
