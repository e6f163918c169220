//! The strategies in force and the learner's audit trail in the SQLite store: what a run
//! leaves behind (`strategies`, `strategy_changes`), the queries `gavat strategy history`
//! and `show` read, and an operator's rollback, which restores the strategy in force
//! before a change and records itself as a change of its own.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::domain::{DeliveryStrategy, Segment, Timestamp};
use crate::learner::{Action, describe_field};

use super::{RunRecord, SqliteStore, StoreError};

/// One audit entry as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredChange {
    /// Store-wide id (what `gavat strategy rollback` takes).
    pub id: i64,
    /// When (engine time).
    pub at: Timestamp,
    /// Whose strategy.
    pub segment: Segment,
    /// `statistics`, `llm` or `operator`.
    pub source: String,
    /// `applied`, `kept`, `rolled_back` or `rejected`.
    pub action: String,
    /// `send_hours`, `daily_limit` or `cooldown_hours`.
    pub field: String,
    /// The field before.
    pub before: String,
    /// The field after (for a rejection: the value proposed).
    pub after: String,
    /// Why, with the numbers.
    pub evidence: String,
    /// The simulation the proposal had to win, if one ran.
    pub proof: Option<serde_json::Value>,
    /// The whole strategy before.
    pub strategy_before: DeliveryStrategy,
    /// The whole strategy after.
    pub strategy_after: DeliveryStrategy,
}

/// A strategy in force.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredStrategy {
    /// Whose strategy (also in `strategy`, which serializes as a strategy file's table and
    /// so without its name).
    pub segment: Segment,
    /// The strategy.
    pub strategy: DeliveryStrategy,
    /// The change that put it in force (0: the configured strategies).
    pub version: i64,
    /// When that change was made; `None` for a configured strategy, in force since the
    /// start of the run.
    pub since: Option<Timestamp>,
    /// Whether it differs from the strategy configured for the segment (the one before its
    /// first recorded change): false for a strategy never changed or rolled back to the
    /// configured one.
    pub learned: bool,
}

/// Writes a run's strategies in force and audit trail (inside `save_run`'s transaction).
/// Ids continue after the store's last one, so a trail appended to an older store keeps
/// its order.
pub(super) fn save_in_tx(tx: &Transaction<'_>, run: &RunRecord) -> Result<(), rusqlite::Error> {
    let offset: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM strategy_changes", [], |r| r.get(0))?;
    let mut version = [0i64; 8];
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO strategy_changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for c in &run.strategy_changes {
            let id = offset.saturating_add(i64::try_from(c.id).unwrap_or(i64::MAX));
            let proof = c.proof.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default());
            insert.execute(params![
                id,
                c.at.secs(),
                c.segment.as_str(),
                c.source,
                c.action.as_str(),
                c.field,
                c.before,
                c.after,
                c.evidence,
                proof,
                to_json(&c.strategy_before),
                to_json(&c.strategy_after),
            ])?;
            if matches!(c.action, Action::Applied | Action::RolledBack) {
                version[c.segment.index()] = id;
            }
        }
    }
    let mut upsert = tx.prepare_cached("INSERT OR REPLACE INTO strategies VALUES (?1, ?2, ?3, ?4)")?;
    for s in &run.strategies {
        upsert.execute(params![s.segment.as_str(), to_json(s), version[s.segment.index()], run.ended_at.secs()])?;
    }
    Ok(())
}

