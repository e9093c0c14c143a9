//! Properties of the evaluator over random policies, ACLs and requests drawn from a small
//! universe (so that statements and requests often meet).

use proptest::prelude::*;
use valley_access::{
    AccessQuery, Acl, ObjectOwnership, PolicyDocument, Principal, PublicAccessBlock, RequestContext, S3_ACTIONS,
    Verdict, authorize, parse_bucket_policy, parse_identity_policy,
};

const OWNER: &str = "acme";

const PRINCIPALS: &[&str] = &[
    r#""*""#,
    r#"{"AWS":"acme"}"#,
    r#"{"AWS":"arn:aws:iam::acme:user/bob"}"#,
    r#"{"AWS":"globex"}"#,
    r#"{"AWS":["arn:aws:iam::globex:user/carol","arn:aws:iam::acme:root"]}"#,
    r#"{"CanonicalUser":"globex$carol"}"#,
];
const ACTIONS: &[&str] = &[
    r#""s3:GetObject""#,
    r#""s3:PutObject""#,
    r#""s3:Get*""#,
    r#""s3:*""#,
    r#""*""#,
    r#"["s3:ListBucket","s3:DeleteObject"]"#,
];
const RESOURCES: &[&str] = &[
    r#""arn:aws:s3:::b/*""#,
    r#""arn:aws:s3:::b/a*""#,
    r#""arn:aws:s3:::b""#,
    r#"["arn:aws:s3:::b","arn:aws:s3:::b/*"]"#,
    r#""arn:aws:s3:::b/home/${aws:username}/*""#,
];
const CONDITIONS: &[&str] = &[
    "",
    r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#,
    r#","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
    r#","Condition":{"StringLike":{"s3:prefix":"a*"}}"#,
    r#","Condition":{"StringNotEquals":{"aws:PrincipalAccount":"acme"}}"#,
    r#","Condition":{"Null":{"s3:prefix":"true"}}"#,
];

const QUERY_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:DeleteObject",
    "s3:GetObjectAcl",
];
const QUERY_RESOURCES: &[&str] = &[
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/a1",
    "arn:aws:s3:::b/x",
    "arn:aws:s3:::b/home/bob/p",
];

fn principals() -> Vec<Principal> {
    vec![
        Principal::Anonymous,
        Principal::tenant_root("acme"),
        Principal::admin("acme", "ops"),
        Principal::user("acme", "bob"),
        Principal::user("acme", "eve"),
        Principal::tenant_root("globex"),
        Principal::user("globex", "carol"),
    ]
}

#[derive(Debug, Clone)]
struct Stmt {
    deny: bool,
    principal: usize,
    not_principal: bool,
    action: usize,
    not_action: bool,
    resource: usize,
    not_resource: bool,
    condition: usize,
}

impl Stmt {
    fn render(&self, with_principal: bool) -> String {
        let effect = if self.deny { "Deny" } else { "Allow" };
        let not = |n: bool| if n { "Not" } else { "" };
        let principal = if with_principal {
            format!(
                r#""{}Principal":{},"#,
                // NotPrincipal only with Deny: an Allow with it is refused when parsed.
                not(self.not_principal && self.deny),
                PRINCIPALS[self.principal]
            )
        } else {
            String::new()
        };
        format!(
            r#"{{"Effect":"{effect}",{principal}"{}Action":{},"{}Resource":{}{}}}"#,
            not(self.not_action),
            ACTIONS[self.action],
            not(self.not_resource),
            RESOURCES[self.resource],
            CONDITIONS[self.condition],
        )
    }
}

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        any::<bool>(),
        0..PRINCIPALS.len(),
        prop::bool::weighted(0.15),
        0..ACTIONS.len(),
        prop::bool::weighted(0.15),
        0..RESOURCES.len(),
        prop::bool::weighted(0.15),
        0..CONDITIONS.len(),
    )
        .prop_map(
            |(deny, principal, not_principal, action, not_action, resource, not_resource, condition)| Stmt {
                deny,
                principal,
                not_principal,
                action,
                not_action,
                resource,
                not_resource,
                condition,
            },
        )
}

fn policy_json(statements: &[Stmt], with_principal: bool) -> String {
    let body: Vec<String> = statements.iter().map(|s| s.render(with_principal)).collect();
    format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, body.join(","))
}

