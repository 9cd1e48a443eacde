//! The group-authentication server role's state on PostgreSQL (issue #17.4): several
//! `palisade group server` instances behind a load balancer share open challenges, spent
//! nonces, served challenge requests and the registry, so a challenge issued by one is
//! answered at another, and a replay made to any of them is refused (SER-012).
//!
//! Every single-use step is one SQL statement that only one caller can win (`DELETE ...
//! RETURNING`, `INSERT ... ON CONFLICT DO NOTHING`), never a read followed by a write.
//! Expired rows are deleted by the instances (at most every [`PURGE_EVERY`] seconds each).
//! Schema migrations live in `host/group-store/migrations` (refinery, its own history table,
//! so the collector's schema may share the database).
//!
//! Every operation is bounded: a pool of [`PgStateConfig::pool_size`] connections, and
//! [`PgStateConfig::timeout`] for getting a connection and for each statement (also set as
//! the server-side `statement_timeout`). A database that does not answer in time makes the
//! operation fail with [`GroupError::StateUnavailable`]: the request is refused (fails
//! closed); nothing falls back to local state.
//!
//! The connection is plain TCP, as the collector's is: run the database on the same host or
//! a trusted network (THREATS.md). The independent-mode ephemeral secrets are stored sealed
//! (ChaCha20-Poly1305) under a key derived from the server's identity key ([`state_key`]),
//! so reading the database does not give a round's session keys.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ed25519_dalek::VerifyingKey;
use palisade_group::store::{
    Lookup, PendingChallenge, ServerStore, StoreError, MAX_OPEN_CHALLENGES, MAX_REQUESTS,
};
use palisade_group::MAX_MEMBERS;
use palisade_group::{GroupError, GroupSigner, Mode, ServerRegistry};
use rand::RngCore;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_postgres::NoTls;
use zeroize::Zeroizing;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// refinery's history table of this schema (not its default, which the collector uses).
const HISTORY_TABLE: &str = "palisade_group_schema_history";
/// How often (seconds, at most) one instance deletes expired rows.
pub const PURGE_EVERY: u64 = 30;
/// How long issued challenges are remembered to name replayed answers (seconds). Older
/// answers are refused all the same, as made for an unknown challenge.
pub const ISSUED_RETENTION: u64 = 3600;
/// Serializes registry replacements across instances (a transaction-scoped advisory lock).
const REGISTRY_LOCK: i64 = 0x7061_6c69_7367_7270; // "palisgrp"

/// Where and how to reach the database.
#[derive(Debug, Clone)]
pub struct PgStateConfig {
    /// The connection string: `postgres://user@host:port/db` or `host=... dbname=...`.
    pub url: String,
    /// Most connections this instance holds (default 8). Each costs a PostgreSQL backend
    /// (a few MB on the database host); requests beyond it wait up to `timeout`.
    pub pool_size: usize,
    /// Bound on connecting, on waiting for a pooled connection, and on each statement
    /// (default 2 s). Past it the request is refused with 503 `state-unavailable`.
    pub timeout: Duration,
}

