//! How an agent's webhooks are verified: signature scheme, replay window, and the
//! webhook secret with its rotation overlap (the previous secret and its expiry).
//! The commands (validate, write, record the lifecycle event) come first, their SQL
//! after.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::agents::{self, AgentRecord, PreviousSecret, tolerance_column};
use super::commands::{CreateAgentError, check_tolerance, record};
use super::{CatalogError, timestamp};
use crate::crypto::{self, Sealer};
use crate::db::Db;
use crate::domain::AgentId;
use crate::events::EventStore;
use crate::events::agent::AgentEvent;
use crate::webhook::SignatureScheme;
use crate::with_db;

/// How long a rotated-out secret keeps verifying unless the caller says otherwise.
pub const DEFAULT_PREVIOUS_EXPIRES_IN_S: u64 = 86_400;

/// The longest overlap a rotation may ask for (30 days): a leaked secret must not be
/// kept alive indefinitely by "rotating" it.
pub const MAX_PREVIOUS_EXPIRES_IN_S: u64 = 30 * 86_400;

/// Changes the scheme and/or replay window; records `AgentUpdated` with what changed.
pub async fn update_signature_settings(
    db: &Db,
    store: &Arc<dyn EventStore>,
    agent: &AgentRecord,
    scheme: Option<SignatureScheme>,
    tolerance_s: Option<u64>,
) -> Result<(), CreateAgentError> {
    let tolerance_s = tolerance_s.map(check_tolerance).transpose()?;
    let scheme_changed = scheme.filter(|s| *s != agent.signature_scheme);
    let tolerance_changed = tolerance_s.filter(|t| *t != agent.timestamp_tolerance_s);
    if scheme_changed.is_none() && tolerance_changed.is_none() {
        return Ok(());
    }
    let done = set_signature_settings(
        db,
        &agent.agent_id,
        scheme_changed.unwrap_or(agent.signature_scheme),
        tolerance_changed.unwrap_or(agent.timestamp_tolerance_s),
    )
    .await?;
    if !done {
        return Err(CatalogError::NotFound(format!("agent {}", agent.agent_id)).into());
    }
    let event = AgentEvent::AgentUpdated {
        agent_id: agent.agent_id.to_string(),
        signature_scheme: scheme_changed.map(|s| s.as_str().to_owned()),
        timestamp_tolerance_s: tolerance_changed,
    };
    record(store, agent, event).await?;
    Ok(())
}

/// A new webhook secret; the current one keeps verifying for `previous_expires_in_s`
/// (0: it stops at once and is not kept). Returns the new secret (as stored) and when
/// the previous one expires. Records `WebhookSecretRotated` (without either secret).
pub async fn rotate_secret(
    db: &Db,
    store: &Arc<dyn EventStore>,
    sealer: &Sealer,
    agent: &AgentRecord,
    previous_expires_in_s: u64,
) -> Result<(String, DateTime<Utc>), CreateAgentError> {
    if previous_expires_in_s > MAX_PREVIOUS_EXPIRES_IN_S {
        return Err(CreateAgentError::Invalid(format!(
            "previous_expires_in_s must be at most {MAX_PREVIOUS_EXPIRES_IN_S} (30 days)"
        )));
    }
    let id = &agent.agent_id;
    let now = Utc::now();
    let expires_at = now + chrono::Duration::seconds(previous_expires_in_s as i64);
    let previous = if previous_expires_in_s == 0 {
        None
    } else {
        // Resealed under the previous-secret field's own associated data.
        let current = sealer
            .open(
                &agent.webhook_secret_sealed,
                agents::webhook_secret_aad(id).as_bytes(),
            )
            .map_err(|e| CatalogError::Corrupt(format!("agent {id}: webhook secret: {e}")))?;
        Some(PreviousSecret {
            sealed: sealer.seal(&current, agents::previous_secret_aad(id).as_bytes()),
            expires_at,
        })
    };
    let secret = crypto::generate_webhook_secret();
    let sealed = sealer.seal(secret.as_bytes(), agents::webhook_secret_aad(id).as_bytes());
    if !rotate(
        db,
        id,
        &agent.webhook_secret_sealed,
        &sealed,
        previous.as_ref(),
    )
    .await?
    {
        return Err(CreateAgentError::Conflict(format!(
            "the webhook secret of agent {id} changed while rotating it (another rotation?); \
             read it again and retry"
        )));
    }
    let event = AgentEvent::WebhookSecretRotated {
        agent_id: id.to_string(),
        previous_expires_at: previous.as_ref().map(|p| timestamp(p.expires_at)),
    };
    record(store, agent, event).await?;
    Ok((secret, expires_at))
}

/// Sets the signature scheme and replay window. Returns false if no such agent.
pub async fn set_signature_settings(
    db: &Db,
    agent_id: &AgentId,
    scheme: SignatureScheme,
    tolerance_s: u64,
) -> Result<bool, CatalogError> {
    let now = timestamp(Utc::now());
    let done = with_db!(db, |pool| {
        sqlx::query(
            "UPDATE agents SET signature_scheme = $2, timestamp_tolerance_s = $3, \
             config_version = config_version + 1, updated_at = $4 WHERE agent_id = $1",
        )
        .bind(agent_id.to_string())
        .bind(scheme.as_str())
        .bind(tolerance_column(tolerance_s))
        .bind(&now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Installs a new current secret and the previous one (or none), only if the current
/// secret is still `expected_current`: of two concurrent rotations exactly one wins,
/// and the loser does not silently drop the winner's secret. Returns whether it won.
pub async fn rotate(
    db: &Db,
    agent_id: &AgentId,
    expected_current: &str,
    new_sealed: &str,
    previous: Option<&PreviousSecret>,
) -> Result<bool, CatalogError> {
    let now = timestamp(Utc::now());
    let previous_sealed = previous.map(|p| p.sealed.as_str());
    let previous_expires = previous.map(|p| timestamp(p.expires_at));
    let done = with_db!(db, |pool| {
        sqlx::query(
            "UPDATE agents SET webhook_secret_sealed = $3, previous_secret_sealed = $4, \
             previous_secret_expires_at = $5, config_version = config_version + 1, \
             updated_at = $6 WHERE agent_id = $1 AND webhook_secret_sealed = $2",
        )
        .bind(agent_id.to_string())
        .bind(expected_current)
        .bind(new_sealed)
        .bind(previous_sealed)
        .bind(&previous_expires)
        .bind(&now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}
