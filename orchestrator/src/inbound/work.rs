//! Group commit: the deliveries a consumer has at hand are processed in one transaction, so a
//! busy orchestrator pays one `BEGIN`/`COMMIT` (and one pooled connection's checks) per batch
//! instead of per message.
//!
//! Each delivery's processing is written as if it were alone: it begins a [`Tx`] from its
//! [`Work`], writes, and commits with what must happen once its writes are durable (an
//! [`AfterCommit`]: the outbox rows for the relay, the run for the cache, metrics). Alone, that
//! is a transaction of its own. In a batch, its `commit` only ends its part and the
//! `AfterCommit` waits for the batch's commit; a part that ends any other way (an error, a
//! panic, or an early return after it wrote) abandons the batch, which is rolled back and its
//! deliveries processed again one by one. So one message's failure never costs another its
//! commit, and what a batch commits is exactly what its messages would have committed alone.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use sagaflow_contracts::SagaId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::advance::AfterCommit;
use crate::store::{self, SagaRow};

/// Where a delivery's writes go: a transaction of its own, or the batch's.
pub(crate) enum Work<'w> {
    Alone(&'w PgPool),
    Batch(&'w mut Batch),
}

/// The transaction a batch of deliveries shares, and what waits for its commit.
pub(crate) struct Batch {
    tx: Transaction<'static, Postgres>,
    after_commit: Vec<AfterCommit>,
    /// A part ended without committing: the batch must be rolled back.
    abandoned: bool,
    /// Sagas locked ahead, all in one statement, not yet used by a part.
    locked: HashMap<SagaId, SagaRow>,
}

impl Batch {
    pub(crate) async fn begin(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Batch {
            tx: pool.begin().await?,
            after_commit: Vec::new(),
            abandoned: false,
            locked: HashMap::new(),
        })
    }

    /// Locks the sagas the batch's messages are about, in one statement and in the order of
    /// their ids: two batches cannot deadlock on them, and each part finds its saga locked.
    pub(crate) async fn lock_sagas(&mut self, ids: &[SagaId]) -> Result<(), sqlx::Error> {
        if ids.len() > 1 {
            let rows = store::lock_sagas(&mut self.tx, ids).await?;
            self.locked = rows.into_iter().map(|row| (row.id, row)).collect();
        }
        Ok(())
    }

    /// Whether a part ended without committing (see the module's documentation).
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// Commits every part; returns what waited for it, in the order of the parts.
    pub(crate) async fn commit(self) -> Result<Vec<AfterCommit>, sqlx::Error> {
        debug_assert!(
            !self.abandoned,
            "an abandoned batch is rolled back, never committed"
        );
        self.tx.commit().await?;
        Ok(self.after_commit)
    }
}

impl Work<'_> {
    /// Begins the writes of one delivery (or of one timer, or one operator's request).
    pub(crate) async fn begin(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(match self {
            Work::Alone(pool) => Tx::Alone(Some(pool.begin().await?)),
            Work::Batch(batch) => Tx::InBatch {
                batch,
                ended: false,
            },
        })
    }
}

/// One delivery's writes: a transaction of its own, or its part of a batch's.
pub(crate) enum Tx<'w> {
    /// `None` once committed.
    Alone(Option<Transaction<'static, Postgres>>),
    InBatch {
        batch: &'w mut Batch,
        ended: bool,
    },
}

impl Tx<'_> {
    /// Locks saga `id` for the rest of the transaction and reads it (in a batch, it may be
    /// locked already: see [`Batch::lock_sagas`]).
    pub(crate) async fn lock_saga(&mut self, id: SagaId) -> Result<Option<SagaRow>, sqlx::Error> {
        if let Tx::InBatch { batch, .. } = self {
            // Taken once: a second message about the same saga reads what the first wrote.
            if let Some(row) = batch.locked.remove(&id) {
                return Ok(Some(row));
            }
        }
        store::lock_saga(self, id).await
    }

    /// Makes the writes durable (alone) or hands them to the batch's commit. Returns `after`
    /// when it is to run now; in a batch it runs after the batch's commit instead.
    pub(crate) async fn commit(
        mut self,
        after: AfterCommit,
    ) -> Result<Option<AfterCommit>, sqlx::Error> {
        match &mut self {
            Tx::Alone(tx) => {
                if let Some(tx) = tx.take() {
                    tx.commit().await?;
                }
                Ok(Some(after))
            }
            Tx::InBatch { batch, ended } => {
                *ended = true;
                batch.after_commit.push(after);
                Ok(None)
            }
        }
    }

    /// Ends a part that wrote nothing (it only read, or found a duplicate). Alone, its
    /// transaction is rolled back; in a batch, the locks it took are kept until the batch ends.
    pub(crate) fn end_unwritten(self) {
        let _ = self.end_unwritten_then(AfterCommit::default());
    }

    /// [`Tx::end_unwritten`], with `after` to run now (returned) or after the batch's commit.
    pub(crate) fn end_unwritten_then(mut self, after: AfterCommit) -> Option<AfterCommit> {
        match &mut self {
            Tx::Alone(_) => Some(after),
            Tx::InBatch { batch, ended } => {
                *ended = true;
                batch.after_commit.push(after);
                None
            }
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if let Tx::InBatch {
            batch,
            ended: false,
        } = self
        {
            batch.abandoned = true;
        }
    }
}

impl Deref for Tx<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Tx::Alone(tx) => tx
                .as_deref()
                .expect("a transaction is not used after its commit"),
            Tx::InBatch { batch, .. } => &batch.tx,
        }
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Tx::Alone(tx) => tx
                .as_deref_mut()
                .expect("a transaction is not used after its commit"),
            Tx::InBatch { batch, .. } => &mut batch.tx,
        }
    }
}
