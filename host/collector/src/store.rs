//! PostgreSQL storage of shipped audit entries: migrations, ingest, queries.
//!
//! Ingest is one transaction per batch, serialized per gateway by a transaction-scoped
//! advisory lock, so two batches of one gateway (a retry racing its original) cannot both
//! extend the chain: the second sees the first's head and finds its entries already stored.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use palisade_audit::{verify_continuation, ChainPoint, VerifyError, VerifyReport};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::config::GatewayKey;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The connection string does not parse.
    #[error("database_url does not parse")]
    Url(#[source] tokio_postgres::Error),
    /// A query or the connection failed.
    #[error("the database failed")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("no database connection could be had from the pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built.
    #[error("the database pool cannot be built")]
    PoolSetup(#[from] deadpool_postgres::BuildError),
    /// The schema migrations failed.
    #[error("the schema migration failed")]
    Migrate(#[from] refinery::Error),
}

/// Why a batch was refused; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Not one whole line.
    #[error("the batch is empty")]
    Empty,
    /// More entries than `max_batch_entries`.
    #[error("the batch holds more than {limit} entries")]
    TooManyEntries {
        /// The bound.
        limit: usize,
    },
    /// A line is not an audit entry at all.
    #[error("line {line}: not an audit entry: {reason}")]
    Malformed {
        /// 1-based line in the batch.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The batch does not start where the gateway's stored chain stands (entries are
    /// missing between them, or it starts mid-way without any stored).
    #[error("the batch starts at seq {found}, the collector expects seq {expected} next")]
    OutOfOrder {
        /// The seq the collector expects.
        expected: u64,
        /// The batch's first new seq.
        found: u64,
    },
    /// A re-sent entry differs from the stored one with its seq: the gateway's log forked
    /// (rewritten, or lost entries it had already shipped and wrote others in their place).
    #[error("seq {seq} differs from the entry stored with that seq (the log was rewritten after it was shipped)")]
    Conflict {
        /// The seq.
        seq: u64,
    },
    /// The new entries do not verify as a continuation of the stored chain.
    #[error("the batch does not verify")]
    Chain(#[source] VerifyError),
    /// Storage failed; the batch may be sent again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for IngestError {
    fn from(e: tokio_postgres::Error) -> Self {
        IngestError::Store(StoreError::Db(e))
    }
}

impl From<deadpool_postgres::PoolError> for IngestError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        IngestError::Store(StoreError::Pool(e))
    }
}

/// What a stored batch did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestOutcome {
    /// New entries stored.
    pub stored: u64,
    /// Entries already stored (a re-sent batch), recognised by seq and hash and skipped.
    pub duplicates: u64,
    /// The seq the collector expects next from this gateway.
    pub next_seq: u64,
    /// The hash of the gateway's last stored entry (hex).
    pub head_hash: String,
    /// The seq of the last checkpoint stored (its signature verified), if any.
    pub last_checkpoint_seq: Option<u64>,
}

/// Where a gateway's stored chain stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatewayHead {
    /// The gateway.
    pub gateway: String,
    /// Its log id.
    pub log_id: String,
    /// The seq expected next.
    pub next_seq: u64,
    /// Its last entry's hash (hex).
    pub head_hash: String,
    /// Rows stored (a gap entry is one row).
    pub entries: u64,
    /// The seq of the last verified checkpoint.
    pub last_checkpoint_seq: Option<u64>,
}

/// A query over stored entries; every field narrows it. Results are ordered by time, then
/// gateway and seq, and paged by `after`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Only this gateway.
    pub gateway: Option<String>,
    /// Only decisions of this application.
    pub app: Option<String>,
    /// Only decisions about this originator (the pseudonym as recorded).
    pub originator: Option<String>,
    /// Only decisions with this effect (`permit` or `deny`).
    pub decision: Option<String>,
    /// Only entries of this kind (`decision`, `admin`, `gap`, ...).
    pub kind: Option<String>,
    /// Entries at or after this time (unix ms).
    pub from_ms: Option<u64>,
    /// Entries before this time (unix ms).
    pub to_ms: Option<u64>,
    /// Paging: entries after this `time_ms,gateway,seq` key (the `next` of the last page).
    pub after: Option<String>,
    /// At most this many rows (capped by the collector's `max_query_rows`).
    pub limit: Option<usize>,
}

