//! The admin API's tenant calls. The operator (root credentials) manages tenants, quotas and
//! every tenant's users and keys; a tenant's admin user manages its own tenant's users and
//! keys, with its own access key. Works on a lone hub as on a network (there the records
//! replicate to every hub).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use valley_replicate::wire;
use valley_tenants::{Directory, Principal, Quota, TenantError};

use crate::admin::{json, reply};

/// The routes handled here.
pub const ROUTES: [&str; 6] = [
    "tenants",
    "users",
    "keys",
    "tenant-quota",
    "user-policy",
    "tenant-public-access-block",
];

#[derive(Debug, Serialize, Deserialize)]
pub struct PublicAccessBlockRequest {
    pub id: String,
    pub block: valley_access::PublicAccessBlock,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TenantRequest {
    pub id: String,
    #[serde(default)]
    pub quota: Quota,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserRequest {
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeyRequest {
    pub tenant: String,
    pub user: String,
}

fn tenant_error(e: &TenantError) -> Response<Bytes> {
    let status = match e {
        TenantError::Invalid(_) => StatusCode::BAD_REQUEST,
        TenantError::NotFound(_) => StatusCode::NOT_FOUND,
        TenantError::Conflict(_) => StatusCode::CONFLICT,
        TenantError::Seal(_) | TenantError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reply(status, e.to_string())
}

fn answer<T: Serialize>(result: Result<T, TenantError>) -> Response<Bytes> {
    match result {
        Ok(value) => json(&value),
        Err(e) => tenant_error(&e),
    }
}

/// A call refused before it reached the directory: answered with its status and reason.
struct Refusal(StatusCode, String);

fn forbidden(why: String) -> Refusal {
    Refusal(StatusCode::FORBIDDEN, why)
}

fn bad_request(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, why.into())
}

/// Whether `caller` may manage the users and keys of `tenant`.
fn may_manage(caller: &Principal, tenant: &str) -> Result<(), Refusal> {
    if caller.operator || (caller.admin && caller.tenant == tenant) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "{} may not manage tenant {tenant}: only the operator or an admin of that tenant",
            caller.arn()
        )))
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed {what}: {e}")))
}

/// A tenant as `valley tenant show` prints it, with what this hub holds of it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantShow {
    #[serde(flatten)]
    pub tenant: valley_tenants::TenantView,
    /// Object versions and bytes the asked hub holds of the tenant's buckets.
    pub objects_here: u64,
    pub bytes_here: u64,
}

async fn show(directory: &Directory, catalog: &valley_store::Catalog, id: &str) -> Result<TenantShow, TenantError> {
    let tenant = directory.show(id)?;
    let (mut objects_here, mut bytes_here) = (0, 0);
    for bucket in &tenant.buckets {
        if let Ok((o, b)) = catalog.bucket_usage(bucket).await {
            objects_here += o;
            bytes_here += b;
        }
    }
    Ok(TenantShow {
        tenant,
        objects_here,
        bytes_here,
    })
}

pub async fn handle(
    directory: &Directory,
    catalog: &valley_store::Catalog,
    caller: &Principal,
    method: &Method,
    route: &str,
    query: &str,
    body: &Bytes,
) -> Response<Bytes> {
    match route_call(directory, catalog, caller, method, route, query, body).await {
        Ok(r) => r,
        Err(Refusal(status, why)) => reply(status, why),
    }
}

