use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use sagaflow_contracts::SagaId;

use super::SagaRun;

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

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<SagaId, CachedSaga>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
