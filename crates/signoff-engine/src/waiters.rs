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
