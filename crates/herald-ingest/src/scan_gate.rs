//! Runs the RPCs that scan a whole topic (`ListDeadLetters`,
//! `ReplayDeadLetters`, `ListAttempts`, `GetStatus`) so that they cannot
//! exhaust a node: at most `max` at once (more get `RESOURCE_EXHAUSTED`),
//! each under a server-side deadline (`DEADLINE_EXCEEDED`), each stopped as
//! soon as its client goes away, and each on a thread of its own rather
//! than tokio's blocking pool, which the HTTP client's DNS lookups share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tonic::Status;

/// Scans at once per gate.
pub const DEFAULT_MAX_SCANS: usize = 4;
/// The longest a scan may run.
pub const DEFAULT_SCAN_DEADLINE: Duration = Duration::from_secs(60);

/// Admission and lifetime of topic scans.
#[derive(Clone)]
pub struct ScanGate {
    permits: Arc<Semaphore>,
    max: usize,
    deadline: Duration,
}

/// Set when the scan should stop; pass it to `scan_topic_until`.
pub type StopFlag = Arc<AtomicBool>;

/// Sets the flag when dropped: when the RPC's future is dropped (the client
/// cancelled or disconnected), the scan thread sees it and stops.
struct StopOnDrop(StopFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Default for ScanGate {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SCANS, DEFAULT_SCAN_DEADLINE)
    }
}

impl ScanGate {
    /// At most `max` scans at once, each for at most `deadline`.
    pub fn new(max: usize, deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            deadline,
        }
    }

    /// Runs `scan` (blocking) on its own thread; `what` names the RPC in errors.
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        scan: impl FnOnce(&AtomicBool) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{what}: {} topic scans are already running on this node; retry shortly",
                self.max
            ))
        })?;
        let stop: StopFlag = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        let (tx, rx) = oneshot::channel();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("herald-scan".into())
            .spawn(move || {
                let result = scan(&flag);
                // Free the slot before the answer goes out, so a caller's
                // next scan, sent once it has this answer, finds it free.
                drop(permit);
                let _ = tx.send(result);
            })
            .map_err(|e| Status::unavailable(format!("{what}: cannot start a scan thread: {e}")))?;
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::internal(format!("{what}: the scan thread failed"))),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(Status::deadline_exceeded(format!(
                    "{what}: the scan did not finish within {} s; narrow it (endpoint, from_ms/to_ms or since_ms)",
                    self.deadline.as_secs()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    /// A scan that runs until told to stop, and reports that it was.
    fn until_stopped(seen: Arc<AtomicBool>) -> impl FnOnce(&AtomicBool) -> Result<(), Status> {
        move |stop| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            seen.store(true, Ordering::Relaxed);
            Err(Status::cancelled("stopped"))
        }
    }

    #[tokio::test]
    async fn results_pass_through() {
        let gate = ScanGate::new(1, Duration::from_secs(60));
        assert_eq!(gate.run("T", |_| Ok(7)).await.unwrap(), 7);
        let e = gate
            .run::<()>("T", |_| Err(Status::unavailable("x")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_full_gate_refuses_and_a_dropped_call_stops_its_scan() {
        let gate = ScanGate::new(1, Duration::from_secs(3600));
        let stopped = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let g = gate.clone();
        let s = stopped.clone();
        let running = tokio::spawn(async move {
            let _ = started_tx.send(());
            g.run("T", until_stopped(s)).await
        });
        started_rx.await.unwrap();
        // The permit is taken once `run` has begun; wait for it to be.
        while gate.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = gate.run("ListDeadLetters", |_| Ok(())).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().starts_with("ListDeadLetters:"),
            "{refused:?}"
        );
        // The client goes away: the future is dropped, the scan stops, the
        // permit comes back.
        running.abort();
        let _ = running.await;
        while !stopped.load(Ordering::Relaxed) || gate.permits.available_permits() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.run("T", |_| Ok(1)).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_a_long_scan() {
        let gate = ScanGate::new(1, Duration::from_secs(60));
        let stopped = Arc::new(AtomicBool::new(false));
        let e = gate
            .run("ListAttempts", until_stopped(stopped.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert!(e.message().contains("60 s"), "{e:?}");
        while !stopped.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
    }
}
