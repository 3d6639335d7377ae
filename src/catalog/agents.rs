//! Agents: their prompt, LLM configuration, payload schema, status and sealed secrets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{CatalogError, is_unique_violation, timestamp};
use crate::crypto::Sealer;
use crate::db::Db;
use crate::domain::{AgentId, TenantId};
use crate::webhook::SignatureScheme;
use crate::{with_db, with_db_read};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Active,
    Paused,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Paused => "paused",
        }
    }

    fn parse(raw: &str) -> Result<Self, CatalogError> {
        match raw {
            "active" => Ok(AgentStatus::Active),
            "paused" => Ok(AgentStatus::Paused),
            other => Err(CatalogError::Corrupt(format!("agent status {other:?}"))),
        }
    }
}

/// The agent's model and request parameters, passed to the gateway as they are
/// (`temperature`, `max_tokens`, …), except the keys hookrun sets itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    pub model: String,
    /// Retries of failed calls (hookrun's own key, not sent to the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::llm::RetryPolicy>,
    /// Request timeout in seconds (hookrun's own key; default `HOOKRUN_LLM_TIMEOUT_S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Request keys an agent's `llm_config` may not set: hookrun owns them.
const RESERVED_PARAMS: [&str; 3] = ["messages", "stream", "n"];

impl LlmConfig {
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let config: LlmConfig = serde_json::from_value(value.clone())
            .map_err(|e| format!("llm_config must be an object with a \"model\" string: {e}"))?;
        if config.model.trim().is_empty() {
            return Err("llm_config.model must not be empty".into());
        }
        if let Some(key) = RESERVED_PARAMS
            .iter()
            .find(|k| config.params.contains_key(**k))
        {
            return Err(format!(
                "llm_config.{key} is set by hookrun and cannot be configured"
            ));
        }
        if let Some(retry) = &config.retry {
            retry.validate()?;
        }
        if config.timeout_s.is_some_and(|t| t == 0 || t > 3600) {
            return Err("llm_config.timeout_s must be between 1 and 3600".into());
        }
        Ok(config)
    }
}

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub agent_id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    pub system_prompt: String,
    pub llm_config: LlmConfig,
    pub payload_schema: Option<serde_json::Value>,
    pub status: AgentStatus,
    pub signature_scheme: SignatureScheme,
    /// Replay window of timestamped schemes, in seconds either way.
    pub timestamp_tolerance_s: u64,
    pub webhook_secret_sealed: String,
    /// The secret replaced by the last rotation, while it still verifies.
    pub previous_secret: Option<PreviousSecret>,
    pub llm_key_sealed: Option<String>,
    /// Bumped on every configuration change (caches key on it).
    pub config_version: i64,
    pub created_at: DateTime<Utc>,
}

/// A rotated-out webhook secret (sealed with [`previous_secret_aad`]) and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub sealed: String,
    pub expires_at: DateTime<Utc>,
}

impl AgentRecord {
    /// The current webhook secret, unsealed.
    pub fn webhook_secret(&self, sealer: &Sealer) -> Result<String, String> {
        open_text(
            sealer,
            &self.webhook_secret_sealed,
            &webhook_secret_aad(&self.agent_id),
        )
    }

    /// The previous webhook secret, unsealed, if it still verifies at `now`.
    pub fn live_previous_webhook_secret(
        &self,
        sealer: &Sealer,
        now: DateTime<Utc>,
    ) -> Option<Result<String, String>> {
        self.live_previous_secret(now)
            .map(|p| open_text(sealer, &p.sealed, &previous_secret_aad(&self.agent_id)))
    }

    /// The previous secret if it has not expired at `now`.
    pub fn live_previous_secret(&self, now: DateTime<Utc>) -> Option<&PreviousSecret> {
        self.previous_secret.as_ref().filter(|p| p.expires_at > now)
    }
}

/// Lowest and highest accepted `timestamp_tolerance_s`.
pub const TOLERANCE_RANGE_S: std::ops::RangeInclusive<u64> = 1..=86_400;

