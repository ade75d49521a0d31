//! What every fault test checks at the end, as a user would: every saga completed, its charge
//! and its receipt made once, nothing left in the outbox, no dead letter.

use std::time::Duration;

use crate::{payment, wait_until, Deployment, Service};

impl Deployment {
    /// Publishes `n` payments with start keys `<prefix>-<i>`, `batch` at a time every `every`,
    /// so that faults made meanwhile land on every phase of the sagas' lives; returns the keys.
    pub async fn publish_payments_over_time(
        &self,
        prefix: &str,
        n: usize,
        batch: usize,
        every: Duration,
    ) -> Vec<String> {
        let keys: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
        let mut pace = tokio::time::interval(every);
        for chunk in keys.chunks(batch) {
            pace.tick().await;
            for key in chunk {
                self.publish_start(&payment::start(key)).await;
            }
        }
        keys
    }

    /// Sagas that ended `completed`.
    pub async fn completed_sagas(&self) -> i64 {
        self.count("SELECT count(*) FROM sagas WHERE status = 'completed'")
            .await
    }

    /// Waits until `more` sagas have completed beyond `since`; returns how many have now.
    pub async fn wait_for_completions(&self, since: i64, more: i64, timeout: Duration) -> i64 {
        wait_until(
            &format!(
                "{more} more sagas complete after {since} (logs: {})",
                self.log_dir().display()
            ),
            timeout,
            || async {
                let done = self.completed_sagas().await;
                (done >= since + more).then_some(done)
            },
        )
        .await
    }

    /// Waits until the payment sagas of `keys` have all ended, then checks that each completed
    /// with exactly one charge and one receipt, that each step was scheduled once, that the
    /// outbox empties and that nothing was dead-lettered.
    pub async fn assert_payments_completed_once(&self, keys: &[String], timeout: Duration) {
        let n = keys.len() as i64;
        wait_until(
            &format!("all {n} sagas end (logs: {})", self.log_dir().display()),
            timeout,
            || async {
                let ended = self
                    .count("SELECT count(*) FROM sagas WHERE status <> 'running'")
                    .await;
                (ended == n).then_some(())
            },
        )
        .await;
        let not_completed: Vec<(String, String)> =
            sqlx::query_as("SELECT start_key, status FROM sagas WHERE status <> 'completed'")
                .fetch_all(&self.db)
                .await
                .expect("sagas can be queried");
        assert!(
            not_completed.is_empty(),
            "sagas that did not complete: {not_completed:?} (logs: {})",
            self.log_dir().display()
        );
        assert_eq!(self.completed_sagas().await, n, "every saga completed");
        assert_eq!(
            self.count("SELECT count(*) FROM charges").await,
            n,
            "one charge per saga"
        );
        assert_eq!(
            self.count("SELECT count(DISTINCT order_id) FROM charges")
                .await,
            n,
            "a charge for every order"
        );
        assert_eq!(
            self.count("SELECT count(*) FROM receipts").await,
            n,
            "one receipt per saga"
        );
        assert_eq!(
            self.count("SELECT count(DISTINCT saga_id) FROM receipts")
                .await,
            n,
            "a receipt for every saga"
        );
        // Retries schedule a step again with the next attempt number; a step or an attempt
        // scheduled twice would be a decision taken twice.
        assert_eq!(
            self.count(
                "SELECT count(DISTINCT (saga_id, event->>'step')) FROM saga_events
                 WHERE kind = 'ActivityScheduled'"
            )
            .await,
            3 * n,
            "three steps per saga"
        );
        assert_eq!(
            self.count(
                "SELECT count(*) FROM (SELECT 1 FROM saga_events WHERE kind = 'ActivityScheduled'
                 GROUP BY saga_id, event->>'step', event->>'attempt' HAVING count(*) > 1) AS twice"
            )
            .await,
            0,
            "no attempt was scheduled twice"
        );
        wait_until("the outbox is empty", timeout, || async {
            (self.count("SELECT count(*) FROM outbox").await == 0).then_some(())
        })
        .await;
        assert_eq!(
            self.dead_letter_count().await,
            0,
            "nothing was dead-lettered"
        );
    }

    /// Waits until each payment saga of `keys` has completed, then checks one charge and one
    /// receipt per saga, that the outbox empties, and that every process of `running` still runs
    /// (it waited the fault out instead of exiting).
    pub async fn assert_payments_done_and_running(
        &self,
        keys: &[String],
        running: &mut [Service],
        timeout: Duration,
    ) {
        for key in keys {
            assert_eq!(self.wait_for_end(key, timeout).await, "completed", "{key}");
        }
        let n = keys.len() as i64;
        assert_eq!(self.count("SELECT count(*) FROM charges").await, n);
        assert_eq!(
            self.count("SELECT count(DISTINCT order_id) FROM charges")
                .await,
            n
        );
        assert_eq!(self.count("SELECT count(*) FROM receipts").await, n);
        wait_until("the outbox is empty", timeout, || async {
            (self.count("SELECT count(*) FROM outbox").await == 0).then_some(())
        })
        .await;
        assert_none_exited(running);
    }
}

/// Fails if a process of `running` exited instead of waiting a fault out.
pub fn assert_none_exited(running: &mut [Service]) {
    for service in running.iter_mut() {
        if let Some(status) = service.exited() {
            panic!(
                "{} exited ({status}) instead of waiting the fault out: {}",
                service.bin.name(),
                service.log_text()
            );
        }
    }
}