async fn route_call(
    directory: &Directory,
    catalog: &valley_store::Catalog,
    caller: &Principal,
    method: &Method,
    route: &str,
    query: &str,
    body: &Bytes,
) -> Result<Response<Bytes>, Refusal> {
    let param = |name: &str| wire::query_param(query, name);
    let operator_only = || {
        if caller.operator {
            Ok(())
        } else {
            Err(forbidden(format!(
                "{} may not manage tenants: only the operator (root credentials)",
                caller.arn()
            )))
        }
    };
    Ok(match (method, route) {
        (&Method::GET, "tenants") => match param("id") {
            Some(id) => {
                may_manage(caller, &id)?;
                answer(show(directory, catalog, &id).await)
            }
            None if caller.operator => json(&directory.tenants()),
            None => json(&vec![caller.tenant.clone()]),
        },
        (&Method::POST, "tenants") => {
            operator_only()?;
            let request: TenantRequest = parse(body, "tenant")?;
            answer(directory.add_tenant(&request.id, request.quota).await.map(|()| "ok"))
        }
        (&Method::DELETE, "tenants") => {
            operator_only()?;
            let id = param("id").ok_or_else(|| bad_request("id is required"))?;
            answer(directory.remove_tenant(&id).await.map(|()| "ok"))
        }
        (&Method::PUT, "tenant-quota") => {
            operator_only()?;
            let request: TenantRequest = parse(body, "quota")?;
            answer(directory.set_quota(&request.id, request.quota).await.map(|()| "ok"))
        }
        (&Method::PUT, "tenant-public-access-block") => {
            let request: PublicAccessBlockRequest = parse(body, "public access block")?;
            may_manage(caller, &request.id)?;
            answer(
                directory
                    .set_tenant_public_access_block(&request.id, request.block)
                    .await
                    .map(|()| "ok"),
            )
        }
        (&Method::POST, "users") => {
            let request: UserRequest = parse(body, "user")?;
            may_manage(caller, &request.tenant)?;
            answer(directory.add_user(&request.tenant, &request.name, request.admin).await)
        }
        (&Method::DELETE, "users") => {
            let (Some(tenant), Some(name)) = (param("tenant"), param("name")) else {
                return Err(bad_request("tenant and name are required"));
            };
            may_manage(caller, &tenant)?;
            answer(directory.remove_user(&tenant, &name).await.map(|()| "ok"))
        }
        (&Method::GET | &Method::PUT | &Method::DELETE, "user-policy") => {
            let (Some(tenant), Some(name)) = (param("tenant"), param("name")) else {
                return Err(bad_request("tenant and name are required"));
            };
            may_manage(caller, &tenant)?;
            match *method {
                Method::GET => match directory.user_policy(&tenant, &name) {
                    Ok(Some(policy)) => reply(StatusCode::OK, policy),
                    Ok(None) => reply(StatusCode::NOT_FOUND, format!("user {tenant}/{name} has no policy")),
                    Err(e) => tenant_error(&e),
                },
                Method::PUT => {
                    let text = String::from_utf8(body.to_vec()).map_err(|_| bad_request("a policy is UTF-8 JSON"))?;
                    answer(
                        directory
                            .set_user_policy(&tenant, &name, Some(text))
                            .await
                            .map(|()| "ok"),
                    )
                }
                _ => answer(directory.set_user_policy(&tenant, &name, None).await.map(|()| "ok")),
            }
        }
        (&Method::GET, "keys") => {
            let tenant = match param("tenant") {
                Some(t) => {
                    may_manage(caller, &t)?;
                    Some(t)
                }
                None if caller.operator => None,
                None => Some(caller.tenant.clone()),
            };
            json(&directory.keys(tenant.as_deref()))
        }
        (&Method::POST, "keys") => {
            let request: KeyRequest = parse(body, "key")?;
            may_manage(caller, &request.tenant)?;
            answer(directory.add_key(&request.tenant, &request.user).await)
        }
        (&Method::DELETE, "keys") => {
            let key = param("access_key").ok_or_else(|| bad_request("access_key is required"))?;
            let scope = (!caller.operator).then_some(caller.tenant.as_str());
            if !caller.operator && !caller.admin {
                return Err(forbidden(format!("{} may not revoke keys", caller.arn())));
            }
            answer(directory.revoke_key(&key, scope).await.map(|()| "ok"))
        }
        _ => reply(StatusCode::NOT_FOUND, "no such admin call"),
    })
}