const COLUMNS: &str = "agent_id, tenant_id, name, system_prompt, llm_config, payload_schema, \
    status, signature_scheme, timestamp_tolerance_s, webhook_secret_sealed, \
    previous_secret_sealed, previous_secret_expires_at, llm_key_sealed, config_version, created_at";

pub async fn insert(db: &Db, agent: &AgentRecord) -> Result<(), CatalogError> {
    let created = timestamp(agent.created_at);
    let llm_config = serde_json::to_string(&agent.llm_config).expect("serializable");
    let schema = agent.payload_schema.as_ref().map(|s| s.to_string());
    let result = with_db!(db, |pool| {
        sqlx::query(
            "INSERT INTO agents (agent_id, tenant_id, name, system_prompt, llm_config, \
             payload_schema, status, signature_scheme, webhook_secret_sealed, llm_key_sealed, \
             config_version, created_at, updated_at, timestamp_tolerance_s) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)",
        )
        .bind(agent.agent_id.to_string())
        .bind(agent.tenant_id.as_ref())
        .bind(&agent.name)
        .bind(&agent.system_prompt)
        .bind(&llm_config)
        .bind(&schema)
        .bind(agent.status.as_str())
        .bind(agent.signature_scheme.as_str())
        .bind(&agent.webhook_secret_sealed)
        .bind(&agent.llm_key_sealed)
        .bind(agent.config_version)
        .bind(&created)
        .bind(tolerance_column(agent.timestamp_tolerance_s))
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(CatalogError::AlreadyExists(format!(
            "agent {}",
            agent.agent_id
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &Db, agent_id: &AgentId) -> Result<Option<AgentRecord>, CatalogError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM agents WHERE agent_id = $1"));
    let row = with_db_read!(db, |pool| {
        match sqlx::query(sql)
            .bind(agent_id.to_string())
            .fetch_optional(pool)
            .await?
        {
            Some(row) => Some(raw_agent(&row)?),
            None => None,
        }
    });
    row.map(RawAgent::into_record).transpose()
}

/// The agents among `ids` that exist, in no particular order, in one query.
pub async fn get_many(db: &Db, ids: &[AgentId]) -> Result<Vec<AgentRecord>, CatalogError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows = match db {
        Db::Sqlite(sqlite) => {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM agents WHERE agent_id IN (SELECT value FROM json_each($1))"
            ));
            let ids = serde_json::to_string(&ids).expect("strings serialize");
            let rows = sqlx::query(sql).bind(ids).fetch_all(&sqlite.reader).await?;
            rows.iter().map(raw_agent).collect::<Result<Vec<_>, _>>()?
        }
        Db::Postgres(pg) => {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM agents WHERE agent_id = ANY($1)"
            ));
            let rows = sqlx::query(sql).bind(ids).fetch_all(pg).await?;
            rows.iter().map(raw_agent).collect::<Result<Vec<_>, _>>()?
        }
    };
    rows.into_iter().map(RawAgent::into_record).collect()
}

