//! The SQLite side of the embedded store: schema and row access.
//!
//! One row per (app, plugin name, version). "At most one active version per (app, plugin
//! name)" is enforced by the schema itself (a partial unique index), so no code path, crash or
//! concurrent writer can ever leave two active. The database runs in WAL mode with
//! `synchronous=FULL`; every change is one transaction.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow, Transaction};

use super::{ModuleRecord, ModuleState, StoreError};
use crate::{ModuleHash, VerifiedModule, Version};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS modules (
    app              TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('authorizer', 'authenticator', 'filter')),
    sha256           TEXT NOT NULL CHECK (length(sha256) = 64),
    size             INTEGER NOT NULL,
    manifest         TEXT NOT NULL,
    signature        BLOB NOT NULL,
    publisher_key_id TEXT NOT NULL,
    root_key_id      TEXT NOT NULL,
    uploaded_at      INTEGER NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('stored', 'active', 'retired', 'failed-integrity')),
    state_reason     TEXT,
    activated_seq    INTEGER,
    PRIMARY KEY (app, name, version)
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS one_active_version ON modules (app, name) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS modules_by_sha256 ON modules (sha256);
";

const COLUMNS: &str = "app, name, version, kind, sha256, size, manifest, signature, \
                       publisher_key_id, root_key_id, uploaded_at, state, state_reason, activated_seq";

/// A row: the public record plus what only the store needs.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub record: ModuleRecord,
    /// The signature section's contents, to re-check the chain (SER-013).
    pub signature: Vec<u8>,
    /// Order of activations; `Some` once the version has been active.
    pub activated_seq: Option<i64>,
}

/// Opens (creating if needed) the database and brings its schema up to date.
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt {
            what: format!("journal mode ({mode}, WAL expected)"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            what: format!("schema version {version} (newer)"),
        });
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(conn)
}

fn read_row(row: &SqlRow<'_>) -> Result<Result<Row, String>, rusqlite::Error> {
    let app: String = row.get(0)?;
    let name: String = row.get(1)?;
    let version: String = row.get(2)?;
    let label = format!("{app}/{name}@{version}");
    let manifest: String = row.get(6)?;
    let state: String = row.get(11)?;
    let parsed = (|| {
        let manifest: crate::Manifest = serde_json::from_str(&manifest).ok()?;
        let state = match state.as_str() {
            "stored" => ModuleState::Stored,
            "active" => ModuleState::Active,
            "retired" => ModuleState::Retired,
            "failed-integrity" => ModuleState::FailedIntegrity,
            _ => return None,
        };
        Some(Row {
            record: ModuleRecord {
                kind: row.get::<_, String>(3).ok()?.parse().ok()?,
                version: version.parse().ok()?,
                sha256: row.get::<_, String>(4).ok()?.parse().ok()?,
                size: u64::try_from(row.get::<_, i64>(5).ok()?).ok()?,
                publisher_key_id: row.get::<_, String>(8).ok()?.parse().ok()?,
                root_key_id: row.get::<_, String>(9).ok()?.parse().ok()?,
                uploaded_at: u64::try_from(row.get::<_, i64>(10).ok()?).ok()?,
                state,
                state_reason: row.get(12).ok()?,
                app: app.clone(),
                name: name.clone(),
                manifest,
            },
            signature: row.get(7).ok()?,
            activated_seq: row.get(13).ok()?,
        })
    })();
    Ok(parsed.ok_or(label))
}

/// Rows matching a WHERE clause, ordered by app, name and version (semver).
pub(crate) fn select(
    conn: &Connection,
    clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Row>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM modules WHERE {clause}");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = Vec::new();
    for row in stmt.query_map(params, read_row)? {
        rows.push(row?.map_err(|what| StoreError::Corrupt { what })?);
    }
    rows.sort_by(|a, b| {
        (&a.record.app, &a.record.name, &a.record.version).cmp(&(
            &b.record.app,
            &b.record.name,
            &b.record.version,
        ))
    });
    Ok(rows)
}

/// Every version of one plugin, lowest first.
pub(crate) fn plugin_rows(
    conn: &Connection,
    app: &str,
    name: &str,
) -> Result<Vec<Row>, StoreError> {
    select(conn, "app = ?1 AND name = ?2", params![app, name])
}

/// Every version whose bytes have this hash.
pub(crate) fn sha_rows(conn: &Connection, sha256: &ModuleHash) -> Result<Vec<Row>, StoreError> {
    select(conn, "sha256 = ?1", params![sha256.to_hex()])
}

/// The hashes any row refers to.
pub(crate) fn referenced(conn: &Connection) -> Result<HashSet<ModuleHash>, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM modules")?;
    let mut set = HashSet::new();
    for sha in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let sha = sha?;
        set.insert(
            sha.parse()
                .map_err(|_| StoreError::Corrupt { what: sha.clone() })?,
        );
    }
    Ok(set)
}

/// True when some row refers to these bytes.
pub(crate) fn sha_in_use(conn: &Connection, sha256: &ModuleHash) -> Result<bool, StoreError> {
    let found = conn
        .query_row(
            "SELECT 1 FROM modules WHERE sha256 = ?1 LIMIT 1",
            [sha256.to_hex()],
            |_| Ok(()),
        )
        .optional()?;
    Ok(found.is_some())
}

/// Inserts a verified module as `stored`.
pub(crate) fn insert(
    tx: &Transaction<'_>,
    module: &VerifiedModule,
    now: u64,
) -> Result<(), StoreError> {
    let m = &module.manifest;
    tx.execute(
        &format!("INSERT INTO modules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'stored', NULL, NULL)"),
        params![
            m.app,
            m.name,
            m.version.as_str(),
            m.kind.name(),
            m.module_sha256.to_hex(),
            i64::try_from(m.size).unwrap_or(i64::MAX),
            m.to_json(),
            module.signature_block,
            module.publisher_key_id().to_string(),
            module.root_key_id().to_string(),
            i64::try_from(now).unwrap_or(i64::MAX),
        ],
    )?;
    Ok(())
}

/// Sets a version's state and reason.
pub(crate) fn set_state(
    tx: &Transaction<'_>,
    app: &str,
    name: &str,
    version: &Version,
    state: ModuleState,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE modules SET state = ?4, state_reason = ?5 WHERE app = ?1 AND name = ?2 AND version = ?3",
        params![app, name, version.as_str(), state.name(), reason],
    )?;
    Ok(())
}

/// Retires the active version of a plugin (if any) and activates `version`.
pub(crate) fn activate(
    tx: &Transaction<'_>,
    app: &str,
    name: &str,
    version: &Version,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE modules SET state = 'retired' WHERE app = ?1 AND name = ?2 AND state = 'active'",
        params![app, name],
    )?;
    tx.execute(
        "UPDATE modules SET state = 'active', state_reason = NULL,
             activated_seq = (SELECT COALESCE(MAX(activated_seq), 0) + 1 FROM modules)
         WHERE app = ?1 AND name = ?2 AND version = ?3",
        params![app, name, version.as_str()],
    )?;
    Ok(())
}

/// Deletes a version's row.
pub(crate) fn delete(
    tx: &Transaction<'_>,
    app: &str,
    name: &str,
    version: &Version,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM modules WHERE app = ?1 AND name = ?2 AND version = ?3",
        params![app, name, version.as_str()],
    )?;
    Ok(())
}