pub(super) fn to_json(s: &DeliveryStrategy) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Why an operator's rollback was refused.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// No such change.
    #[error("no strategy change #{0} in this store (see `gavat strategy history`)")]
    NoSuchChange(i64),
    /// Only an applied change can be rolled back.
    #[error(
        "change #{id} was {action}: only an applied change can be rolled back{hint}",
        hint = if action == "kept" { " (a kept entry confirms an earlier applied change: roll that one back)" } else { "" }
    )]
    NotApplied {
        /// The change.
        id: i64,
        /// What it was.
        action: String,
    },
    /// What the change replaced is what is in force (a guardrail or an operator already
    /// undid it).
    #[error("the strategy change #{id} replaced is already in force: nothing to roll back")]
    AlreadyInForce {
        /// The change.
        id: i64,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A read that failed in SQLite, or found a row it cannot use.
enum ReadError {
    Sql(rusqlite::Error),
    Corrupt(String),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> ReadError {
        ReadError::Sql(e)
    }
}

fn read_changes(conn: &Connection, segment: Option<Segment>) -> Result<Vec<StoredChange>, ReadError> {
    let mut stmt = conn.prepare("SELECT * FROM strategy_changes WHERE ?1 IS NULL OR segment = ?1 ORDER BY id")?;
    let rows = stmt.query_map(params![segment.map(Segment::as_str)], read_change)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().collect::<Result<Vec<_>, String>>().map_err(ReadError::Corrupt)
}

fn read_in_force(conn: &Connection) -> Result<Vec<StoredStrategy>, ReadError> {
    // The time of the change that put each strategy in force, and the strategy configured
    // before the segment's first change: the `updated_at` column holds the end of the run
    // that saved the row, not when the strategy came into force.
    let mut stmt = conn.prepare(
        "SELECT s.segment, s.strategy, s.version, c.at,
                (SELECT f.strategy_before FROM strategy_changes f
                 WHERE f.segment = s.segment AND f.action IN ('applied', 'rolled_back') ORDER BY f.id LIMIT 1)
         FROM strategies s LEFT JOIN strategy_changes c ON c.id = s.version",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (segment, json, version, since, configured) in rows {
        let segment: Segment = segment.parse().map_err(|m: String| ReadError::Corrupt(format!("strategies: {m}")))?;
        let strategy = DeliveryStrategy::from_json(segment, &json)
            .map_err(|m| ReadError::Corrupt(format!("strategies.{}: {m}", segment.as_str())))?;
        if version != 0 && since.is_none() {
            return Err(ReadError::Corrupt(format!(
                "strategies.{}: version {version} names no recorded change",
                segment.as_str()
            )));
        }
        let learned = match configured {
            Some(configured) => {
                let configured = DeliveryStrategy::from_json(segment, &configured).map_err(|m| {
                    ReadError::Corrupt(format!("strategy_changes of {}: strategy_before: {m}", segment.as_str()))
                })?;
                configured != strategy
            }
            None => false,
        };
        out.push(StoredStrategy { segment, strategy, version, since: since.map(Timestamp), learned });
    }
    out.sort_by_key(|s| s.strategy.segment.index());
    Ok(out)
}

impl SqliteStore {
    fn read_error(&self, e: ReadError) -> StoreError {
        match e {
            ReadError::Sql(e) => self.err(e),
            ReadError::Corrupt(message) => {
                StoreError::Io { path: self.path().to_string(), cause: std::io::Error::other(message) }
            }
        }
    }

    /// The audit trail, oldest first; only `segment`'s with `Some`.
    pub fn strategy_changes(&self, segment: Option<Segment>) -> Result<Vec<StoredChange>, StoreError> {
        let inner = self.lock();
        read_changes(&inner.conn, segment).map_err(|e| self.read_error(e))
    }

    /// The strategies in force, in segment order.
    pub fn strategies_in_force(&self) -> Result<Vec<StoredStrategy>, StoreError> {
        let inner = self.lock();
        read_in_force(&inner.conn).map_err(|e| self.read_error(e))
    }

    /// Restores the strategy in force before the applied change `id` for its segment (so
    /// undoing any later change of that segment too), at `at`, and records the rollback as
    /// a change of its own (source `operator`). Reads and writes in one immediate
    /// transaction, so that a concurrent writer cannot slip in between. Returns the record.
    ///
    /// The restored strategy was in force before, so the learner's hard limits — which
    /// bound what the learner and its adviser may propose — are not applied to it.
    pub fn rollback_strategy(&self, id: i64, at: Timestamp) -> Result<StoredChange, RollbackError> {
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| RollbackError::Store(self.err(e)))?;
        let read = |e| RollbackError::Store(self.read_error(e));
        // Only the rows this rollback needs: a broken row elsewhere does not block it.
        let target = tx
            .query_row("SELECT * FROM strategy_changes WHERE id = ?1", params![id], read_change)
            .optional()
            .map_err(|e| read(e.into()))?
            .ok_or(RollbackError::NoSuchChange(id))?
            .map_err(|m| read(ReadError::Corrupt(m)))?;
        if target.action != "applied" {
            return Err(RollbackError::NotApplied { id, action: target.action });
        }
        let segment = target.segment;
        let json: Option<String> = tx
            .query_row("SELECT strategy FROM strategies WHERE segment = ?1", params![segment.as_str()], |r| r.get(0))
            .optional()
            .map_err(|e| read(e.into()))?;
        let json =
            json.ok_or_else(|| read(ReadError::Corrupt(format!("no strategy in force for {}", segment.as_str()))))?;
        let current = DeliveryStrategy::from_json(segment, &json)
            .map_err(|m| read(ReadError::Corrupt(format!("strategies.{}: {m}", segment.as_str()))))?;
        let later: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM strategy_changes
                 WHERE segment = ?1 AND id > ?2 AND action IN ('applied', 'rolled_back')",
                params![segment.as_str(), id],
                |r| r.get(0),
            )
            .map_err(|e| read(e.into()))?;
        if current == target.strategy_before {
            return Err(RollbackError::AlreadyInForce { id });
        }
        let write = |tx: &Transaction<'_>| -> Result<StoredChange, rusqlite::Error> {
            let new_id: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM strategy_changes", [], |r| r.get(0))?;
            let change = rollback_record(&target, &current, later, new_id, at);
            tx.execute(
                "INSERT INTO strategy_changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11)",
                params![
                    change.id,
                    at.secs(),
                    segment.as_str(),
                    change.source,
                    change.action,
                    change.field,
                    change.before,
                    change.after,
                    change.evidence,
                    to_json(&change.strategy_before),
                    to_json(&change.strategy_after),
                ],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO strategies VALUES (?1, ?2, ?3, ?4)",
                params![segment.as_str(), to_json(&change.strategy_after), new_id, at.secs()],
            )?;
            Ok(change)
        };
        let change = write(&tx).map_err(|e| RollbackError::Store(self.err(e)))?;
        tx.commit().map_err(|e| RollbackError::Store(self.err(e)))?;
        Ok(change)
    }
}

