//! Registering many agents fast by inserting catalog rows directly.
//!
//! Creating an agent through the API costs a catalog insert plus an `AgentRegistered`
//! append (two durable commits); for 100,000 agents the suite creates the first ones
//! through the API (and reports that rate) and inserts the rest here, sealing each
//! webhook secret exactly as hookrun does: XChaCha20-Poly1305 under the master key,
//! random 24-byte nonce, associated data `agent:{id}:webhook_secret`, text form
//! `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. Rows inserted this way have no
//! `AgentRegistered` event (the webhook path never reads it). The scenario checks that a
//! seeded agent accepts a signed webhook, so a drift in the format fails loudly.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::api::agent_body;
use crate::load::Target;
use crate::readmodel::Db;
use crate::server::MASTER_KEY;

/// Rows per insert transaction.
const BATCH: usize = 1000;

struct Row {
    agent_id: String,
    sealed: String,
}

/// Inserts `n` active agents of `tenant` (with the benchmark schema) and returns them.
pub async fn insert_agents(db: &Db, tenant: &str, n: usize) -> anyhow::Result<Vec<Target>> {
    let body = agent_body("bench-seeded");
    let llm_config = body["llm_config"].to_string();
    let schema = body["payload_schema"].to_string();
    let prompt = body["system_prompt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let now = chrono_like_now();
    let mut targets = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + BATCH).min(n);
        let mut rows = Vec::with_capacity(end - start);
        for _ in start..end {
            let agent_id = uuid::Uuid::new_v4().to_string();
            let key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                .iter()
                .flat_map(|u| *u.as_bytes())
                .collect();
            let secret = STANDARD.encode(&key);
            let aad = format!("agent:{agent_id}:webhook_secret");
            rows.push(Row {
                sealed: seal(secret.as_bytes(), aad.as_bytes()),
                agent_id: agent_id.clone(),
            });
            targets.push(Target { agent_id, key });
        }
        insert_batch(db, tenant, &rows, &prompt, &llm_config, &schema, &now).await?;
        start = end;
    }
    Ok(targets)
}

async fn insert_batch(
    db: &Db,
    tenant: &str,
    rows: &[Row],
    prompt: &str,
    llm_config: &str,
    schema: &str,
    now: &str,
) -> anyhow::Result<()> {
    const COLUMNS: &str = "agent_id, tenant_id, name, system_prompt, llm_config, \
        payload_schema, status, signature_scheme, webhook_secret_sealed, llm_key_sealed, \
        config_version, created_at, updated_at";
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let sql = format!(
                "INSERT INTO agents ({COLUMNS}) VALUES \
                 (?1, ?2, 'bench-seeded', ?3, ?4, ?5, 'active', 'github', ?6, NULL, 1, ?7, ?7)"
            );
            for row in rows {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&row.agent_id)
                    .bind(tenant)
                    .bind(prompt)
                    .bind(llm_config)
                    .bind(schema)
                    .bind(&row.sealed)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .context("insert agent (SQLite)")?;
            }
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let ids: Vec<&str> = rows.iter().map(|r| r.agent_id.as_str()).collect();
            let sealed: Vec<&str> = rows.iter().map(|r| r.sealed.as_str()).collect();
            let sql = format!(
                "INSERT INTO agents ({COLUMNS}) \
                 SELECT id, $3, 'bench-seeded', $4, $5, $6, 'active', 'github', s, NULL, 1, $7, $7 \
                 FROM UNNEST($1::text[], $2::text[]) AS t(id, s)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .bind(sealed)
                .bind(tenant)
                .bind(prompt)
                .bind(llm_config)
                .bind(schema)
                .bind(now)
                .execute(pool)
                .await
                .context("insert agents (PostgreSQL)")?;
        }
    }
    Ok(())
}

/// hookrun's sealed-secret text form under [`MASTER_KEY`].
fn seal(plaintext: &[u8], aad: &[u8]) -> String {
    let key_id = {
        let digest = Sha256::new()
            .chain_update(b"hookrun master key id\0")
            .chain_update(MASTER_KEY)
            .finalize();
        hex::encode(&digest[..8])
    };
    let cipher = XChaCha20Poly1305::new((&MASTER_KEY).into());
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    nonce[16..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("small plaintext");
    let mut data = nonce.to_vec();
    data.extend_from_slice(&ciphertext);
    format!("v1.{key_id}.{}", URL_SAFE_NO_PAD.encode(data))
}

/// Now as RFC 3339 UTC with milliseconds (hookrun's catalog timestamp format).
pub fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_454), (2026, 1, 1));
    }
}
