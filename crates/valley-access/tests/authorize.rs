//! The evaluator on the scenarios S3 users rely on.

use std::net::IpAddr;

use valley_access::{
    AccessQuery, Acl, Grantee, ObjectOwnership, Permission, PolicyDocument, PolicySource, Principal, PublicAccessBlock,
    PublicAccessRule, Reason, RequestContext, StatementRef, Verdict, action_for, authorize, parse_bucket_policy,
    parse_identity_policy, resource_for,
};

const BUCKET: &str = "photos";
const OWNER: &str = "acme";

/// A query on `photos` (owned by acme) with no policies, no ACL, ACLs switched on.
struct Case<'a> {
    principal: Principal,
    action: &'a str,
    resource: String,
    identity: Vec<PolicyDocument>,
    bucket_policy: Option<PolicyDocument>,
    acl: Option<Acl>,
    pab: PublicAccessBlock,
    ownership: ObjectOwnership,
    context: RequestContext,
}

impl<'a> Case<'a> {
    fn new(principal: Principal, action: &'a str, key: Option<&str>) -> Case<'a> {
        Case {
            principal,
            action,
            resource: resource_for(BUCKET, key),
            identity: Vec::new(),
            bucket_policy: None,
            acl: None,
            pab: PublicAccessBlock::default(),
            ownership: ObjectOwnership::ObjectWriter,
            context: RequestContext::new(),
        }
    }

    fn identity(mut self, json: &str) -> Self {
        self.identity.push(parse_identity_policy(json).unwrap());
        self
    }

    fn bucket(mut self, json: &str) -> Self {
        self.bucket_policy = Some(parse_bucket_policy(json, BUCKET).unwrap());
        self
    }

    fn acl(mut self, acl: Acl) -> Self {
        self.acl = Some(acl);
        self
    }

    fn decide(&self) -> Verdict {
        let identity: Vec<&PolicyDocument> = self.identity.iter().collect();
        authorize(&AccessQuery {
            principal: &self.principal,
            action: self.action,
            resource: &self.resource,
            resource_owner: OWNER,
            identity_policies: &identity,
            bucket_policy: self.bucket_policy.as_ref(),
            acl: self.acl.as_ref(),
            public_access_block: self.pab,
            ownership: self.ownership,
            context: &self.context,
        })
    }
}

fn bob() -> Principal {
    Principal::user("acme", "bob")
}

fn carol() -> Principal {
    Principal::user("globex", "carol")
}

fn statement(policy: PolicySource, index: usize, sid: Option<&str>) -> Reason {
    Reason::Statement(StatementRef {
        policy,
        index,
        sid: sid.map(str::to_owned),
    })
}

const ALLOW_GET_ALL: &str = r#"{"Version":"2012-10-17","Statement":{"Sid":"get","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#;

fn bucket_policy(principal: &str, effect: &str, action: &str, extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"s","Effect":"{effect}","Principal":{principal},"Action":"{action}","Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]{extra}}}]}}"#
    )
}

#[test]
fn admins_need_no_policy_within_their_tenant() {
    let admin = Case::new(Principal::admin("acme", "root-ish"), "s3:PutObject", Some("k"));
    assert_eq!(
        admin.decide(),
        Verdict::Allowed {
            by: Reason::TenantAdmin
        }
    );
    let root = Case::new(Principal::tenant_root("acme"), "s3:DeleteBucket", None);
    assert!(root.decide().is_allowed());
    let other_admin = Case::new(Principal::admin("globex", "x"), "s3:GetObject", Some("k"));
    assert_eq!(
        other_admin.decide(),
        Verdict::Denied {
            by: Reason::ResourceSideMissing
        },
        "admin of another tenant is only the principal side"
    );
}

