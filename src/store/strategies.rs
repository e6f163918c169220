//! The strategies in force and the learner's audit trail in the SQLite store: what a run
//! leaves behind (`strategies`, `strategy_changes`), the queries `gavat strategy history`
//! and `show` read, and an operator's rollback, which restores the strategy in force
//! before a change and records itself as a change of its own.

use rusqlite::{Transaction, params};
use serde::Serialize;

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
    /// The strategy.
    pub strategy: DeliveryStrategy,
    /// The change that put it in force (0: the configured strategies).
    pub version: i64,
    /// Since when.
    pub updated_at: Timestamp,
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
            let id = offset + i64::from(c.id);
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

fn to_json(s: &DeliveryStrategy) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Why an operator's rollback was refused.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// No such change.
    #[error("no strategy change #{0} in this store (see `gavat strategy history`)")]
    NoSuchChange(i64),
    /// The change never put anything in force.
    #[error("change #{id} was {action}: it never changed the strategy in force, so there is nothing to roll back")]
    NothingToUndo {
        /// The change.
        id: i64,
        /// What it was.
        action: String,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SqliteStore {
    /// The audit trail, oldest first; only `segment`'s with `Some`.
    pub fn strategy_changes(&self, segment: Option<Segment>) -> Result<Vec<StoredChange>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare("SELECT * FROM strategy_changes WHERE ?1 IS NULL OR segment = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![segment.map(Segment::as_str)], read_change)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().collect::<Result<Vec<_>, String>>().map_err(|m| self.corrupt(m))
    }

    /// The strategies in force, in segment order.
    pub fn strategies_in_force(&self) -> Result<Vec<StoredStrategy>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare("SELECT segment, strategy, version, updated_at FROM strategies")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (segment, json, version, updated_at) in rows {
            let segment: Segment = segment.parse().map_err(|m: String| self.corrupt(format!("strategies: {m}")))?;
            let strategy = DeliveryStrategy::from_json(segment, &json)
                .map_err(|m| self.corrupt(format!("strategies.{}: {m}", segment.as_str())))?;
            out.push(StoredStrategy { strategy, version, updated_at: Timestamp(updated_at) });
        }
        out.sort_by_key(|s| s.strategy.segment.index());
        Ok(out)
    }

    /// Restores the strategy in force before change `id` for its segment, at `at`, and
    /// records the rollback as a change (source `operator`). Returns that record.
    pub fn rollback_strategy(&self, id: i64, at: Timestamp) -> Result<StoredChange, RollbackError> {
        let target =
            self.strategy_changes(None)?.into_iter().find(|c| c.id == id).ok_or(RollbackError::NoSuchChange(id))?;
        if !matches!(target.action.as_str(), "applied" | "kept" | "rolled_back") {
            return Err(RollbackError::NothingToUndo { id, action: target.action });
        }
        let segment = target.segment;
        let current = self
            .strategies_in_force()?
            .into_iter()
            .find(|s| s.strategy.segment == segment)
            .map(|s| s.strategy)
            .ok_or_else(|| self.corrupt(format!("no strategy in force for {}", segment.as_str())))?;
        let restored = target.strategy_before.clone();
        let later = self.strategy_changes(Some(segment))?.iter().filter(|c| c.id > id && c.action == "applied").count();
        let evidence = format!(
            "operator rollback of change #{id}: restores the {} strategy in force before it{}",
            segment.as_str(),
            if later > 0 { format!(", undoing {later} later applied change(s)") } else { String::new() }
        );
        let inner = self.lock();
        let result = (|| -> Result<StoredChange, rusqlite::Error> {
            let tx = inner.conn.unchecked_transaction()?;
            let new_id: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM strategy_changes", [], |r| r.get(0))?;
            let change = StoredChange {
                id: new_id,
                at,
                segment,
                source: "operator".into(),
                action: Action::RolledBack.as_str().into(),
                field: target.field.clone(),
                before: describe_field(&current, &target.field),
                after: describe_field(&restored, &target.field),
                evidence,
                proof: None,
                strategy_before: current,
                strategy_after: restored,
            };
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
            tx.commit()?;
            Ok(change)
        })();
        result.map_err(|e| RollbackError::Store(self.err(e)))
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Io { path: self.path().to_string(), cause: std::io::Error::other(message) }
    }
}

/// One row, with its strategies parsed; the outer error is SQLite's, the inner names the
/// broken column.
fn read_change(r: &rusqlite::Row<'_>) -> Result<Result<StoredChange, String>, rusqlite::Error> {
    let id: i64 = r.get("id")?;
    let segment: String = r.get("segment")?;
    let proof: Option<String> = r.get("proof")?;
    let (before_json, after_json): (String, String) = (r.get("strategy_before")?, r.get("strategy_after")?);
    let base = (
        id,
        r.get::<_, i64>("at")?,
        r.get::<_, String>("source")?,
        r.get::<_, String>("action")?,
        r.get::<_, String>("field")?,
        r.get::<_, String>("before")?,
        r.get::<_, String>("after")?,
        r.get::<_, String>("evidence")?,
    );
    Ok((|| {
        let at_column = |c: &str, m: String| format!("strategy_changes #{id}.{c}: {m}");
        let segment: Segment = segment.parse().map_err(|m| at_column("segment", m))?;
        let strategy_before =
            DeliveryStrategy::from_json(segment, &before_json).map_err(|m| at_column("strategy_before", m))?;
        let strategy_after =
            DeliveryStrategy::from_json(segment, &after_json).map_err(|m| at_column("strategy_after", m))?;
        let proof = match proof {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| at_column("proof", e.to_string()))?),
            None => None,
        };
        let (id, at, source, action, field, before, after, evidence) = base;
        Ok(StoredChange {
            id,
            at: Timestamp(at),
            segment,
            source,
            action,
            field,
            before,
            after,
            evidence,
            proof,
            strategy_before,
            strategy_after,
        })
    })())
}
