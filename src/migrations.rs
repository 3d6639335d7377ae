//! The schema migrations of both backends, compiled into the binary.
//!
//! `sqlx::migrate!` would embed them too, but only through sqlx's macro crates, which
//! build sqlx and both drivers a second time for the compiler (about a minute of CPU in
//! every cold build). Each file here resolves exactly as sqlx's directory loader
//! resolves it (version, description, checksum, transaction), so a database migrated by
//! an earlier build sees the same history; a test compares the two for each backend,
//! and fails when a file in either directory is missing from the list below.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// Both backends have the same migrations, one file each under `migrations/sqlite/`
/// and `migrations/postgres/`: `SQLITE` and `POSTGRES` hold `(file name, contents)`.
macro_rules! files {
    ($($file:literal),* $(,)?) => {
        const SQLITE: &[(&str, &str)] = &[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file)),
        )),*];
        const POSTGRES: &[(&str, &str)] = &[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $file)),
        )),*];
    };
}

files!(
    "20261129000001_create_events.sql",
    "20261129000002_create_catalog.sql",
    "20261129000003_create_read_models.sql",
    "20261129000004_add_nodes_and_leases.sql",
    "20261129010001_add_agent_signature_settings.sql",
    "20261129010002_create_webhook_deliveries.sql",
    "20261129020001_add_event_hashes.sql",
    "20261129020002_create_agent_read_models.sql",
    "20261129020003_create_tenant_data_keys.sql",
    "20261129030001_fewer_per_agent_index_writes.sql",
    "20261129040001_room_for_read_model_updates.sql",
);

pub fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub fn postgres() -> Migrator {
    migrator(POSTGRES)
}

fn migrator(files: &[(&str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(name, sql)| migration(name, sql))
            .collect(),
    )
}

/// One file, read as sqlx reads a `{version}_{description}.sql` file.
fn migration(name: &str, sql: &'static str) -> Migration {
    let (version, rest) = name
        .split_once('_')
        .expect("a migration file is named {version}_{description}.sql");
    let version = version
        .parse()
        .expect("a migration's version is an integer");
    let description = rest.trim_end_matches(".sql").replace('_', " ");
    Migration::new(
        version,
        Cow::Owned(description),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        sql.starts_with("-- no-transaction"),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    async fn assert_same_as_directory(dir: &str, ours: Migrator) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let theirs = Migrator::new(path).await.expect("the directory resolves");
        let key = |m: &Migration| {
            (
                m.version,
                m.description.to_string(),
                m.migration_type,
                m.checksum.to_vec(),
                m.no_tx,
                m.sql.as_str().to_owned(),
            )
        };
        let ours: Vec<_> = ours.iter().map(key).collect();
        let theirs: Vec<_> = theirs.iter().map(key).collect();
        assert!(!theirs.is_empty());
        assert_eq!(
            ours, theirs,
            "src/migrations.rs must list every file of migrations/{dir}, in order"
        );
    }

    #[tokio::test]
    async fn sqlite_migrations_resolve_as_sqlx_resolves_the_directory() {
        assert_same_as_directory("sqlite", sqlite()).await;
    }

    #[tokio::test]
    async fn postgres_migrations_resolve_as_sqlx_resolves_the_directory() {
        assert_same_as_directory("postgres", postgres()).await;
    }
}