#[test]
fn users_get_what_policies_allow_and_nothing_else() {
    let none = Case::new(bob(), "s3:GetObject", Some("k"));
    assert_eq!(
        none.decide(),
        Verdict::Denied {
            by: Reason::NoStatementAllows
        }
    );
    let allowed = Case::new(bob(), "s3:GetObject", Some("a/b")).identity(ALLOW_GET_ALL);
    assert_eq!(
        allowed.decide(),
        Verdict::Allowed {
            by: statement(PolicySource::Identity(0), 0, Some("get"))
        }
    );
    let other_action = Case::new(bob(), "s3:PutObject", Some("a/b")).identity(ALLOW_GET_ALL);
    assert!(!other_action.decide().is_allowed());
    let bucket_itself = Case::new(bob(), "s3:GetObject", None).identity(ALLOW_GET_ALL);
    assert!(
        !bucket_itself.decide().is_allowed(),
        "photos/* does not name the bucket"
    );
    let case_insensitive_action = Case::new(bob(), "s3:GetObject", Some("k"))
        .identity(r#"{"Statement":{"Effect":"Allow","Action":"S3:getobject","Resource":"*"}}"#);
    assert!(case_insensitive_action.decide().is_allowed());
}

#[test]
fn bucket_policy_grants_users_of_the_tenant_it_names_specifically() {
    let by_user = Case::new(bob(), "s3:GetObject", Some("k")).bucket(&bucket_policy(
        r#"{"AWS":"arn:aws:iam::acme:user/bob"}"#,
        "Allow",
        "s3:GetObject",
        "",
    ));
    assert_eq!(
        by_user.decide(),
        Verdict::Allowed {
            by: statement(PolicySource::Bucket, 0, Some("s"))
        }
    );
    let by_everyone =
        Case::new(bob(), "s3:GetObject", Some("k")).bucket(&bucket_policy(r#""*""#, "Allow", "s3:GetObject", ""));
    assert!(by_everyone.decide().is_allowed());
    // Naming the tenant delegates to it: bob still needs an identity policy.
    let by_tenant = Case::new(bob(), "s3:GetObject", Some("k")).bucket(&bucket_policy(
        r#"{"AWS":"arn:aws:iam::acme:root"}"#,
        "Allow",
        "s3:GetObject",
        "",
    ));
    assert!(!by_tenant.decide().is_allowed());
    let eve = Case::new(Principal::user("acme", "eve"), "s3:GetObject", Some("k")).bucket(&bucket_policy(
        r#"{"AWS":"arn:aws:iam::acme:user/bob"}"#,
        "Allow",
        "s3:GetObject",
        "",
    ));
    assert!(!eve.decide().is_allowed());
}

#[test]
fn explicit_deny_wins_everywhere() {
    let deny_all = bucket_policy(r#""*""#, "Deny", "s3:*", "");
    let admin = Case::new(Principal::tenant_root("acme"), "s3:GetObject", Some("k")).bucket(&deny_all);
    assert_eq!(
        admin.decide(),
        Verdict::Denied {
            by: statement(PolicySource::Bucket, 0, Some("s"))
        }
    );
    let identity_deny = Case::new(bob(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .identity(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"no","Effect":"Deny","Action":"s3:Get*","Resource":"arn:aws:s3:::photos/k"}]}"#)
        .bucket(&bucket_policy(r#""*""#, "Allow", "s3:GetObject", ""));
    assert_eq!(
        identity_deny.decide(),
        Verdict::Denied {
            by: statement(PolicySource::Identity(1), 1, Some("no"))
        }
    );
    // NotPrincipal: deny everyone but bob.
    let not_bob = bucket_policy(r#"{"AWS":"arn:aws:iam::acme:user/bob"}"#, "Deny", "s3:*", "")
        .replace("\"Principal\"", "\"NotPrincipal\"");
    let eve = Case::new(Principal::user("acme", "eve"), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&not_bob);
    assert!(!eve.decide().is_allowed());
    let bob_case = Case::new(bob(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&not_bob);
    assert!(bob_case.decide().is_allowed());
}

#[test]
fn the_owner_cannot_lock_itself_out_of_the_policy() {
    let deny_all = bucket_policy(r#""*""#, "Deny", "s3:*", "");
    for action in ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"] {
        let admin = Case::new(Principal::admin("acme", "ops"), action, None).bucket(&deny_all);
        assert_eq!(
            admin.decide(),
            Verdict::Allowed {
                by: Reason::OwnerManagesPolicy
            }
        );
        let user = Case::new(bob(), action, None)
            .identity(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
            .bucket(&deny_all);
        assert!(!user.decide().is_allowed(), "only the owner's admin: {action}");
        let stranger = Case::new(Principal::tenant_root("globex"), action, None).bucket(&deny_all);
        assert!(!stranger.decide().is_allowed());
    }
    let other = Case::new(Principal::admin("acme", "ops"), "s3:PutBucketAcl", None).bucket(&deny_all);
    assert!(!other.decide().is_allowed());
}

#[test]
fn cross_tenant_needs_both_sides() {
    let grant_carol = bucket_policy(
        r#"{"AWS":"arn:aws:iam::globex:user/carol"}"#,
        "Allow",
        "s3:GetObject",
        "",
    );
    let only_bucket = Case::new(carol(), "s3:GetObject", Some("k")).bucket(&grant_carol);
    assert!(matches!(
        only_bucket.decide(),
        Verdict::Denied {
            by: Reason::PrincipalSideMissing { .. }
        }
    ));
    let only_identity = Case::new(carol(), "s3:GetObject", Some("k")).identity(ALLOW_GET_ALL);
    assert_eq!(
        only_identity.decide(),
        Verdict::Denied {
            by: Reason::ResourceSideMissing
        }
    );
    let both = Case::new(carol(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&grant_carol);
    assert_eq!(
        both.decide(),
        Verdict::Allowed {
            by: Reason::BothSides {
                resource: Box::new(statement(PolicySource::Bucket, 0, Some("s"))),
                principal: Box::new(statement(PolicySource::Identity(0), 0, Some("get"))),
            }
        }
    );
    // A tenant-wide grant to globex serves its admin without an identity policy.
    let to_globex = bucket_policy(r#"{"AWS":"globex"}"#, "Allow", "s3:GetObject", "");
    let globex_admin = Case::new(Principal::tenant_root("globex"), "s3:GetObject", Some("k")).bucket(&to_globex);
    assert!(globex_admin.decide().is_allowed());
    let globex_user = Case::new(carol(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&to_globex);
    assert!(globex_user.decide().is_allowed());
}

#[test]
fn anonymous_requests_use_the_resource_side_only() {
    let public = bucket_policy(r#""*""#, "Allow", "s3:GetObject", "");
    let anon = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(&public);
    assert!(anon.decide().is_allowed());
    let with_identity = Case::new(Principal::Anonymous, "s3:PutObject", Some("k"))
        .identity(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#);
    assert!(
        !with_identity.decide().is_allowed(),
        "an anonymous request has no identity policy"
    );
    let tenant_grant = bucket_policy(r#"{"AWS":"acme"}"#, "Allow", "s3:GetObject", "");
    let anon_tenant = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(&tenant_grant);
    assert!(!anon_tenant.decide().is_allowed());
}

#[test]
fn conditions_on_transport_and_address() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"office","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*",
         "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}},
        {"Sid":"tls","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos/*",
         "Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
    let run = |ip: &str, tls: bool| {
        let mut case = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(policy);
        case.context
            .set_source_ip(ip.parse::<IpAddr>().unwrap())
            .set_secure_transport(tls);
        case.decide()
    };
    assert!(run("10.9.8.7", true).is_allowed());
    assert!(run("2001:db8::5", true).is_allowed());
    assert_eq!(
        run("10.9.8.7", false),
        Verdict::Denied {
            by: statement(PolicySource::Bucket, 1, Some("tls"))
        }
    );
    assert_eq!(
        run("8.8.8.8", true),
        Verdict::Denied {
            by: Reason::NoStatementAllows
        }
    );
    // Without aws:SecureTransport the Deny's Bool is false: it does not apply.
    let mut with_ip = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(policy);
    with_ip.context.set_source_ip("10.0.0.1".parse().unwrap());
    assert!(with_ip.decide().is_allowed());
}

#[test]
fn policy_variables_in_resources() {
    let home = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::photos/home/${aws:username}/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::photos","Condition":{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}}]}"#;
    let own = Case::new(bob(), "s3:PutObject", Some("home/bob/x.jpg")).identity(home);
    assert!(own.decide().is_allowed());
    let others = Case::new(bob(), "s3:PutObject", Some("home/eve/x.jpg")).identity(home);
    assert!(!others.decide().is_allowed());
    let mut listing = Case::new(bob(), "s3:ListBucket", None).identity(home);
    listing.context.set_prefix("home/bob/2026/");
    assert!(listing.decide().is_allowed());
    listing.context.set_prefix("home/");
    assert!(!listing.decide().is_allowed());
    // The principal's keys come from the principal, not from what the caller put in.
    let mut spoof = Case::new(bob(), "s3:PutObject", Some("home/eve/x.jpg")).identity(home);
    spoof.context.set("aws:username", "eve");
    assert!(!spoof.decide().is_allowed());
    // 2008-10-17 reads ${...} literally.
    let old = home.replace("2012-10-17", "2008-10-17");
    let literal = Case::new(bob(), "s3:PutObject", Some("home/bob/x.jpg")).identity(&old);
    assert!(!literal.decide().is_allowed());
    let literal_key = Case::new(bob(), "s3:PutObject", Some("home/${aws:username}/x")).identity(&old);
    assert!(literal_key.decide().is_allowed());
}

#[test]
fn principal_keys_in_conditions() {
    let only_acme = bucket_policy(
        r#""*""#,
        "Allow",
        "s3:GetObject",
        r#","Condition":{"StringEquals":{"aws:PrincipalAccount":"globex"}}"#,
    );
    let mut spoofed = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(&only_acme);
    spoofed.context.set("aws:PrincipalAccount", "globex");
    assert!(!spoofed.decide().is_allowed(), "anonymous has no account");
    let carol_case = Case::new(carol(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&only_acme);
    assert!(carol_case.decide().is_allowed());
    let by_arn = bucket_policy(
        r#""*""#,
        "Allow",
        "s3:GetObject",
        r#","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::acme:user/b*"}}"#,
    );
    assert!(
        Case::new(bob(), "s3:GetObject", Some("k"))
            .bucket(&by_arn)
            .decide()
            .is_allowed()
    );
    let by_type = bucket_policy(
        r#""*""#,
        "Allow",
        "s3:GetObject",
        r#","Condition":{"StringEquals":{"aws:PrincipalType":"Anonymous"}}"#,
    );
    assert!(
        Case::new(Principal::Anonymous, "s3:GetObject", Some("k"))
            .bucket(&by_type)
            .decide()
            .is_allowed()
    );
    assert!(
        !Case::new(bob(), "s3:GetObject", Some("k"))
            .bucket(&by_type)
            .decide()
            .is_allowed()
    );
}

#[test]
fn not_action_and_not_resource() {
    let all_but_delete =
        r#"{"Statement":{"Effect":"Allow","NotAction":"s3:Delete*","NotResource":"arn:aws:s3:::photos/private/*"}}"#;
    let get = Case::new(bob(), "s3:GetObject", Some("k")).identity(all_but_delete);
    assert!(get.decide().is_allowed());
    let delete = Case::new(bob(), "s3:DeleteObject", Some("k")).identity(all_but_delete);
    assert!(!delete.decide().is_allowed());
    let private = Case::new(bob(), "s3:GetObject", Some("private/k")).identity(all_but_delete);
    assert!(!private.decide().is_allowed());
}

#[test]
fn acls_grant_when_in_force() {
    let public_read = Acl::canned("public-read", "acme", "acme").unwrap();
    let anon = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).acl(public_read.clone());
    assert_eq!(
        anon.decide(),
        Verdict::Allowed {
            by: Reason::AclGrant {
                index: 1,
                grantee: Grantee::AllUsers,
                permission: Permission::Read
            }
        }
    );
    let write = Case::new(Principal::Anonymous, "s3:PutObject", Some("k")).acl(public_read.clone());
    assert!(!write.decide().is_allowed());
    let mut enforced = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).acl(public_read.clone());
    enforced.ownership = ObjectOwnership::BucketOwnerEnforced;
    assert!(
        !enforced.decide().is_allowed(),
        "BucketOwnerEnforced: ACLs are not evaluated"
    );
    let mut ignored = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).acl(public_read);
    ignored.pab.ignore_public_acls = true;
    assert_eq!(
        ignored.decide(),
        Verdict::Denied {
            by: Reason::PublicAccessBlock(PublicAccessRule::IgnorePublicAcls)
        }
    );
    // The owner's FULL_CONTROL is the tenant's: bob needs a policy or a grant of his own.
    let private = Case::new(bob(), "s3:GetObject", Some("k")).acl(Acl::private("acme"));
    assert!(!private.decide().is_allowed());
    let mut mine = Acl::private("acme");
    mine.grants.push(valley_access::AclGrant {
        grantee: Grantee::Tenant("acme$bob".into()),
        permission: Permission::Read,
    });
    assert!(
        Case::new(bob(), "s3:GetObject", Some("k"))
            .acl(mine.clone())
            .decide()
            .is_allowed()
    );
    assert!(
        !Case::new(bob(), "s3:GetObjectTagging", Some("k"))
            .acl(mine)
            .decide()
            .is_allowed(),
        "ACLs cannot grant tagging"
    );
    // Cross-tenant grant: the resource side; carol still needs her own policy.
    let to_globex = Acl::from_grant_headers("acme", [("x-amz-grant-write", "id=\"globex\"")]).unwrap();
    let carol_put = Case::new(carol(), "s3:PutObject", Some("k")).acl(to_globex.clone());
    assert!(matches!(
        carol_put.decide(),
        Verdict::Denied {
            by: Reason::PrincipalSideMissing { .. }
        }
    ));
    let carol_put = Case::new(carol(), "s3:PutObject", Some("k"))
        .acl(to_globex)
        .identity(r#"{"Statement":{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}}"#);
    assert!(carol_put.decide().is_allowed());
}

#[test]
fn restrict_public_buckets_limits_public_policies_to_the_owner() {
    let public = bucket_policy(r#""*""#, "Allow", "s3:GetObject", "");
    let mut anon = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(&public);
    anon.pab.restrict_public_buckets = true;
    assert_eq!(
        anon.decide(),
        Verdict::Denied {
            by: Reason::PublicAccessBlock(PublicAccessRule::RestrictPublicBuckets)
        }
    );
    let mut own_user = Case::new(bob(), "s3:GetObject", Some("k")).bucket(&public);
    own_user.pab.restrict_public_buckets = true;
    assert!(own_user.decide().is_allowed());
    let mut stranger = Case::new(carol(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&public);
    stranger.pab.restrict_public_buckets = true;
    assert!(!stranger.decide().is_allowed());
    // A policy that is not public is unaffected.
    let to_globex = bucket_policy(r#"{"AWS":"globex"}"#, "Allow", "s3:GetObject", "");
    let mut partner = Case::new(carol(), "s3:GetObject", Some("k"))
        .identity(ALLOW_GET_ALL)
        .bucket(&to_globex);
    partner.pab = PublicAccessBlock::all();
    assert!(partner.decide().is_allowed());
    // A condition that pins the source makes it not public.
    let office = bucket_policy(
        r#""*""#,
        "Allow",
        "s3:GetObject",
        r#","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
    );
    let mut from_office = Case::new(Principal::Anonymous, "s3:GetObject", Some("k")).bucket(&office);
    from_office.pab = PublicAccessBlock::all();
    from_office.context.set_source_ip("10.1.1.1".parse().unwrap());
    assert!(from_office.decide().is_allowed());
}

#[test]
fn operations_map_to_actions_the_policies_name() {
    let readonly = r#"{"Statement":{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]}}"#;
    for (op, key, allowed) in [
        ("HeadObject", Some("k"), true),
        ("GetObject", Some("k"), true),
        ("HeadBucket", None, true),
        ("ListObjectsV2", None, true),
        ("PutObject", Some("k"), false),
        ("CompleteMultipartUpload", Some("k"), false),
        ("DeleteObjects", Some("k"), false),
        ("Frobnicate", None, false),
    ] {
        let case = Case::new(bob(), action_for(op, false), key).identity(readonly);
        assert_eq!(case.decide().is_allowed(), allowed, "{op}");
    }
    let versioned = Case::new(bob(), action_for("GetObject", true), Some("k")).identity(readonly);
    assert!(!versioned.decide().is_allowed(), "a version needs s3:GetObjectVersion");
}

#[test]
fn reasons_read_well() {
    let deny = Case::new(bob(), "s3:GetObject", Some("k"))
        .identity(r#"{"Statement":{"Sid":"NoReads","Effect":"Deny","Action":"s3:Get*","Resource":"*"}}"#);
    assert_eq!(
        deny.decide().to_string(),
        "denied by identity policy 1 statement 1 (Sid \"NoReads\")"
    );
    let none = Case::new(bob(), "s3:GetObject", Some("k"));
    assert_eq!(none.decide().to_string(), "denied by no statement allows");
    let admin = Case::new(Principal::tenant_root("acme"), "s3:GetObject", Some("k"));
    assert_eq!(admin.decide().reason(), &Reason::TenantAdmin);
}

/// A policy written for S3 names AWS services (log delivery, CloudTrail): it can be set, and
/// its statements name nobody here. An Allow to a service grants no one; a Deny to everyone
/// *but* a service (`NotPrincipal`) denies everyone.
#[test]
fn a_service_principal_names_nobody() {
    let to_logging = bucket_policy(r#"{"Service":"logging.s3.amazonaws.com"}"#, "Allow", "s3:PutObject", "");
    // Another tenant's user whose own tenant allows everything, and anonymous: the bucket's
    // side grants them nothing.
    for principal in [carol(), Principal::Anonymous] {
        let case = Case::new(principal.clone(), "s3:PutObject", Some("k"))
            .identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
            .bucket(&to_logging);
        assert!(!case.decide().is_allowed(), "{principal:?}: {:?}", case.decide());
    }
    let all_but_logging = r#"{"Version":"2012-10-17","Statement":[{"Sid":"d","Effect":"Deny","NotPrincipal":{"Service":"logging.s3.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}]}"#;
    let owner = Case::new(Principal::admin("acme", "root-ish"), "s3:GetObject", Some("k")).bucket(all_but_logging);
    assert_eq!(
        owner.decide(),
        Verdict::Denied {
            by: statement(PolicySource::Bucket, 0, Some("d"))
        }
    );
}
