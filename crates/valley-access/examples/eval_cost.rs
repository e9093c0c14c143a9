//! What one authorization costs: a realistic bucket policy (8 statements, conditions on
//! aws:SourceIp, s3:prefix, aws:SecureTransport, aws:username) plus one identity policy,
//! evaluated for a GetObject and a HeadObject a million times each.
//!
//! `cargo run --release -p valley-access --example eval_cost`

use std::hint::black_box;
use std::time::Instant;

use valley_access::{
    AccessQuery, Acl, ObjectOwnership, PolicyDocument, Principal, PublicAccessBlock, RequestContext, Verdict,
    action_for, authorize, parse_bucket_policy, parse_identity_policy, resource_for,
};

const BUCKET_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "photos-policy",
  "Statement": [
    {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"],
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    {"Sid": "DenyOutsideNetworks", "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject", "s3:DeleteObject"],
     "Resource": "arn:aws:s3:::photos/*",
     "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]}}},
    {"Sid": "DenyUnencryptedUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::photos/*",
     "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
    {"Sid": "PublicThumbnails", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::photos/thumbnails/*",
     "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}},
    {"Sid": "PartnerRead", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::globex:root", "arn:aws:iam::initech:user/feed"]},
     "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": "arn:aws:s3:::photos/shared/*"},
    {"Sid": "PartnerList", "Effect": "Allow", "Principal": {"AWS": "globex"}, "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::photos",
     "Condition": {"StringLike": {"s3:prefix": ["shared/", "shared/*"]}}},
    {"Sid": "HomeDirectories", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:user/bob"},
     "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::photos/home/${aws:username}/*"},
    {"Sid": "OfficeListing", "Effect": "Allow", "Principal": {"AWS": "acme"}, "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::photos",
     "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}, "StringLike": {"s3:prefix": "home/*"}}}
  ]
}"#;

const IDENTITY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ReadAlbums", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"],
     "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/albums/*"]},
    {"Sid": "NoArchive", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::photos/archive/*"},
    {"Sid": "TagOwnWork", "Effect": "Allow", "Action": "s3:PutObjectTagging", "Resource": "arn:aws:s3:::photos/*",
     "Condition": {"StringEquals": {"s3:ExistingObjectTag/owner": "${aws:username}"}}}
  ]
}"#;

const ROUNDS: u32 = 1_000_000;

fn main() {
    let bucket_policy = parse_bucket_policy(BUCKET_POLICY, "photos").expect("bucket policy");
    let identity = parse_identity_policy(IDENTITY_POLICY).expect("identity policy");
    let identity_policies: [&PolicyDocument; 1] = [&identity];
    let bob = Principal::user("acme", "bob");
    let acl = Acl::private("acme");
    let mut context = RequestContext::new();
    context
        .set_source_ip("10.20.30.40".parse().expect("address"))
        .set_secure_transport(true)
        .set_current_time(time::macros::datetime!(2026-12-04 12:00:00 UTC))
        .set_user_agent("aws-cli/2.15")
        .set_signature_version("AWS4-HMAC-SHA256")
        .set_auth_type("REST-HEADER");

    let get_resource = resource_for("photos", Some("albums/2026/beach.jpg"));
    let head_resource = resource_for("photos", Some("home/bob/notes.txt"));
    let get = AccessQuery {
        principal: &bob,
        action: action_for("GetObject", false),
        resource: &get_resource,
        resource_owner: "acme",
        identity_policies: &identity_policies,
        bucket_policy: Some(&bucket_policy),
        acl: Some(&acl),
        public_access_block: PublicAccessBlock::default(),
        ownership: ObjectOwnership::BucketOwnerPreferred,
        context: &context,
    };
    let head = AccessQuery {
        action: action_for("HeadObject", false),
        resource: &head_resource,
        ..get
    };

    for (name, q) in [("GetObject", &get), ("HeadObject", &head)] {
        let verdict = authorize(q);
        assert!(matches!(verdict, Verdict::Allowed { .. }), "{name}: {verdict}");
        // Warm up, then measure.
        for _ in 0..10_000 {
            black_box(authorize(black_box(q)));
        }
        let start = Instant::now();
        for _ in 0..ROUNDS {
            black_box(authorize(black_box(q)));
        }
        let elapsed = start.elapsed();
        println!(
            "{name:<10} {verdict}: {:.0} ns per evaluation ({ROUNDS} evaluations in {:.3} s)",
            elapsed.as_nanos() as f64 / f64::from(ROUNDS),
            elapsed.as_secs_f64()
        );
    }
}