#[derive(Debug, Clone)]
struct World {
    bucket: Vec<Stmt>,
    identity: Vec<Stmt>,
    acl: usize,
    enforced: bool,
    pab: [bool; 4],
    principal: usize,
    action: usize,
    resource: usize,
    tls: bool,
    office_ip: bool,
    prefix: Option<&'static str>,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(stmt(), 0..6),
        prop::collection::vec(stmt(), 0..5),
        (0..5usize, any::<bool>(), any::<[bool; 4]>()),
        (0..principals().len(), 0..QUERY_ACTIONS.len(), 0..QUERY_RESOURCES.len()),
        (
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["a/", "z"])),
        ),
    )
        .prop_map(
            |(bucket, identity, (acl, enforced, pab), (principal, action, resource), (tls, office_ip, prefix))| World {
                bucket,
                identity,
                acl,
                enforced,
                pab,
                principal,
                action,
                resource,
                tls,
                office_ip,
                prefix,
            },
        )
}

fn acl(choice: usize) -> Option<Acl> {
    match choice {
        0 => None,
        1 => Some(Acl::private(OWNER)),
        2 => Some(Acl::canned("public-read-write", OWNER, OWNER).unwrap()),
        3 => Some(Acl::from_grant_headers(OWNER, [("x-amz-grant-full-control", "id=globex")]).unwrap()),
        _ => Some(Acl::from_grant_headers(OWNER, [("x-amz-grant-read", "id=acme$bob")]).unwrap()),
    }
}

impl World {
    fn principal(&self) -> Principal {
        principals()[self.principal].clone()
    }

    fn context(&self) -> RequestContext {
        let mut ctx = RequestContext::new();
        ctx.set_secure_transport(self.tls)
            .set_source_ip(if self.office_ip { "10.2.3.4" } else { "8.8.8.8" }.parse().unwrap());
        if let Some(prefix) = self.prefix {
            ctx.set_prefix(prefix);
        }
        ctx
    }

    fn decide(&self) -> Verdict {
        self.decide_with(&self.bucket, &self.identity, acl(self.acl))
    }

    /// The verdict with only the condition keys the policies read (`keys_read`) in the
    /// context: the S3 front answers no other key.
    fn decide_knowing_only_what_is_read(&self) -> Verdict {
        let bucket_policy: Option<PolicyDocument> =
            (!self.bucket.is_empty()).then(|| parse_bucket_policy(&policy_json(&self.bucket, true), "b").unwrap());
        let identity_policy: Option<PolicyDocument> =
            (!self.identity.is_empty()).then(|| parse_identity_policy(&policy_json(&self.identity, false)).unwrap());
        let full = self.context();
        let mut known = RequestContext::new();
        for policy in bucket_policy.iter().chain(identity_policy.iter()) {
            for key in policy.keys_read() {
                if let Some(values) = full.get(key) {
                    known.set_values(key, values.iter().cloned());
                }
            }
        }
        self.decide_in(&self.bucket, &self.identity, acl(self.acl), &known)
    }

    fn decide_with(&self, bucket: &[Stmt], identity: &[Stmt], acl: Option<Acl>) -> Verdict {
        self.decide_in(bucket, identity, acl, &self.context())
    }

    fn decide_in(&self, bucket: &[Stmt], identity: &[Stmt], acl: Option<Acl>, context: &RequestContext) -> Verdict {
        let bucket_policy: Option<PolicyDocument> =
            (!bucket.is_empty()).then(|| parse_bucket_policy(&policy_json(bucket, true), "b").unwrap());
        let identity_policy: Option<PolicyDocument> =
            (!identity.is_empty()).then(|| parse_identity_policy(&policy_json(identity, false)).unwrap());
        let identity_policies: Vec<&PolicyDocument> = identity_policy.iter().collect();
        let principal = self.principal();
        let [a, b, c, d] = self.pab;
        authorize(&AccessQuery {
            principal: &principal,
            action: QUERY_ACTIONS[self.action],
            resource: QUERY_RESOURCES[self.resource],
            resource_owner: OWNER,
            identity_policies: &identity_policies,
            bucket_policy: bucket_policy.as_ref(),
            acl: acl.as_ref(),
            public_access_block: PublicAccessBlock {
                block_public_acls: a,
                ignore_public_acls: b,
                block_public_policy: c,
                restrict_public_buckets: d,
            },
            ownership: if self.enforced {
                ObjectOwnership::BucketOwnerEnforced
            } else {
                ObjectOwnership::ObjectWriter
            },
            context,
        })
    }
}

const DENY_EVERYTHING_IN_B: &str =
    r#"{"Effect":"Deny","Principal":"*","Action":"*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}"#;

