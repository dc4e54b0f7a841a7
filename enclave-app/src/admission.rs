//! Admission control: a bounded number of requests run, a bounded number
//! wait; beyond that the node answers "busy" at once so the router can go
//! elsewhere.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this node is at capacity ({running} running, {waiting} waiting); retry shortly or on another node"
)]
pub struct Busy {
    /// Requests allowed to run at once.
    pub running: usize,
    /// Requests allowed to wait.
    pub waiting: usize,
}

/// Limits on concurrent work.
#[derive(Debug, Clone)]
pub struct Admission {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    limits: Busy,
}

/// A request that got in; it holds its place until dropped.
#[derive(Debug)]
pub struct Ticket {
    admitted: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

/// A request that is running; dropping it frees the slot.
#[derive(Debug)]
pub struct Running {
    _admitted: OwnedSemaphorePermit,
    _running: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// `running` at once (at least one), `waiting` more queued.
    pub fn new(running: usize, waiting: usize) -> Self {
        let running = running.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(running + waiting)),
            running: Arc::new(Semaphore::new(running)),
            limits: Busy { running, waiting },
        }
    }

    /// Takes a place, or says the node is busy. Never waits.
    pub fn try_admit(&self) -> Result<Ticket, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.limits)?;
        Ok(Ticket {
            admitted,
            running: self.running.clone(),
        })
    }

    /// Requests admitted now, running or waiting.
    pub fn in_flight(&self) -> usize {
        self.limits.running + self.limits.waiting - self.admitted.available_permits()
    }
}

impl Ticket {
    /// Waits for a running slot.
    pub async fn run(self) -> Running {
        // The semaphore is never closed, so this always gets a permit.
        let running = self.running.acquire_owned().await.ok();
        Running {
            _admitted: self.admitted,
            _running: running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_running_plus_waiting_then_says_busy() {
        let admission = Admission::new(1, 1);
        let first = admission.try_admit().unwrap();
        let second = admission.try_admit().unwrap();
        assert_eq!(
            admission.try_admit().unwrap_err(),
            Busy {
                running: 1,
                waiting: 1
            }
        );
        assert_eq!(admission.in_flight(), 2);
        let running = first.run().await;
        // The second waits until the first finishes.
        let waiter = tokio::spawn(second.run());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(running);
        let _second_running = waiter.await.unwrap();
        assert_eq!(admission.in_flight(), 1);
        let _third = admission.try_admit().unwrap();
    }
}