/// One row, with its strategies parsed; the outer error is SQLite's, the inner names the
/// broken column.
fn read_change(r: &rusqlite::Row<'_>) -> Result<Result<StoredChange, String>, rusqlite::Error> {
    let row = ChangeRow {
        id: r.get("id")?,
        at: r.get("at")?,
        segment: r.get("segment")?,
        source: r.get("source")?,
        action: r.get("action")?,
        field: r.get("field")?,
        before: r.get("before")?,
        after: r.get("after")?,
        evidence: r.get("evidence")?,
        proof: r.get("proof")?,
        strategy_before: r.get("strategy_before")?,
        strategy_after: r.get("strategy_after")?,
    };
    Ok(row.parse())
}

/// An audit entry as a store keeps it: the columns of `strategy_changes`, strategies and
/// proof as JSON text. The Redis store keeps the same record as JSON, keyed by its id (so
/// `id` is not part of the JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ChangeRow {
    #[serde(skip)]
    pub(super) id: i64,
    pub(super) at: i64,
    pub(super) segment: String,
    pub(super) source: String,
    pub(super) action: String,
    pub(super) field: String,
    pub(super) before: String,
    pub(super) after: String,
    pub(super) evidence: String,
    pub(super) proof: Option<String>,
    pub(super) strategy_before: String,
    pub(super) strategy_after: String,
}

