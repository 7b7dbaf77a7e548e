//! Wake-ups for long-polling clients: a waiter subscribes to a request id
//! before reading it, and the engine notifies after committing a change, so
//! no decision is missed and nobody sleeps in a polling loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Waiters {
    by_id: Mutex<HashMap<String, Arc<Notify>>>,
}

pub(crate) struct Subscription<'a> {
    waiters: &'a Waiters,
    id: String,
    notify: Arc<Notify>,
}

impl Subscription<'_> {
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.by_id.lock().unwrap_or_else(|p| p.into_inner());
        // the map holds one reference and we hold one: we are the last waiter
        if map
            .get(&self.id)
            .is_some_and(|n| Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) == 2)
        {
            map.remove(&self.id);
        }
    }
}

impl Waiters {
    pub(crate) fn subscribe(&self, id: &str) -> Subscription<'_> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let notify = map.entry(id.to_owned()).or_default().clone();
        Subscription {
            waiters: self,
            id: id.to_owned(),
            notify,
        }
    }

    pub(crate) fn notify(&self, id: &str) {
        let map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(id) {
            n.notify_waiters();
        }
    }
}

/// Wakes the expiry sweeper when a deadline appears that is earlier than
/// the one it sleeps until. Waking it for every commit instead (each
/// submission sets a deadline) kept it re-reading the database under load,
/// two queries per decision for nothing: a later deadline is found anyway
/// when the sweeper wakes for the earlier one.
pub(crate) struct DeadlineAlarm {
    notify: Notify,
    /// Milliseconds since the epoch the sweeper sleeps until; `i64::MAX`
    /// while it sweeps, so that anything committed meanwhile wakes it again.
    armed_for: std::sync::atomic::AtomicI64,
}

impl Default for DeadlineAlarm {
    fn default() -> Self {
        DeadlineAlarm {
            notify: Notify::new(),
            armed_for: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }
}

impl DeadlineAlarm {
    /// A request now has deadline `at` (in ms since the epoch).
    pub(crate) fn deadline_set(&self, at: i64) {
        use std::sync::atomic::Ordering::SeqCst;
        if at < self.armed_for.load(SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Deadlines may have changed in ways this replica cannot see (commits
    /// of another replica): sweep again.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// The sweeper starts a sweep.
    pub(crate) fn sweeping(&self) {
        self.armed_for
            .store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
    }

    /// The sweeper will sleep until `at` (ms since the epoch) unless woken.
    /// A deadline committed between its last read and this call found the
    /// alarm at `i64::MAX` and left a wake-up behind, so none is lost.
    pub(crate) fn sleeping_until(&self, at: i64) {
        self.armed_for
            .store(at, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

#[cfg(test)]
mod alarm_tests {
    use super::DeadlineAlarm;
    use std::time::Duration;

    async fn woken(alarm: &DeadlineAlarm) -> bool {
        tokio::time::timeout(Duration::from_millis(20), alarm.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_an_earlier_deadline_wakes_a_sleeping_sweeper() {
        let alarm = DeadlineAlarm::default();
        alarm.sleeping_until(1_000);
        alarm.deadline_set(5_000);
        assert!(!woken(&alarm).await, "a later deadline must not wake it");
        alarm.deadline_set(1_000);
        assert!(!woken(&alarm).await, "the same deadline must not wake it");
        alarm.deadline_set(999);
        assert!(woken(&alarm).await, "an earlier deadline must wake it");
    }

    #[tokio::test]
    async fn a_deadline_set_during_a_sweep_is_not_lost() {
        let alarm = DeadlineAlarm::default();
        alarm.sleeping_until(1_000);
        alarm.sweeping();
        // committed after the sweeper read the next deadline, before it slept
        alarm.deadline_set(50_000);
        alarm.sleeping_until(1_000);
        assert!(woken(&alarm).await);
    }
}