fn raw_agent<'r, R: Row>(row: &'r R) -> Result<RawAgent, sqlx::Error>
where
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawAgent {
        agent_id: row.try_get("agent_id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        system_prompt: row.try_get("system_prompt")?,
        llm_config: row.try_get("llm_config")?,
        payload_schema: row.try_get("payload_schema")?,
        status: row.try_get("status")?,
        signature_scheme: row.try_get("signature_scheme")?,
        timestamp_tolerance_s: row.try_get("timestamp_tolerance_s")?,
        webhook_secret_sealed: row.try_get("webhook_secret_sealed")?,
        previous_secret_sealed: row.try_get("previous_secret_sealed")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        llm_key_sealed: row.try_get("llm_key_sealed")?,
        config_version: row.try_get("config_version")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Sets the tenant's own gateway key (sealed). Returns false if no such agent.
pub async fn set_llm_key(db: &Db, agent_id: &AgentId, sealed: &str) -> Result<bool, CatalogError> {
    update(
        db,
        "UPDATE agents SET llm_key_sealed = $2, config_version = config_version + 1, \
         updated_at = $3 WHERE agent_id = $1",
        agent_id,
        sealed,
    )
    .await
}

/// Pauses or activates an agent. Returns false if no such agent.
pub async fn set_status(
    db: &Db,
    agent_id: &AgentId,
    status: AgentStatus,
) -> Result<bool, CatalogError> {
    update(
        db,
        "UPDATE agents SET status = $2, config_version = config_version + 1, \
         updated_at = $3 WHERE agent_id = $1",
        agent_id,
        status.as_str(),
    )
    .await
}

async fn update(
    db: &Db,
    sql: &'static str,
    agent_id: &AgentId,
    value: &str,
) -> Result<bool, CatalogError> {
    let now = timestamp(Utc::now());
    let done = with_db!(db, |pool| {
        sqlx::query(sql)
            .bind(agent_id.to_string())
            .bind(value)
            .bind(&now)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

/// A row as stored, before parsing.
struct RawAgent {
    agent_id: String,
    tenant_id: String,
    name: String,
    system_prompt: String,
    llm_config: String,
    payload_schema: Option<String>,
    status: String,
    signature_scheme: String,
    timestamp_tolerance_s: i64,
    webhook_secret_sealed: String,
    previous_secret_sealed: Option<String>,
    previous_secret_expires_at: Option<String>,
    llm_key_sealed: Option<String>,
    config_version: i64,
    created_at: String,
}

impl RawAgent {
    fn into_record(self) -> Result<AgentRecord, CatalogError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            CatalogError::Corrupt(format!("agent {}: {what}: {e}", self.agent_id))
        };
        let llm_config = serde_json::from_str::<serde_json::Value>(&self.llm_config)
            .map_err(|e| corrupt("llm_config", &e))
            .and_then(|v| LlmConfig::parse(&v).map_err(|e| corrupt("llm_config", &e)))?;
        let parse_time = |what: &str, raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(what, &e))
        };
        let previous_secret = match (
            &self.previous_secret_sealed,
            &self.previous_secret_expires_at,
        ) {
            (Some(sealed), Some(expires)) => Some(PreviousSecret {
                sealed: sealed.clone(),
                expires_at: parse_time("previous_secret_expires_at", expires)?,
            }),
            _ => None,
        };
        let payload_schema = self
            .payload_schema
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("payload_schema", &e))?;
        Ok(AgentRecord {
            agent_id: AgentId::parse(&self.agent_id).map_err(|e| corrupt("id", &e))?,
            tenant_id: TenantId::parse(&self.tenant_id).map_err(|e| corrupt("tenant", &e))?,
            created_at: parse_time("created_at", &self.created_at)?,
            status: AgentStatus::parse(&self.status)?,
            signature_scheme: self
                .signature_scheme
                .parse()
                .map_err(|e| corrupt("signature_scheme", &e))?,
            timestamp_tolerance_s: u64::try_from(self.timestamp_tolerance_s)
                .map_err(|e| corrupt("timestamp_tolerance_s", &e))?,
            previous_secret,
            name: self.name,
            system_prompt: self.system_prompt,
            llm_config,
            payload_schema,
            webhook_secret_sealed: self.webhook_secret_sealed,
            llm_key_sealed: self.llm_key_sealed,
            config_version: self.config_version,
        })
    }
}

fn open_text(sealer: &Sealer, sealed: &str, aad: &str) -> Result<String, String> {
    let bytes = sealer
        .open(sealed, aad.as_bytes())
        .map_err(|e| format!("cannot be unsealed: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "is not text".to_owned())
}

/// Associated data binding a sealed webhook secret to its agent (a sealed value copied
/// to another row does not open).
pub fn webhook_secret_aad(agent_id: &AgentId) -> String {
    format!("agent:{agent_id}:webhook_secret")
}

/// Associated data of the previous webhook secret during a rotation overlap (a
/// different field from the current secret, so the two sealed values cannot be swapped).
pub fn previous_secret_aad(agent_id: &AgentId) -> String {
    format!("agent:{agent_id}:previous_webhook_secret")
}

/// Tolerances are validated to [`TOLERANCE_RANGE_S`], so they fit the i64 column.
pub(super) fn tolerance_column(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// Associated data binding a sealed tenant gateway key to its agent.
pub fn llm_key_aad(agent_id: &AgentId) -> String {
    format!("agent:{agent_id}:llm_key")
}
