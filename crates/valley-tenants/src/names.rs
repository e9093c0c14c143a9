//! What tenant ids and user names may be: they appear in ARNs (`arn:aws:iam::TENANT:user/NAME`)
//! and in control-record keys, so both are kept to characters that need no escaping there.

use crate::TenantError;

/// 2–63 lowercase letters, digits and hyphens, starting with a letter or digit.
pub fn check_tenant_id(id: &str) -> Result<(), TenantError> {
    let ok = (2..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(TenantError::Invalid(format!(
            "tenant id {id:?}: use 2-63 lowercase letters, digits and hyphens, not starting with a hyphen"
        )))
    }
}

/// 1–64 characters from IAM's set for user names: letters, digits and `+=,.@_-`.
pub fn check_user_name(name: &str) -> Result<(), TenantError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TenantError::Invalid(format!(
            "user name {name:?}: use 1-64 letters, digits and +=,.@_-"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_arns_need_no_escaping() {
        for good in ["acme", "cn-hospital-7", "00"] {
            assert!(check_tenant_id(good).is_ok(), "{good}");
        }
        for bad in ["a", "-acme", "Acme", "acme/x", "acme:x", "", &"a".repeat(64)] {
            assert!(check_tenant_id(bad).is_err(), "{bad}");
        }
        for good in ["alice", "svc.backup@ops", "a_b-c+d=e,f"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a b", "a:b", &"u".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
