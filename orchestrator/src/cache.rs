use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use sagaflow_contracts::SagaId;

use sagaflow_engine::SagaRun;

/// A live saga parked between messages, with the history position it reflects.
pub struct CachedSaga {
    pub run: SagaRun,
    /// The `seq` its next event gets. A store whose saga row says otherwise was advanced
    /// elsewhere (another replica), so this entry is stale and the saga is replayed.
    pub next_event_seq: i64,
}

/// Live sagas kept in memory, least recently used evicted first. An entry is taken out while
/// its saga is being advanced and put back after the commit, so a failed transaction can never
/// leave a run that is ahead of the database.
pub struct SagaCache {
    entries: Mutex<LruCache<SagaId, CachedSaga>>,
    enabled: bool,
}

impl SagaCache {
    /// A cache of up to `capacity` sagas; 0 disables caching (every message replays).
    pub fn new(capacity: usize) -> Self {
        SagaCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            enabled: capacity > 0,
        }
    }

    /// Takes the saga out of the cache.
    pub fn take(&self, saga: SagaId) -> Option<CachedSaga> {
        self.lock().pop(&saga)
    }

    /// Puts a saga (back) in, unless it has finished.
    pub fn put(&self, saga: SagaId, cached: CachedSaga) {
        if self.enabled && !cached.run.is_finished() {
            self.lock().put(saga, cached);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<SagaId, CachedSaga>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sagaflow_engine::{ActivityOptions, SagaContext, SagaError, SagaRegistry};
    use serde_json::json;

    use super::*;

    async fn one_step(ctx: SagaContext, _: ()) -> Result<u32, SagaError> {
        Ok(ctx.activity::<u32, _>("Step", &()).await?)
    }

    #[test]
    fn the_cache_hands_a_run_out_once_and_drops_finished_sagas() {
        let mut registry = SagaRegistry::new();
        registry.register("OneStep", one_step).unwrap();
        let saga = SagaId::new_random();
        let start = || {
            let definition = registry.get("OneStep").unwrap();
            let options = ActivityOptions::default();
            SagaRun::start(definition, saga, json!(null), None, Utc::now(), options)
                .unwrap()
                .0
        };
        let cache = SagaCache::new(10);
        cache.put(
            saga,
            CachedSaga {
                run: start(),
                next_event_seq: 2,
            },
        );
        assert_eq!(cache.take(saga).map(|c| c.next_event_seq), Some(2));
        assert!(cache.take(saga).is_none(), "a run is handed out once");

        let disabled = SagaCache::new(0);
        disabled.put(
            saga,
            CachedSaga {
                run: start(),
                next_event_seq: 2,
            },
        );
        assert!(disabled.take(saga).is_none());
    }
}
