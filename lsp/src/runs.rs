//! The clusters and simulations the Run and Simulate lenses started, so that they can be stopped:
//! from the client's progress UI (`window/workDoneProgress/cancel`), by `$/cancelRequest` of the
//! command, and all of them when the client goes away (`shutdown`, `exit`, or the end of the
//! input: a client that died without `exit`). Stopping is one signal per run; the run's own task
//! stops its process and ends its progress with "cancelled" (commands.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tower_lsp_server::ls_types::NumberOrString;

/// How long [`Runs::stop_all`] waits for the runs to have stopped their processes.
const STOP_WAIT: Duration = Duration::from_secs(10);

struct Running {
    token: Option<NumberOrString>,
    stop: watch::Sender<bool>,
}

#[derive(Clone, Default)]
pub struct Runs {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next: AtomicU64,
    running: Mutex<HashMap<u64, Running>>,
}

/// A registered run: its stop signal, and its entry removed from the registry when dropped
/// (after the run stopped its process).
pub struct Registration {
    runs: Runs,
    id: u64,
    pub stop: watch::Receiver<bool>,
}

impl Registration {
    /// A handle that stops this run when dropped (the command's request future: dropped when the
    /// client cancels the request).
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop { runs: self.runs.clone(), id: self.id }
    }
}

pub struct StopOnDrop {
    runs: Runs,
    id: u64,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(running) = self.runs.inner.running.lock() {
            if let Some(r) = running.get(&self.id) {
                r.stop.send_replace(true);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut running) = self.runs.inner.running.lock() {
            running.remove(&self.id);
        }
    }
}

impl Runs {
    pub fn register(&self, token: Option<NumberOrString>) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (stop, rx) = watch::channel(false);
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(id, Running { token, stop });
        }
        Registration { runs: self.clone(), id, stop: rx }
    }

    /// Stop the run reporting progress under `token`; false when there is none.
    pub fn cancel(&self, token: &NumberOrString) -> bool {
        let Ok(running) = self.inner.running.lock() else { return false };
        let mut found = false;
        for r in running.values().filter(|r| r.token.as_ref() == Some(token)) {
            r.stop.send_replace(true);
            found = true;
        }
        found
    }

    /// The number of runs still going.
    pub fn len(&self) -> usize {
        self.inner.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop every run and wait (a bounded time) until each has stopped its processes.
    pub async fn stop_all(&self) {
        if let Ok(running) = self.inner.running.lock() {
            running.values().for_each(|r| {
                r.stop.send_replace(true);
            });
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while !self.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_by_token_and_stop_all() {
        let runs = Runs::default();
        let token = NumberOrString::String("t".into());
        let mut a = runs.register(Some(token.clone()));
        let mut b = runs.register(None);
        assert_eq!(runs.len(), 2);
        assert!(!runs.cancel(&NumberOrString::Number(3)));
        assert!(runs.cancel(&token));
        assert!(*a.stop.borrow_and_update() && !*b.stop.borrow());
        drop(a);
        assert_eq!(runs.len(), 1);
        // stop_all returns once the run has noticed and gone.
        let waiter = tokio::spawn(async move {
            b.stop.changed().await.unwrap();
            drop(b);
        });
        runs.stop_all().await;
        assert!(runs.is_empty());
        waiter.await.unwrap();
    }
}
