//! One audit chain for every node, in the database. A batch (the group commit's) is one
//! transaction: it locks the head row, chains its records after the head it finds, inserts
//! them and moves the head, and commits before any of its requests is answered. Nodes take
//! turns on the head row, so the sequence has no gaps and no forks; each record names the
//! node that wrote it.

use super::{db_error, stmt, Db};
use crate::error::Result;
use crate::store::audit::{chain, discard, AuditRecord, ChainHead, Event, Group, Journal};

/// The audit chain in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgJournal {
    db: Db,
    node: String,
    /// The head of the last batch this node wrote (or accepted): every later batch must find
    /// it in the chain, or the database is not the one this node wrote to (a failover to a
    /// lagging standby, a restored backup, an old primary back).
    known: std::sync::Arc<std::sync::Mutex<Option<ChainHead>>>,
}

impl PgJournal {
    /// The chain in `db`, written by node `node`.
    pub fn new(db: Db, node: String) -> Self {
        PgJournal {
            db,
            node,
            known: Default::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Option<ChainHead>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rows(&self, after: u64, limit: usize) -> Result<Vec<String>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.run(move |c| async move {
            let rows = c
                .query(
                    &stmt(
                        &c,
                        "SELECT line FROM signet_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .await?,
                    &[&after, &limit],
                )
                .await
                .map_err(db_error)?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }
}

/// A pooled connection inside the append's transaction. Dropped before [`finish`] (the deadline
/// passed, the request was cancelled) or finished unclean, the connection leaves the pool and
/// closes, so the server rolls back and no later user inherits the open transaction.
///
/// [`finish`]: OpenTransaction::finish
struct OpenTransaction(Option<deadpool_postgres::Object>);

impl OpenTransaction {
    fn client(&self) -> &deadpool_postgres::Object {
        // Set at construction, taken only by `finish` and `drop`.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }

    fn finish(mut self, clean: bool) {
        if clean {
            self.0.take();
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Cached records to find unchanged, as the check statement's arrays (kind, key, value, and the
/// index of the group relying on it).
#[derive(Default)]
struct Check {
    kinds: Vec<String>,
    keys: Vec<String>,
    values: Vec<String>,
    groups: Vec<i32>,
}

/// The error that explains a failed pipeline: the first one that is not PostgreSQL's
/// "current transaction is aborted" (SQLSTATE 25P02), which only echoes an earlier failure.
fn first_cause(errors: [Option<tokio_postgres::Error>; 3]) -> crate::error::Error {
    let aborted = |e: &tokio_postgres::Error| {
        e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    };
    let mut errors: Vec<tokio_postgres::Error> = errors.into_iter().flatten().collect();
    let at = errors.iter().position(|e| !aborted(e)).unwrap_or(0);
    if errors.is_empty() {
        return crate::error::Error::Internal("a failed audit batch without an error".into());
    }
    db_error(errors.swap_remove(at))
}

impl Journal for PgJournal {
    fn head(&self) -> Result<ChainHead> {
        self.db.run(|c| async move {
            let row = c
                .query_one("SELECT seq, hash FROM signet_audit_head WHERE id = 1", &[])
                .await
                .map_err(db_error)?;
            Ok(ChainHead {
                seq: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                hash: row.get(1),
            })
        })
    }

    fn append(&self, events: Vec<Event>) -> Result<Vec<AuditRecord>> {
        let whole = [Group {
            len: events.len(),
            relies_on: None,
        }];
        self.append_groups(events, &whole)
            .map(|(records, _)| records)
    }

    fn append_groups(
        &self,
        mut events: Vec<Event>,
        groups: &[Group],
    ) -> Result<(Vec<AuditRecord>, Vec<bool>)> {
        if events.is_empty() {
            return Ok((Vec::new(), vec![false; groups.len()]));
        }
        // The cached records each group relies on, to be found unchanged in this transaction.
        let mut check = Check::default();
        let mut spans = Vec::with_capacity(groups.len());
        let mut at = 0;
        for (i, group) in groups.iter().enumerate() {
            spans.push(at..(at + group.len).min(events.len()));
            at += group.len;
            for (kind, key, value) in group.relies_on.iter().flat_map(|r| r.0.iter()) {
                check.kinds.push((*kind).to_string());
                check.keys.push(key.clone());
                check
                    .values
                    .push(String::from_utf8_lossy(value).into_owned());
                check.groups.push(i32::try_from(i).unwrap_or(i32::MAX));
            }
        }
        let node = self.node.clone();
        let known = self.known().clone();
        let records = self.db.run(move |c| async move {
            let guard = OpenTransaction(Some(c));
            let c = guard.client();
            // Two round trips: BEGIN with the head's lock, then the rows, the new head and
            // COMMIT together. tokio-postgres sends requests in the order their futures are
            // first polled and pipelines them, so every statement here is prepared beforehand
            // (an unprepared one would first wait for its own parse, letting the next overtake
            // it).
            let begin = stmt(c, "BEGIN").await?;
            let commit = stmt(c, "COMMIT").await?;
            let lock = stmt(c, "SELECT seq, hash FROM signet_audit_head WHERE id = 1 FOR UPDATE").await?;
            let insert = stmt(
                c,
                "INSERT INTO signet_audit (seq, hash, node, line)
                 SELECT s, h, $3, l FROM unnest($1::bigint[], $2::text[], $4::text[]) AS t(s, h, l)",
            )
            .await?;
            let advance = stmt(c, "UPDATE signet_audit_head SET seq = $1, hash = $2 WHERE id = 1").await?;
            // The record this node last wrote, read in the same round trip as the head's lock
            // (it is immutable once committed, so it needs no lock of its own).
            let at = stmt(c, "SELECT hash FROM signet_audit WHERE seq = $1").await?;
            let changed = stmt(
                c,
                "SELECT DISTINCT t.g FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS t(k, key, v, g)
                 WHERE NOT EXISTS (SELECT 1 FROM signet_records r
                                   WHERE r.kind = t.k AND r.key = t.key AND r.value = t.v)",
            )
            .await?;
            let check_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&check.kinds, &check.keys, &check.values, &check.groups];
            let known_seq = known
                .as_ref()
                .map_or(-1, |k| i64::try_from(k.seq).unwrap_or(i64::MAX));
            let at_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&known_seq];
            let result = async {
                let checked = async {
                    if check.groups.is_empty() {
                        Ok(Vec::new())
                    } else {
                        c.query(&changed, &check_params).await
                    }
                };
                let (_, row, found, changed) = tokio::try_join!(
                    c.execute(&begin, &[]),
                    c.query_one(&lock, &[]),
                    c.query_opt(&at, &at_params),
                    checked,
                )
                .map_err(db_error)?;
                let mut discarded = vec![false; spans.len()];
                for row in changed {
                    let group = usize::try_from(row.get::<_, i32>(0)).unwrap_or(usize::MAX);
                    if let (Some(flag), Some(span)) = (discarded.get_mut(group), spans.get(group)) {
                        *flag = true;
                        discard(&mut events[span.clone()]);
                    }
                }
                let head = ChainHead {
                    seq: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                    hash: row.get(1),
                };
                if let Some(known) = &known {
                    let found_hash: Option<String> = found.map(|r| r.get(0));
                    let continues = known.seq == 0 || found_hash.as_deref() == Some(known.hash.as_str());
                    if !continues || head.seq < known.seq {
                        return Err(crate::error::Error::ChainBroken {
                            node: node.clone(),
                            known_seq: known.seq,
                            known_hash: known.hash.clone(),
                            found_seq: head.seq,
                        });
                    }
                }
                let time = crate::support::time::format_time_precise();
                let records = chain(&head, events, &time, Some(&node));
                let mut seqs = Vec::with_capacity(records.len());
                let mut hashes = Vec::with_capacity(records.len());
                let mut lines = Vec::with_capacity(records.len());
                for r in &records {
                    seqs.push(i64::try_from(r.seq).unwrap_or(i64::MAX));
                    hashes.push(r.hash.clone());
                    let mut line = r.to_line();
                    line.pop();
                    lines.push(String::from_utf8(line).unwrap_or_default());
                }
                let (last_seq, last_hash) = match records.last() {
                    Some(r) => (i64::try_from(r.seq).unwrap_or(i64::MAX), r.hash.clone()),
                    None => return Ok((records, discarded)),
                };
                // A failed INSERT or UPDATE is this batch's error (the COMMIT after it then
                // rolls back); a failed COMMIT is one too: nothing of it is answered.
                let rows: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&seqs, &hashes, &node, &lines];
                let head: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&last_seq, &last_hash];
                let (inserted, advanced, committed) = tokio::join!(
                    c.execute(&insert, &rows),
                    c.execute(&advance, &head),
                    c.execute(&commit, &[]),
                );
                match (inserted, advanced, committed) {
                    (Ok(_), Ok(_), Ok(_)) => Ok((records, discarded)),
                    // The rows and the head went in and the COMMIT was sent, but its answer
                    // never came: the batch may be in the chain. Say so, not "not performed".
                    (Ok(_), Ok(_), Err(e)) if e.as_db_error().is_none() => {
                        Err(crate::error::Error::AuditUncertain(format!(
                            "the connection to PostgreSQL broke while committing the audit records ({e})"
                        )))
                    }
                    // The first statement that failed says why (a full disk, not the
                    // "current transaction is aborted" of the statements after it).
                    (first, second, third) => Err(first_cause([
                        first.err(),
                        second.err(),
                        third.err(),
                    ])),
                }
            }
            .await;
            let clean = match &result {
                Ok(_) => true,
                Err(_) => !c.is_closed() && c.batch_execute("ROLLBACK").await.is_ok(),
            };
            guard.finish(clean);
            result
        })?;
        if let Some(last) = records.0.last() {
            *self.known() = Some(ChainHead {
                seq: last.seq,
                hash: last.hash.clone(),
            });
        }
        Ok(records)
    }

    fn accept_head(&self) {
        *self.known() = None;
    }

    fn read_lines(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<std::result::Result<AuditRecord, String>>> {
        Ok(self
            .rows(after, limit)?
            .into_iter()
            .map(|line| AuditRecord::from_line(line.as_bytes()))
            .collect())
    }

    fn repairs(&self) -> Vec<String> {
        Vec::new()
    }
}