impl PgStateConfig {
    /// The defaults for `url`.
    pub fn new(url: &str) -> Self {
        PgStateConfig {
            url: url.to_owned(),
            pool_size: 8,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The connection string does not parse.
    #[error("the state database URL does not parse")]
    Url(#[source] tokio_postgres::Error),
    /// The database could not be reached at start.
    #[error("cannot reach the state database {target}")]
    Connect {
        /// Host and database, without credentials.
        target: String,
        /// Why.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database did not answer within the timeout at start.
    #[error("the state database {target} did not answer within {timeout:?}")]
    Timeout {
        /// Host and database, without credentials.
        target: String,
        /// The bound.
        timeout: Duration,
    },
    /// The schema migrations failed.
    #[error("schema migration of the state database failed")]
    Migrate(#[from] refinery::Error),
    /// The pool could not be built.
    #[error("the state database pool cannot be built")]
    Pool(#[from] deadpool_postgres::BuildError),
    /// The store's runtime could not start.
    #[error("the state database runtime cannot start")]
    Runtime(#[source] std::io::Error),
}

/// The key sealing ephemeral secrets in the database, derived from the server's identity:
/// HKDF-SHA256 over its Ed25519 signature of a fixed label. Ed25519 signatures are
/// deterministic (RFC 8032), so every instance holding the identity key derives the same key,
/// and nobody without it can; the protocol never signs these bytes (its signatures are over
/// COSE `Signature1` structures).
pub fn state_key(signer: &dyn GroupSigner) -> Result<Zeroizing<[u8; 32]>, GroupError> {
    let sig = Zeroizing::new(signer.sign(b"palisade group shared state key, v1")?);
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha256>::new(None, &*sig)
        .expand(b"palisade-group-state ephemeral seal", &mut *key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Ok(key)
}

/// The PostgreSQL store (see the crate documentation).
pub struct PgStore {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    target: String,
    seal: ChaCha20Poly1305,
    last_purge: AtomicU64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The store may be dropped on an async worker (the server's state at shutdown), where
        // a blocking runtime shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// "host:port/dbname" of a config, never its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}

fn db_err(target: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> GroupError {
    StoreError::new(format!("state database {target}"), e).into()
}

impl PgStore {
    /// Connects (bounded by `config.timeout`), applies the schema migrations, and keeps a
    /// pool. `key` seals ephemeral secrets ([`state_key`]). Fails, rather than starting
    /// without shared state, when the database cannot be reached.
    pub fn connect(config: &PgStateConfig, key: &[u8; 32]) -> Result<PgStore, SetupError> {
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(SetupError::Url)?;
        let target = describe(&pg);
        let timeout = config.timeout.max(Duration::from_millis(100));
        pg.connect_timeout(timeout);
        pg.options(format!("-c statement_timeout={}", timeout.as_millis()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("group-state-db")
            .enable_all()
            .build()
            .map_err(SetupError::Runtime)?;
        let setup = pg.clone();
        let t = target.clone();
        runtime.block_on(async move {
            let connect = setup.connect(NoTls);
            let (mut client, connection) = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| SetupError::Timeout {
                    target: t.clone(),
                    timeout,
                })?
                .map_err(|source| SetupError::Connect {
                    target: t.clone(),
                    source,
                })?;
            let task = tokio::spawn(connection);
            embedded::migrations::runner()
                .set_migration_table_name(HISTORY_TABLE)
                .run_async(&mut client)
                .await?;
            drop(client);
            let _ = task.await;
            Ok::<_, SetupError>(())
        })?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()?;
        Ok(PgStore {
            pool,
            runtime: Some(runtime),
            timeout,
            target,
            seal: ChaCha20Poly1305::new(key.into()),
            last_purge: AtomicU64::new(0),
        })
    }

    /// Runs `op` with a pooled connection on the store's runtime, bounded by the timeout.
    /// Called from blocking threads (never from an async worker).
    fn run<T, F, Fut>(&self, op: F) -> Result<T, GroupError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let rt = self.runtime.as_ref().expect("runtime lives until drop");
        let target = &self.target;
        rt.block_on(async {
            let work = async {
                let client = self.pool.get().await.map_err(|e| db_err(target, e))?;
                op(client).await.map_err(|e| db_err(target, e))
            };
            match tokio::time::timeout(self.timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(db_err(
                    target,
                    format!("no answer within {:?}", self.timeout),
                )),
            }
        })
    }

    fn seal_ephemeral(&self, nonce: &[u8; 32], secret: &x25519_dalek::StaticSecret) -> Vec<u8> {
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let plain = Zeroizing::new(secret.to_bytes());
        let sealed = self
            .seal
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: &*plain,
                    aad: nonce,
                },
            )
            .expect("sealing 32 bytes cannot fail");
        [iv.as_slice(), &sealed].concat()
    }

    fn open_ephemeral(
        &self,
        nonce: &[u8; 32],
        sealed: &[u8],
    ) -> Result<x25519_dalek::StaticSecret, GroupError> {
        let bad = || {
            db_err(
                &self.target,
                "a stored ephemeral secret does not open (another server identity, or tampered)",
            )
        };
        if sealed.len() != 12 + 32 + 16 {
            return Err(bad());
        }
        let plain = Zeroizing::new(
            self.seal
                .decrypt(
                    sealed[..12].into(),
                    Payload {
                        msg: &sealed[12..],
                        aad: nonce,
                    },
                )
                .map_err(|_| bad())?,
        );
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| bad())?;
        Ok(x25519_dalek::StaticSecret::from(bytes))
    }

    fn pending_from_row(
        &self,
        nonce: &[u8; 32],
        row: &tokio_postgres::Row,
    ) -> Result<PendingChallenge, GroupError> {
        let corrupt = |what: &str| db_err(&self.target, format!("corrupt pending row: {what}"));
        let mode = u8::try_from(row.get::<_, i16>("mode"))
            .ok()
            .and_then(Mode::from_code)
            .ok_or_else(|| corrupt("mode"))?;
        let digest: Vec<u8> = row.get("digest");
        let ephemeral: Option<Vec<u8>> = row.get("ephemeral");
        Ok(PendingChallenge {
            mode,
            group: row.get("grp"),
            gateway: row.get("gateway"),
            digest: digest.try_into().map_err(|_| corrupt("digest"))?,
            expires_at: u64::try_from(row.get::<_, i64>("expires_at"))
                .map_err(|_| corrupt("expiry"))?,
            ephemeral: ephemeral
                .map(|e| self.open_ephemeral(nonce, &e))
                .transpose()?,
        })
    }

    /// Deletes expired rows, at most every [`PURGE_EVERY`] seconds per instance.
    fn purge(&self, now: u64) -> Result<(), GroupError> {
        let last = self.last_purge.load(Ordering::Relaxed);
        if now < last.saturating_add(PURGE_EVERY)
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let now = ts(now);
        let issued_before = now.saturating_sub(ISSUED_RETENTION as i64);
        self.run(|c| async move {
            c.execute("DELETE FROM group_pending WHERE expires_at <= $1", &[&now])
                .await?;
            c.execute(
                "DELETE FROM group_completed WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            c.execute("DELETE FROM group_requests WHERE expires_at <= $1", &[&now])
                .await?;
            c.execute(
                "DELETE FROM group_issued WHERE issued_at <= $1",
                &[&issued_before],
            )
            .await?;
            Ok(())
        })
    }
}

/// Unix seconds as PostgreSQL's BIGINT (times past i64 are clamped: they never expire).
fn ts(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn key_of(bytes: &[u8]) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(bytes.try_into().ok()?).ok()
}

impl ServerStore for PgStore {
    fn add_gateway(&self, gateway: &str, key: &VerifyingKey) -> Result<(), GroupError> {
        let key = key.to_bytes().to_vec();
        self.run(|c| async move {
            c.execute(
                "INSERT INTO group_gateways (id, public_key) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET public_key = EXCLUDED.public_key",
                &[&gateway, &key],
            )
            .await
            .map(drop)
        })
    }

    fn gateway_key(&self, gateway: &str) -> Result<Option<VerifyingKey>, GroupError> {
        let row = self.run(|c| async move {
            c.query_opt(
                "SELECT public_key FROM group_gateways WHERE id = $1",
                &[&gateway],
            )
            .await
        })?;
        match row {
            None => Ok(None),
            Some(r) => key_of(r.get::<_, &[u8]>(0))
                .map(Some)
                .ok_or_else(|| db_err(&self.target, format!("corrupt key of gateway {gateway}"))),
        }
    }

    fn add_member(&self, group: &str, device: &str, key: &VerifyingKey) -> Result<(), GroupError> {
        let key = key.to_bytes().to_vec();
        let max = MAX_MEMBERS as i64;
        let (added, count) = self.run(|mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO group_groups (id) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&group],
            )
            .await?;
            // Serializes additions to one group, so the member bound holds across instances.
            tx.execute(
                "SELECT 1 FROM group_groups WHERE id = $1 FOR UPDATE",
                &[&group],
            )
            .await?;
            let count: i64 = tx
                .query_one(
                    "SELECT count(*) FROM group_members WHERE grp = $1",
                    &[&group],
                )
                .await?
                .get(0);
            let added = tx
                .execute(
                    "INSERT INTO group_members (grp, device, public_key) \
                     SELECT $1, $2, $3 WHERE $4 < $5 \
                        OR EXISTS (SELECT 1 FROM group_members WHERE grp = $1 AND device = $2) \
                     ON CONFLICT (grp, device) DO UPDATE SET public_key = EXCLUDED.public_key",
                    &[&group, &device, &key, &count, &max],
                )
                .await?;
            tx.commit().await?;
            Ok((added, count))
        })?;
        if added == 0 {
            return Err(GroupError::TooManyMembers {
                count: count as usize + 1,
                max: MAX_MEMBERS,
            });
        }
        Ok(())
    }

    fn has_group(&self, group: &str) -> Result<bool, GroupError> {
        self.run(|c| async move {
            c.query_opt("SELECT 1 FROM group_groups WHERE id = $1", &[&group])
                .await
                .map(|r| r.is_some())
        })
    }

    fn members(&self, group: &str) -> Result<Option<HashMap<String, VerifyingKey>>, GroupError> {
        let (exists, rows) = self.run(|c| async move {
            let exists = c
                .query_opt("SELECT 1 FROM group_groups WHERE id = $1", &[&group])
                .await?
                .is_some();
            let rows = c
                .query(
                    "SELECT device, public_key FROM group_members WHERE grp = $1",
                    &[&group],
                )
                .await?;
            Ok((exists, rows))
        })?;
        if !exists {
            return Ok(None);
        }
        rows.iter()
            .map(|r| {
                let device: String = r.get(0);
                match key_of(r.get::<_, &[u8]>(1)) {
                    Some(k) => Ok((device, k)),
                    None => Err(db_err(
                        &self.target,
                        format!("corrupt key of member {device}"),
                    )),
                }
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn set_representation(
        &self,
        group: &str,
        gateway: &str,
        allowed: bool,
    ) -> Result<(), GroupError> {
        if !allowed {
            return self.run(|c| async move {
                c.execute(
                    "DELETE FROM group_representation WHERE grp = $1 AND gateway = $2",
                    &[&group, &gateway],
                )
                .await
                .map(drop)
            });
        }
        let (group_known, gateway_known) = self.run(|c| async move {
            let row = c
                .query_one(
                    "WITH ins AS (INSERT INTO group_representation (grp, gateway) \
                         SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM group_groups WHERE id = $1) \
                           AND EXISTS (SELECT 1 FROM group_gateways WHERE id = $2) \
                         ON CONFLICT DO NOTHING) \
                     SELECT EXISTS (SELECT 1 FROM group_groups WHERE id = $1), \
                            EXISTS (SELECT 1 FROM group_gateways WHERE id = $2)",
                    &[&group, &gateway],
                )
                .await?;
            Ok((row.get::<_, bool>(0), row.get::<_, bool>(1)))
        })?;
        if !gateway_known {
            return Err(GroupError::UnknownGateway(gateway.to_owned()));
        }
        if !group_known {
            return Err(GroupError::UnknownGroup(group.to_owned()));
        }
        Ok(())
    }

    fn may_represent(&self, group: &str, gateway: &str) -> Result<bool, GroupError> {
        self.run(|c| async move {
            c.query_opt(
                "SELECT 1 FROM group_representation WHERE grp = $1 AND gateway = $2",
                &[&group, &gateway],
            )
            .await
            .map(|r| r.is_some())
        })
    }

    fn replace_registry(&self, registry: &ServerRegistry) -> Result<(), GroupError> {
        let mut gateways: (Vec<&str>, Vec<Vec<u8>>) = Default::default();
        for (id, key) in registry.gateways() {
            gateways.0.push(id);
            gateways.1.push(key.to_bytes().to_vec());
        }
        let mut groups: Vec<&str> = Vec::new();
        let mut members: (Vec<&str>, Vec<&str>, Vec<Vec<u8>>) = Default::default();
        let mut rights: (Vec<&str>, Vec<&str>) = Default::default();
        for (group, m, reps) in registry.groups() {
            groups.push(group);
            for (device, key) in m {
                members.0.push(group);
                members.1.push(device);
                members.2.push(key.to_bytes().to_vec());
            }
            for gw in reps {
                rights.0.push(group);
                rights.1.push(gw);
            }
        }
        let (gateways, groups, members, rights) = (&gateways, &groups, &members, &rights);
        self.run(|mut c| async move {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])
                .await?;
            tx.batch_execute(
                "DELETE FROM group_representation; DELETE FROM group_members; \
                 DELETE FROM group_groups; DELETE FROM group_gateways;",
            )
            .await?;
            tx.execute(
                "INSERT INTO group_gateways (id, public_key) \
                 SELECT * FROM UNNEST($1::text[], $2::bytea[])",
                &[&gateways.0, &gateways.1],
            )
            .await?;
            tx.execute(
                "INSERT INTO group_groups (id) SELECT * FROM UNNEST($1::text[])",
                &[groups],
            )
            .await?;
            tx.execute(
                "INSERT INTO group_members (grp, device, public_key) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[])",
                &[&members.0, &members.1, &members.2],
            )
            .await?;
            tx.execute(
                "INSERT INTO group_representation (grp, gateway) \
                 SELECT * FROM UNNEST($1::text[], $2::text[])",
                &[&rights.0, &rights.1],
            )
            .await?;
            tx.commit().await
        })
    }

    fn open(
        &self,
        nonce: [u8; 32],
        challenge: PendingChallenge,
        now: u64,
    ) -> Result<(), GroupError> {
        self.purge(now)?;
        let sealed = challenge
            .ephemeral
            .as_ref()
            .map(|e| self.seal_ephemeral(&nonce, e));
        let (nonce, mode, digest) = (
            nonce.to_vec(),
            challenge.mode as i16,
            challenge.digest.to_vec(),
        );
        let (expires, now, max) = (
            ts(challenge.expires_at),
            ts(now),
            MAX_OPEN_CHALLENGES as i64,
        );
        let (group, gateway) = (&challenge.group, &challenge.gateway);
        // The bound is checked in the same statement; concurrent instances may overshoot it
        // by the number of challenges issued at the very same moment, no more.
        let inserted = self.run(|c| async move {
            c.execute(
                "INSERT INTO group_pending (nonce, mode, grp, gateway, digest, expires_at, ephemeral) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 \
                 WHERE (SELECT count(*) FROM group_pending WHERE expires_at > $8) < $9",
                &[&nonce, &mode, group, gateway, &digest, &expires, &sealed, &now, &max],
            )
            .await
        })?;
        if inserted == 0 {
            return Err(GroupError::ReplayCacheFull);
        }
        Ok(())
    }

    fn lookup(&self, nonce: &[u8; 32], now: u64) -> Result<Lookup, GroupError> {
        let (key, now_ts) = (nonce.to_vec(), ts(now));
        // One statement, so one snapshot: a sibling's take (which deletes the pending row and
        // records the nonce spent together) is seen entirely or not at all.
        let row = self.run(|c| async move {
            c.query_one(
                "SELECT EXISTS (SELECT 1 FROM group_completed \
                         WHERE nonce = $1 AND expires_at > $2) AS used, \
                     p.nonce IS NOT NULL AS open, \
                     p.mode, p.grp, p.gateway, p.digest, p.expires_at, p.ephemeral \
                 FROM (SELECT 1) AS one LEFT JOIN group_pending p ON p.nonce = $1",
                &[&key, &now_ts],
            )
            .await
        })?;
        let used: bool = row.get("used");
        let row = row.get::<_, bool>("open").then_some(row);
        if used {
            return Ok(Lookup::Used);
        }
        match row {
            None => Ok(Lookup::Unknown),
            Some(r) => Ok(Lookup::Open(self.pending_from_row(nonce, &r)?)),
        }
    }

    fn take(&self, nonce: &[u8; 32], _now: u64) -> Result<Option<PendingChallenge>, GroupError> {
        let key = nonce.to_vec();
        // One statement: the row is deleted by exactly one caller (a concurrent DELETE of the
        // same row waits, then finds nothing), and its nonce is recorded spent with it.
        let row = self.run(|c| async move {
            c.query_opt(
                "WITH taken AS (DELETE FROM group_pending WHERE nonce = $1 \
                     RETURNING nonce, mode, grp, gateway, digest, expires_at, ephemeral), \
                 spent AS (INSERT INTO group_completed (nonce, expires_at) \
                     SELECT nonce, expires_at FROM taken \
                     ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at) \
                 SELECT mode, grp, gateway, digest, expires_at, ephemeral FROM taken",
                &[&key],
            )
            .await
        })?;
        row.map(|r| self.pending_from_row(nonce, &r)).transpose()
    }

    fn record_issued(
        &self,
        digest: [u8; 32],
        group: &str,
        issued_at: u64,
    ) -> Result<(), GroupError> {
        let (digest, at) = (digest.to_vec(), ts(issued_at));
        self.run(|c| async move {
            c.execute(
                "INSERT INTO group_issued (digest, grp, issued_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&digest, &group, &at],
            )
            .await
            .map(drop)
        })
    }

    fn issued_groups(&self, digests: &[[u8; 32]]) -> Result<HashMap<[u8; 32], String>, GroupError> {
        let list: Vec<Vec<u8>> = digests.iter().map(|d| d.to_vec()).collect();
        let rows = self.run(|c| async move {
            c.query(
                "SELECT digest, grp FROM group_issued WHERE digest = ANY($1)",
                &[&list],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let d: [u8; 32] = r.get::<_, &[u8]>(0).try_into().ok()?;
                Some((d, r.get(1)))
            })
            .collect())
    }

    fn record_request(
        &self,
        nonce: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GroupError> {
        let (key, exp, now, max) = (nonce.to_vec(), ts(expires_at), ts(now), MAX_REQUESTS as i64);
        let (inserted, seen) = self.run(|c| async move {
            let inserted = c
                .execute(
                    "INSERT INTO group_requests (nonce, expires_at) SELECT $1, $2 \
                     WHERE (SELECT count(*) FROM group_requests WHERE expires_at > $3) < $4 \
                     ON CONFLICT (nonce) DO NOTHING",
                    &[&key, &exp, &now, &max],
                )
                .await?;
            let seen = inserted == 0
                && c.query_opt("SELECT 1 FROM group_requests WHERE nonce = $1", &[&key])
                    .await?
                    .is_some();
            Ok((inserted, seen))
        })?;
        match (inserted, seen) {
            (1.., _) => Ok(true),
            (0, true) => Ok(false),
            (0, false) => Err(GroupError::ReplayCacheFull),
        }
    }
}
