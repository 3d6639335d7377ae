//! Tenant ids: short slugs chosen by the operator (`acme`, `team-7`).

use super::InvalidValue;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// 1–64 characters of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(TenantId(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "invalid tenant_id {raw:?}: use 1-64 characters of a-z, 0-9, '-' and '_', \
                 starting with a letter or digit"
            )))
        }
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TenantId;

    #[test]
    fn accepts_slugs_and_rejects_everything_else() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("team-7_b").is_ok());
        for bad in ["", "-acme", "Acme", "a b", "a/b", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
