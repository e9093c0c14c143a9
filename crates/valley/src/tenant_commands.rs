//! `valley tenant|user|key`: each one call to the admin API's tenant routes.

use anyhow::Context;
use valley_tenants::{KeyView, NewCredentials, Quota};

use crate::admin_tenants::{KeyRequest, PublicAccessBlockRequest, TenantRequest, TenantShow, UserRequest};
use crate::cli::{
    KeyCommand, PublicAccessBlockCommand, QuotaArgs, QuotaCommand, TenantCommand, UserCommand, UserPolicyCommand,
};
use crate::commands::{AdminClient, q};

fn quota_of(args: QuotaArgs) -> Quota {
    Quota {
        bytes: args.bytes,
        objects: args.objects,
        buckets: args.buckets,
    }
}

fn body(value: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn limit(value: Option<u64>) -> String {
    value.map_or_else(|| "unlimited".to_owned(), |v| v.to_string())
}

pub async fn tenant(admin: &AdminClient, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Add { id, quota } => {
            let request = TenantRequest {
                id: id.clone(),
                quota: quota_of(quota),
            };
            admin.call(http::Method::POST, "tenants", body(&request)?).await?;
            println!("tenant {id} added");
        }
        TenantCommand::List { json } => {
            let answer = admin.call(http::Method::GET, "tenants", Vec::new()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
            } else {
                let ids: Vec<String> = serde_json::from_slice(&answer).context("reading the hub's answer")?;
                for id in ids {
                    println!("{id}");
                }
            }
        }
        TenantCommand::Show { id, json } => {
            let answer = admin
                .call(http::Method::GET, &format!("tenants?id={}", q(&id)), Vec::new())
                .await?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
                return Ok(());
            }
            let shown: TenantShow = serde_json::from_slice(&answer).context("reading the hub's answer")?;
            let view = &shown.tenant;
            println!("tenant {}", view.id);
            println!(
                "  held at the asked hub: {} object versions, {} bytes",
                shown.objects_here, shown.bytes_here
            );
            println!(
                "  quota: bytes {}, objects {}, buckets {}",
                limit(view.quota.bytes),
                limit(view.quota.objects),
                limit(view.quota.buckets)
            );
            println!(
                "  buckets: {}",
                if view.buckets.is_empty() {
                    "none".to_owned()
                } else {
                    view.buckets.join(", ")
                }
            );
            for user in &view.users {
                println!(
                    "  user {}{}  ({})",
                    user.name,
                    if user.admin { " [admin]" } else { "" },
                    user.arn
                );
                for key in &user.keys {
                    println!(
                        "    key {}{}",
                        key.access_key,
                        if key.revoked { " (revoked)" } else { "" }
                    );
                }
            }
        }
        TenantCommand::Remove { id } => {
            admin
                .call(http::Method::DELETE, &format!("tenants?id={}", q(&id)), Vec::new())
                .await?;
            println!("tenant {id} removed: its users and keys no longer work");
        }
        TenantCommand::PublicAccessBlock {
            command:
                PublicAccessBlockCommand::Set {
                    id,
                    block_public_acls,
                    ignore_public_acls,
                    block_public_policy,
                    restrict_public_buckets,
                },
        } => {
            let request = PublicAccessBlockRequest {
                id: id.clone(),
                block: valley_access::PublicAccessBlock {
                    block_public_acls,
                    ignore_public_acls,
                    block_public_policy,
                    restrict_public_buckets,
                },
            };
            admin
                .call(http::Method::PUT, "tenant-public-access-block", body(&request)?)
                .await?;
            println!("public access block of tenant {id} set");
        }
        TenantCommand::Quota {
            command: QuotaCommand::Set { id, quota },
        } => {
            let request = TenantRequest {
                id: id.clone(),
                quota: quota_of(quota),
            };
            admin.call(http::Method::PUT, "tenant-quota", body(&request)?).await?;
            println!("quota of tenant {id} set");
        }
    }
    Ok(())
}