/// One stored entry as a query answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEntry {
    /// The gateway that shipped it.
    pub gateway: String,
    /// Its seq in that gateway's log.
    pub seq: u64,
    /// Unix ms.
    pub time: u64,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: serde_json::Value,
}

/// One page of a query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryPage {
    /// The entries.
    pub entries: Vec<StoredEntry>,
    /// The `after` value for the next page, when this one was full.
    pub next: Option<String>,
}

/// One line of a batch, parsed as far as storing it needs.
#[derive(Debug, Deserialize)]
struct Line {
    seq: u64,
    time: u64,
    kind: String,
    payload: serde_json::Value,
    hash: String,
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects, applies the schema migrations (idempotent: refinery records what ran), and
    /// keeps a pool of `pool_size` connections.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Store, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(StoreError::Url)?;
        {
            let (mut client, connection) = config.connect(NoTls).await?;
            let task = tokio::spawn(connection);
            embedded::migrations::runner()
                .run_async(&mut client)
                .await?;
            drop(client);
            let _ = task.await;
        }
        let mut config = config;
        config.connect_timeout(Duration::from_secs(10));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager).max_size(pool_size).build()?;
        Ok(Store { pool })
    }

    /// Checks and stores one batch of `gateway`'s log lines (each ending with `\n`). All or
    /// nothing: on any error nothing is stored.
    pub async fn ingest(
        &self,
        gateway: &GatewayKey,
        batch: &[u8],
        max_entries: usize,
    ) -> Result<IngestOutcome, IngestError> {
        let lines = split(batch, max_entries)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&gateway.id],
        )
        .await?;
        let head = tx
            .query_opt(
                "SELECT log_id, next_seq, head_hash, last_checkpoint_seq FROM gateways WHERE id = $1",
                &[&gateway.id],
            )
            .await?;
        let (point, mut last_checkpoint) = match &head {
            Some(row) => {
                let head: Vec<u8> = row.get(2);
                let point = ChainPoint {
                    log_id: row.get(0),
                    next_seq: row.get::<_, i64>(1) as u64,
                    head: head.try_into().unwrap_or([0; 32]),
                };
                (Some(point), row.get::<_, Option<i64>>(3).map(|s| s as u64))
            }
            None => (None, None),
        };
        let next_seq = point.as_ref().map_or(0, |p| p.next_seq);
        // Entries below next_seq were shipped before: each must be, byte for byte, the line
        // stored with its seq (anything else is a fork of the log, or an edit of it).
        let resent = lines.iter().take_while(|(_, l)| l.seq < next_seq).count();
        if resent > 0 {
            let seqs: Vec<i64> = lines[..resent].iter().map(|(_, l)| l.seq as i64).collect();
            let rows = tx
                .query(
                    "SELECT seq, line FROM entries WHERE gateway_id = $1 AND seq = ANY($2)",
                    &[&gateway.id, &seqs],
                )
                .await?;
            let stored: std::collections::HashMap<i64, String> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for (i, (start, line)) in lines[..resent].iter().enumerate() {
                let end = lines.get(i + 1).map_or(batch.len(), |(s, _)| *s) - 1;
                let matches = stored
                    .get(&(line.seq as i64))
                    .is_some_and(|text| text.as_bytes() == &batch[*start..end]);
                if !matches {
                    return Err(IngestError::Conflict { seq: line.seq });
                }
            }
        }
        let fresh = &lines[resent..];
        let Some(((first_start, first), _)) = fresh.first().map(|f| (f, ())) else {
            let (head_hash, next) = match &point {
                Some(p) => (hex::encode(p.head), p.next_seq),
                None => return Err(IngestError::Empty),
            };
            return Ok(IngestOutcome {
                stored: 0,
                duplicates: resent as u64,
                next_seq: next,
                head_hash,
                last_checkpoint_seq: last_checkpoint,
            });
        };
        if first.seq != next_seq {
            return Err(IngestError::OutOfOrder {
                expected: next_seq,
                found: first.seq,
            });
        }
        let report = verify_continuation(
            &batch[*first_start..],
            &gateway.audit_public_key,
            point.as_ref(),
        )
        .map_err(|e| IngestError::Chain(shift_lines(e, resent)))?;
        if let Some(cp) = &report.last_checkpoint {
            last_checkpoint = Some(cp.seq);
        }
        let outcome = outcome(&report, resent, fresh.len(), last_checkpoint);
        let head_bytes = hex::decode(&outcome.head_hash).unwrap_or_default();
        tx.execute(
            "INSERT INTO gateways (id, log_id, next_seq, head_hash, entries, last_checkpoint_seq, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (id) DO UPDATE SET next_seq = $3, head_hash = $4,
                 entries = gateways.entries + $5, last_checkpoint_seq = $6, updated_at = now()",
            &[
                &gateway.id,
                &report.log_id,
                &(outcome.next_seq as i64),
                &head_bytes,
                &(fresh.len() as i64),
                &last_checkpoint.map(|s| s as i64),
            ],
        )
        .await?;
        // After the gateway row: entries reference it.
        store_rows(&tx, &gateway.id, batch, fresh).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Where `gateway`'s stored chain stands; `None` before its first batch.
    pub async fn head(&self, gateway: &str) -> Result<Option<GatewayHead>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, log_id, next_seq, head_hash, entries, last_checkpoint_seq FROM gateways WHERE id = $1",
                &[&gateway],
            )
            .await?;
        Ok(row.map(|r| head_of(&r)))
    }

    /// Every gateway's head.
    pub async fn heads(&self) -> Result<Vec<GatewayHead>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, log_id, next_seq, head_hash, entries, last_checkpoint_seq FROM gateways ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(head_of).collect())
    }

    /// The stored lines of `gateway` from `from_seq` on, at most `limit`, in seq order: the
    /// exact bytes the gateway wrote, for verification from the database.
    pub async fn chain(
        &self,
        gateway: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT seq, line FROM entries WHERE gateway_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[&gateway, &(from_seq.min(i64::MAX as u64) as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
            .collect())
    }

    /// Answers `query` with at most `max_rows` rows.
    pub async fn query(&self, query: &Query, max_rows: usize) -> Result<QueryPage, QueryError> {
        let limit = query.limit.unwrap_or(max_rows).clamp(1, max_rows);
        let mut sql =
            String::from("SELECT gateway_id, seq, time_ms, kind, payload FROM entries WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut add = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            params.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        };
        let text = |v: &Option<String>| v.clone();
        if let Some(v) = text(&query.gateway) {
            add(&mut sql, " AND gateway_id = ?", Box::new(v));
        }
        if let Some(v) = text(&query.app) {
            add(&mut sql, " AND app = ?", Box::new(v));
        }
        if let Some(v) = text(&query.originator) {
            add(&mut sql, " AND originator = ?", Box::new(v));
        }
        if let Some(v) = text(&query.decision) {
            if v != "permit" && v != "deny" {
                return Err(QueryError::Invalid(format!(
                    "decision {v:?} is neither permit nor deny"
                )));
            }
            add(&mut sql, " AND effect = ?", Box::new(v));
        }
        if let Some(v) = text(&query.kind) {
            add(&mut sql, " AND kind = ?", Box::new(v));
        }
        let ms = |v: u64, name: &str| {
            i64::try_from(v).map_err(|_| QueryError::Invalid(format!("{name} is out of range")))
        };
        if let Some(v) = query.from_ms {
            add(&mut sql, " AND time_ms >= ?", Box::new(ms(v, "from_ms")?));
        }
        if let Some(v) = query.to_ms {
            add(&mut sql, " AND time_ms < ?", Box::new(ms(v, "to_ms")?));
        }
        if let Some(after) = &query.after {
            let (time, gateway, seq) = parse_after(after)?;
            params.push(Box::new(time));
            let t = params.len();
            params.push(Box::new(gateway));
            params.push(Box::new(seq));
            sql.push_str(&format!(
                " AND (time_ms, gateway_id, seq) > (${t}, ${}, ${})",
                t + 1,
                t + 2
            ));
        }
        sql.push_str(&format!(" ORDER BY time_ms, gateway_id, seq LIMIT {limit}"));
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &refs).await.map_err(StoreError::from)?;
        let entries: Vec<StoredEntry> = rows
            .iter()
            .map(|r| StoredEntry {
                gateway: r.get(0),
                seq: r.get::<_, i64>(1) as u64,
                time: r.get::<_, i64>(2) as u64,
                kind: r.get(3),
                payload: r.get(4),
            })
            .collect();
        let next = (entries.len() == limit)
            .then(|| {
                entries
                    .last()
                    .map(|e| format!("{},{},{}", e.time, e.gateway, e.seq))
            })
            .flatten();
        Ok(QueryPage { entries, next })
    }
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn parse_after(after: &str) -> Result<(i64, String, i64), QueryError> {
    let bad = || {
        QueryError::Invalid(format!(
            "after {after:?} is not the `next` of a page (time,gateway,seq)"
        ))
    };
    let mut parts = after.splitn(3, ',');
    let time = parts
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(bad)?;
    let gateway = parts.next().ok_or_else(bad)?.to_owned();
    let seq = parts
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(bad)?;
    Ok((time, gateway, seq))
}

fn head_of(r: &tokio_postgres::Row) -> GatewayHead {
    GatewayHead {
        gateway: r.get(0),
        log_id: r.get(1),
        next_seq: r.get::<_, i64>(2) as u64,
        head_hash: hex::encode(r.get::<_, Vec<u8>>(3)),
        entries: r.get::<_, i64>(4) as u64,
        last_checkpoint_seq: r.get::<_, Option<i64>>(5).map(|s| s as u64),
    }
}

fn outcome(
    report: &VerifyReport,
    resent: usize,
    _fresh: usize,
    last_checkpoint: Option<u64>,
) -> IngestOutcome {
    IngestOutcome {
        stored: report.entries,
        duplicates: resent as u64,
        next_seq: report.last_seq + 1,
        head_hash: report.head_hash.clone(),
        last_checkpoint_seq: last_checkpoint,
    }
}

/// Error line numbers count from the first new entry; make them count from the batch's
/// first line.
fn shift_lines(error: VerifyError, resent: usize) -> VerifyError {
    match error {
        VerifyError::BadEntry { line, seq, problem } => VerifyError::BadEntry {
            line: line + resent,
            seq,
            problem,
        },
        other => other,
    }
}

/// The batch's lines with their start offsets. Bounded before anything is parsed.
fn split(batch: &[u8], max_entries: usize) -> Result<Vec<(usize, Line)>, IngestError> {
    if batch.is_empty() {
        return Err(IngestError::Empty);
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < batch.len() {
        let number = out.len() + 1;
        if out.len() == max_entries {
            return Err(IngestError::TooManyEntries { limit: max_entries });
        }
        let end = batch[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| start + i)
            .ok_or(IngestError::Malformed {
                line: number,
                reason: "the last line does not end with a newline".into(),
            })?;
        let line: Line =
            serde_json::from_slice(&batch[start..end]).map_err(|e| IngestError::Malformed {
                line: number,
                reason: e.to_string(),
            })?;
        if line.seq > i64::MAX as u64 || line.time > i64::MAX as u64 {
            return Err(IngestError::Malformed {
                line: number,
                reason: "seq or time out of range".into(),
            });
        }
        out.push((start, line));
        start = end + 1;
    }
    Ok(out)
}

/// Inserts the verified rows in one statement (arrays unnested server-side).
async fn store_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    gateway: &str,
    batch: &[u8],
    fresh: &[(usize, Line)],
) -> Result<(), IngestError> {
    let n = fresh.len();
    let (mut seqs, mut times, mut kinds, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut apps, mut originators, mut effects, mut payloads, mut texts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, (start, line)) in fresh.iter().enumerate() {
        let end = fresh.get(i + 1).map_or(batch.len(), |(s, _)| *s) - 1;
        seqs.push(line.seq as i64);
        times.push(line.time as i64);
        kinds.push(line.kind.as_str());
        hashes.push(hex::decode(&line.hash).unwrap_or_default());
        let field = |name: &str| {
            (line.kind == "decision")
                .then(|| {
                    line.payload
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
                .flatten()
        };
        apps.push(field("app"));
        originators.push(field("originator"));
        effects.push(field("effect"));
        payloads.push(&line.payload);
        // Verified lines are UTF-8 (the verifier refuses anything else).
        texts.push(std::str::from_utf8(&batch[*start..end]).unwrap_or_default());
    }
    tx.execute(
        "INSERT INTO entries (gateway_id, seq, time_ms, kind, hash, app, originator, effect, payload, line)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::text[],
                                  $7::text[], $8::text[], $9::jsonb[], $10::text[])",
        &[&gateway, &seqs, &times, &kinds, &hashes, &apps, &originators, &effects, &payloads, &texts],
    )
    .await?;
    Ok(())
}