impl ChangeRow {
    /// The row of an audit entry.
    pub(super) fn of(c: &StoredChange) -> ChangeRow {
        ChangeRow {
            id: c.id,
            at: c.at.secs(),
            segment: c.segment.as_str().to_string(),
            source: c.source.clone(),
            action: c.action.clone(),
            field: c.field.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
            evidence: c.evidence.clone(),
            proof: c.proof.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
            strategy_before: to_json(&c.strategy_before),
            strategy_after: to_json(&c.strategy_after),
        }
    }

    /// The entry, with its strategies parsed; the error names the broken column.
    pub(super) fn parse(self) -> Result<StoredChange, String> {
        let id = self.id;
        let at_column = |c: &str, m: String| format!("strategy_changes #{id}.{c}: {m}");
        let segment: Segment = self.segment.parse().map_err(|m| at_column("segment", m))?;
        let strategy_before =
            DeliveryStrategy::from_json(segment, &self.strategy_before).map_err(|m| at_column("strategy_before", m))?;
        let strategy_after =
            DeliveryStrategy::from_json(segment, &self.strategy_after).map_err(|m| at_column("strategy_after", m))?;
        let proof = match self.proof {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| at_column("proof", e.to_string()))?),
            None => None,
        };
        Ok(StoredChange {
            id,
            at: Timestamp(self.at),
            segment,
            source: self.source,
            action: self.action,
            field: self.field,
            before: self.before,
            after: self.after,
            evidence: self.evidence,
            proof,
            strategy_before,
            strategy_after,
        })
    }
}

/// The record of an operator's rollback of `target` (checked by [`check_rollback`]) while
/// `current` is in force and `later` applied or rolled-back changes of the segment follow
/// it: what every store writes as change `new_id`.
pub(super) fn rollback_record(
    target: &StoredChange,
    current: &DeliveryStrategy,
    later: i64,
    new_id: i64,
    at: Timestamp,
) -> StoredChange {
    let (id, segment) = (target.id, target.segment);
    let restored = target.strategy_before.clone();
    let evidence = format!(
        "operator rollback of change #{id}: restores the {} strategy in force before it{}",
        segment.as_str(),
        if later > 0 { format!(", undoing {later} later change(s) of it") } else { String::new() }
    );
    StoredChange {
        id: new_id,
        at,
        segment,
        source: "operator".into(),
        action: Action::RolledBack.as_str().into(),
        field: target.field.clone(),
        before: describe_field(current, &target.field),
        after: describe_field(&restored, &target.field),
        evidence,
        proof: None,
        strategy_before: current.clone(),
        strategy_after: restored,
    }
}

/// The strategies in force from what a store keeps: each segment's strategy and the id of
/// the change that put it in force (`version`), and the whole audit trail in id order.
/// `since` is that change's time; `learned` compares with the strategy before the
/// segment's first applied or rolled-back change. In segment order.
pub(super) fn in_force_from(
    rows: Vec<(Segment, DeliveryStrategy, i64)>,
    changes: &[StoredChange],
) -> Result<Vec<StoredStrategy>, String> {
    let mut out = Vec::with_capacity(rows.len());
    for (segment, strategy, version) in rows {
        let since = changes.iter().find(|c| c.id == version).map(|c| c.at);
        if version != 0 && since.is_none() {
            return Err(format!("strategies.{}: version {version} names no recorded change", segment.as_str()));
        }
        let configured = changes
            .iter()
            .find(|c| c.segment == segment && (c.action == "applied" || c.action == "rolled_back"))
            .map(|c| &c.strategy_before);
        let learned = configured.is_some_and(|c| *c != strategy);
        out.push(StoredStrategy {
            segment,
            strategy,
            version,
            since: if version == 0 { None } else { since },
            learned,
        });
    }
    out.sort_by_key(|s| s.strategy.segment.index());
    Ok(out)
}
