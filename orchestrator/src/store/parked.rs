//! Facts that arrive while a saga is stuck wait here, in order, until it is resumed: its
//! history only ever holds what its code has seen.

use sagaflow_contracts::SagaId;
use serde::{Deserialize, Serialize};

use sqlx::PgConnection;

/// A fact kept for a stuck saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParkedFact {
    /// An activity result, as the service sent it.
    Result {
        step: sagaflow_contracts::StepSeq,
        activity: Option<String>,
        attempt: u32,
        outcome: sagaflow_contracts::ActivityOutcome,
    },
    /// A timer that came due.
    Timer { key: String, attempt: u32 },
}

pub async fn park_fact(
    tx: &mut PgConnection,
    saga: SagaId,
    fact: &ParkedFact,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO parked_facts (saga_id, fact) VALUES ($1, $2)")
        .bind(saga.0)
        .bind(sqlx::types::Json(fact))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Takes the saga's parked facts, oldest first (deleted when `tx` commits).
pub async fn take_parked_facts(
    tx: &mut PgConnection,
    saga: SagaId,
) -> Result<Vec<ParkedFact>, sqlx::Error> {
    let facts: Vec<sqlx::types::Json<ParkedFact>> = sqlx::query_scalar(
        "WITH taken AS (DELETE FROM parked_facts WHERE saga_id = $1 RETURNING id, fact)
         SELECT fact FROM taken ORDER BY id",
    )
    .bind(saga.0)
    .fetch_all(&mut *tx)
    .await?;
    Ok(facts.into_iter().map(|f| f.0).collect())
}