fn print_credentials(answer: &[u8], json: bool) -> anyhow::Result<()> {
    let creds: NewCredentials = serde_json::from_slice(answer).context("reading the hub's answer")?;
    if json {
        println!("{}", serde_json::to_string(&creds)?);
    } else {
        println!("user {}/{} ({})", creds.tenant, creds.user, creds.arn);
        println!("  access key: {}", creds.access_key);
        println!("  secret key: {}", creds.secret_key);
        println!("  (the secret key is shown only now)");
    }
    Ok(())
}

pub async fn user(admin: &AdminClient, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            tenant,
            name,
            admin_of_tenant,
            json,
        } => {
            let request = UserRequest {
                tenant,
                name,
                admin: admin_of_tenant,
            };
            let answer = admin.call(http::Method::POST, "users", body(&request)?).await?;
            print_credentials(&answer, json)?;
        }
        UserCommand::Policy { command } => user_policy(admin, command).await?,
        UserCommand::Remove { tenant, name } => {
            let route = format!("users?tenant={}&name={}", q(&tenant), q(&name));
            admin.call(http::Method::DELETE, &route, Vec::new()).await?;
            println!("user {tenant}/{name} removed: its keys no longer work");
        }
    }
    Ok(())
}

pub async fn key(admin: &AdminClient, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Add { tenant, user, json } => {
            let request = KeyRequest { tenant, user };
            let answer = admin.call(http::Method::POST, "keys", body(&request)?).await?;
            print_credentials(&answer, json)?;
        }
        KeyCommand::List { tenant, json } => {
            let route = match &tenant {
                Some(t) => format!("keys?tenant={}", q(t)),
                None => "keys".to_owned(),
            };
            let answer = admin.call(http::Method::GET, &route, Vec::new()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
                return Ok(());
            }
            let keys: Vec<KeyView> = serde_json::from_slice(&answer).context("reading the hub's answer")?;
            for k in keys {
                println!(
                    "{}  {}/{}{}",
                    k.access_key,
                    k.tenant,
                    k.user,
                    if k.revoked { "  (revoked)" } else { "" }
                );
            }
        }
        KeyCommand::Revoke { access_key } => {
            admin
                .call(
                    http::Method::DELETE,
                    &format!("keys?access_key={}", q(&access_key)),
                    Vec::new(),
                )
                .await?;
            println!("access key {access_key} revoked");
        }
        KeyCommand::Destroy {
            tenant,
            bucket,
            name,
            json,
        } => {
            let request = crate::admin_kms::DestroyRequest { tenant, name, bucket };
            let answer = admin
                .call(http::Method::POST, crate::admin_kms::ROUTE, body(&request)?)
                .await?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
                return Ok(());
            }
            let answer: crate::admin_kms::DestroyAnswer =
                serde_json::from_slice(&answer).context("reading the hub's answer")?;
            for record in answer.records {
                println!("{}", valley_tenants::Change::KmsKey(record).describe());
            }
        }
    }
    Ok(())
}

async fn user_policy(admin: &AdminClient, command: UserPolicyCommand) -> anyhow::Result<()> {
    let route = |tenant: &str, name: &str| format!("user-policy?tenant={}&name={}", q(tenant), q(name));
    match command {
        UserPolicyCommand::Set { tenant, name, file } => {
            let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            admin.call(http::Method::PUT, &route(&tenant, &name), text).await?;
            println!("policy of user {tenant}/{name} set");
        }
        UserPolicyCommand::Show { tenant, name } => {
            let policy = admin
                .call(http::Method::GET, &route(&tenant, &name), Vec::new())
                .await?;
            println!("{}", String::from_utf8_lossy(&policy));
        }
        UserPolicyCommand::Delete { tenant, name } => {
            admin
                .call(http::Method::DELETE, &route(&tenant, &name), Vec::new())
                .await?;
            println!("policy of user {tenant}/{name} removed");
        }
    }
    Ok(())
}
