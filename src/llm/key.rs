//! Key resolution: the tenant's own gateway key (BYOK) when it has one, the platform
//! key otherwise.

use crate::events::execution::KeySource;

/// The bearer token for one call and where it came from (recorded in `LlmCalled`).
#[derive(Clone)]
pub struct ResolvedKey {
    pub source: KeySource,
    pub key: Option<String>,
}

impl std::fmt::Debug for ResolvedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("ResolvedKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

pub fn resolve_key(tenant_key: Option<String>, platform_key: Option<&str>) -> ResolvedKey {
    match tenant_key {
        Some(key) => ResolvedKey {
            source: KeySource::Tenant,
            key: Some(key),
        },
        None => ResolvedKey {
            source: KeySource::Platform,
            key: platform_key.map(str::to_owned),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_key_wins_over_platform_key() {
        let k = resolve_key(Some("sk-tenant".into()), Some("sk-platform"));
        assert_eq!(
            (k.source, k.key.as_deref()),
            (KeySource::Tenant, Some("sk-tenant"))
        );
        let k = resolve_key(None, Some("sk-platform"));
        assert_eq!(
            (k.source, k.key.as_deref()),
            (KeySource::Platform, Some("sk-platform"))
        );
        assert!(!format!("{k:?}").contains("sk-platform"));
    }
}