fn permute<T: Clone>(items: &[T], seed: &[u32]) -> Vec<T> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| seed.get(i).copied().unwrap_or(0));
    order.into_iter().map(|i| items[i].clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Answering only the keys the policies read (what the S3 front does) decides as
    /// answering every key would.
    #[test]
    fn answering_only_the_keys_read_decides_the_same(w in world()) {
        prop_assert_eq!(w.decide_knowing_only_what_is_read(), w.decide());
    }

    #[test]
    fn a_matching_explicit_deny_always_denies(w in world(), at in 0usize..7) {
        let mut statements: Vec<String> = w.bucket.iter().map(|s| s.render(true)).collect();
        statements.insert(at.min(statements.len()), DENY_EVERYTHING_IN_B.to_owned());
        let json = format!(r#"{{"Statement":[{}]}}"#, statements.join(","));
        let policy = parse_bucket_policy(&json, "b").unwrap();
        let identity_policy = (!w.identity.is_empty())
            .then(|| parse_identity_policy(&policy_json(&w.identity, false)).unwrap());
        let identity_policies: Vec<&PolicyDocument> = identity_policy.iter().collect();
        let principal = w.principal();
        let context = w.context();
        let acl = acl(w.acl);
        let verdict = authorize(&AccessQuery {
            principal: &principal,
            action: QUERY_ACTIONS[w.action],
            resource: QUERY_RESOURCES[w.resource],
            resource_owner: OWNER,
            identity_policies: &identity_policies,
            bucket_policy: Some(&policy),
            acl: acl.as_ref(),
            public_access_block: PublicAccessBlock::default(),
            ownership: ObjectOwnership::ObjectWriter,
            context: &context,
        });
        prop_assert!(!verdict.is_allowed(), "{verdict}");
    }

    #[test]
    fn an_identity_deny_always_denies_its_user(w in world(), at in 0usize..6) {
        prop_assume!(w.principal().tenant().is_some());
        let mut identity = w.identity.clone();
        let deny = Stmt { deny: true, principal: 0, not_principal: false, action: 4, not_action: false, resource: 3, not_resource: false, condition: 0 };
        identity.insert(at.min(identity.len()), deny);
        prop_assert!(!w.decide_with(&w.bucket, &identity, acl(w.acl)).is_allowed());
    }

    #[test]
    fn evaluation_ignores_statement_order(w in world(), seed_b in prop::collection::vec(any::<u32>(), 6), seed_i in prop::collection::vec(any::<u32>(), 5)) {
        let bucket = permute(&w.bucket, &seed_b);
        let identity = permute(&w.identity, &seed_i);
        prop_assert_eq!(
            w.decide().is_allowed(),
            w.decide_with(&bucket, &identity, acl(w.acl)).is_allowed()
        );
    }

    #[test]
    fn default_deny_for_non_admins(w in world()) {
        let principal = w.principal();
        prop_assume!(!principal.is_admin());
        let verdict = w.decide_with(&[], &[], None);
        prop_assert!(!verdict.is_allowed());
        // Deny-only policies allow nothing either.
        let denies = |v: &[Stmt]| v.iter().cloned().map(|mut s| { s.deny = true; s }).collect::<Vec<_>>();
        prop_assert!(!w.decide_with(&denies(&w.bucket), &denies(&w.identity), None).is_allowed());
    }

    #[test]
    fn cross_tenant_needs_both_sides(w in world(), carol in any::<bool>()) {
        // globex's root or its user carol.
        let w = World { principal: if carol { 6 } else { 5 }, ..w };
        let principal = w.principal();
        prop_assert_eq!(principal.tenant(), Some("globex"));
        if w.decide().is_allowed() {
            // Without the resource side: denied.
            prop_assert!(!w.decide_with(&[], &w.identity, None).is_allowed());
            // Without the principal side (unless it is its tenant's admin): denied.
            if !principal.is_admin() {
                prop_assert!(!w.decide_with(&w.bucket, &[], acl(w.acl)).is_allowed());
            }
        }
    }

    #[test]
    fn anonymous_needs_the_resource_side(w in world()) {
        let w = World { principal: 0, ..w };
        prop_assert_eq!(w.principal(), Principal::Anonymous);
        prop_assert!(!w.decide_with(&[], &w.identity, None).is_allowed());
    }

    #[test]
    fn adding_an_allow_never_takes_access_away(w in world(), extra in stmt(), to_bucket in any::<bool>()) {
        let mut extra = extra;
        extra.deny = false;
        let before = w.decide().is_allowed();
        let (mut bucket, mut identity) = (w.bucket.clone(), w.identity.clone());
        if to_bucket { bucket.push(extra) } else { identity.push(extra) }
        let after = w.decide_with(&bucket, &identity, acl(w.acl)).is_allowed();
        // The one exception, as in AWS: under RestrictPublicBuckets, an allow that makes the
        // bucket policy public shuts out everyone outside the owner's tenant.
        let public = |statements: &[Stmt]| {
            !statements.is_empty() && parse_bucket_policy(&policy_json(statements, true), "b").unwrap().is_public()
        };
        let restricted_now = w.pab[3] && to_bucket && public(&bucket) && !public(&w.bucket);
        let outsider = w.principal().tenant() != Some(OWNER);
        prop_assert!(!before || after || (restricted_now && outsider));
    }

    #[test]
    fn adding_a_deny_never_grants_access(w in world(), extra in stmt(), to_bucket in any::<bool>()) {
        let mut extra = extra;
        extra.deny = true;
        let before = w.decide().is_allowed();
        let (mut bucket, mut identity) = (w.bucket.clone(), w.identity.clone());
        if to_bucket { bucket.push(extra) } else { identity.push(extra) }
        let after = w.decide_with(&bucket, &identity, acl(w.acl)).is_allowed();
        prop_assert!(before || !after);
    }

    #[test]
    fn not_action_is_action_of_everything_else(
        excluded in prop::sample::select(S3_ACTIONS.to_vec()),
        asked in prop::sample::select(S3_ACTIONS.to_vec()),
        deny in any::<bool>(),
    ) {
        let effect = if deny { "Deny" } else { "Allow" };
        let others: Vec<String> = S3_ACTIONS.iter().filter(|a| **a != excluded).map(|a| format!("{a:?}")).collect();
        let not_action = format!(r#"{{"Statement":[{{"Effect":"{effect}","NotAction":"{excluded}","Resource":"*"}},{{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::z"}}]}}"#);
        let action = format!(r#"{{"Statement":[{{"Effect":"{effect}","Action":[{}],"Resource":"*"}},{{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::z"}}]}}"#, others.join(","));
        let decide = |json: &str| {
            let policy = parse_identity_policy(json).unwrap();
            let principal = Principal::user("acme", "bob");
            let context = RequestContext::new();
            authorize(&AccessQuery {
                principal: &principal,
                action: asked,
                resource: "arn:aws:s3:::b/k",
                resource_owner: OWNER,
                identity_policies: &[&policy],
                bucket_policy: None,
                acl: None,
                public_access_block: PublicAccessBlock::default(),
                ownership: ObjectOwnership::BucketOwnerEnforced,
                context: &context,
            })
        };
        let a = decide(&not_action);
        let b = decide(&action);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.is_allowed(), !deny && asked != excluded);
    }

    #[test]
    fn owner_admin_always_manages_the_policy(w in world(), action in prop::sample::select(vec!["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"])) {
        let mut bucket = w.bucket.clone();
        bucket.push(Stmt { deny: true, principal: 0, not_principal: false, action: 4, not_action: false, resource: 3, not_resource: false, condition: 0 });
        let json = policy_json(&bucket, true);
        let policy = parse_bucket_policy(&json, "b").unwrap();
        let context = w.context();
        for principal in principals() {
            let verdict = authorize(&AccessQuery {
                principal: &principal,
                action,
                resource: "arn:aws:s3:::b",
                resource_owner: OWNER,
                identity_policies: &[],
                bucket_policy: Some(&policy),
                acl: None,
                public_access_block: PublicAccessBlock::all(),
                ownership: ObjectOwnership::BucketOwnerEnforced,
                context: &context,
            });
            prop_assert_eq!(verdict.is_allowed(), principal.is_admin_of(OWNER), "{:?}", principal);
        }
    }
}

/// The properties above mean little if the random worlds were almost always denied (or
/// allowed): check that both outcomes, and cross-tenant allows, are common.
#[test]
fn the_random_worlds_reach_both_verdicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut allowed, mut cross_allowed, total) = (0, 0, 2000);
    for _ in 0..total {
        let w = world().new_tree(&mut runner).unwrap().current();
        if w.decide().is_allowed() {
            allowed += 1;
            if w.principal().tenant() == Some("globex") {
                cross_allowed += 1;
            }
        }
    }
    assert!(allowed > total / 10 && allowed < total * 9 / 10, "{allowed} of {total}");
    assert!(cross_allowed > 0, "no cross-tenant allow in {total}");
}
