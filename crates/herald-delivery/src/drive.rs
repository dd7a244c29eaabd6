//! [`drive`]: runs an exchange together with the HTTP/1 connection it uses, in the task
//! of the attempt, instead of in a connection task of its own.
//!
//! Owns the polling order only. A hyper HTTP/1 `Connection` is the future that does the
//! socket work; the request and body futures make progress only while it is polled. Here
//! the attempt polls both: no task per connection, no cross-task wake-up per request.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

/// Polls `work` to completion, polling `conn` whenever `work` is not done. `work` is
/// polled again right after `conn` made progress, so a response that `conn` just read is
/// taken in the same wake-up.
///
/// Once `conn` ends it is **dropped** (`conn` becomes `None`), not kept: hyper answers a
/// request still queued on a connection only when the connection is dropped (with the
/// request handed back unsent). Kept, an ended connection would leave `work` waiting
/// for an answer that never comes, until the attempt's timeout. Afterwards, `conn` still
/// being `Some` says the connection is open.
pub(crate) async fn drive<C, E, W>(conn: &mut Option<C>, work: W) -> W::Output
where
    C: Future<Output = Result<(), E>> + Unpin,
    W: Future,
{
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(c) = conn.as_mut() {
            if Pin::new(c).poll(cx).is_ready() {
                *conn = None;
            }
            return work.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// Polls `conn` once, so it notices what arrived while nobody polled it (the other side
/// closed, or sent something unasked). True while it is open; an ended connection is
/// dropped.
pub(crate) async fn poll_once<C, E>(conn: &mut Option<C>) -> bool
where
    C: Future<Output = Result<(), E>> + Unpin,
{
    poll_fn(|cx| {
        let Some(c) = conn.as_mut() else {
            return Poll::Ready(false);
        };
        match Pin::new(c).poll(cx) {
            Poll::Ready(_) => {
                *conn = None;
                Poll::Ready(false)
            }
            Poll::Pending => Poll::Ready(true),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::ready;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A connection that answers on its first poll and then stays open, or ends.
    struct FakeConn {
        tx: Option<oneshot::Sender<u32>>,
        end_after_send: bool,
    }

    impl Future for FakeConn {
        type Output = Result<(), &'static str>;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(7);
            }
            if self.end_after_send {
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        }
    }

    fn conn(tx: oneshot::Sender<u32>, end_after_send: bool) -> Option<FakeConn> {
        Some(FakeConn {
            tx: Some(tx),
            end_after_send,
        })
    }

    #[tokio::test]
    async fn work_that_needs_the_connection_completes() {
        let (tx, rx) = oneshot::channel();
        let mut c = conn(tx, false);
        let out = drive(&mut c, rx).await;
        assert_eq!(out, Ok(7));
        assert!(c.is_some(), "still open");
    }

    #[tokio::test]
    async fn an_ended_connection_is_reported_and_dropped() {
        let (tx, rx) = oneshot::channel();
        let mut c = conn(tx, true);
        let out = drive(&mut c, rx).await;
        assert_eq!(out, Ok(7));
        assert!(c.is_none(), "ended, dropped, never polled again");
    }

    /// A connection that closes cleanly with a request still queued, and answers it
    /// (handed back, unsent) only when dropped, as hyper's dispatcher does.
    struct ClosesWithQueued(Option<oneshot::Sender<Result<u32, &'static str>>>);

    impl Future for ClosesWithQueued {
        type Output = Result<(), &'static str>;
        fn poll(self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(()))
        }
    }

    impl Drop for ClosesWithQueued {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(Err("unsent"));
            }
        }
    }

    /// The regression of CI run 17: a keep-alive connection the receiver had closed
    /// ended while a request was queued on it, and the attempt waited for its timeout.
    /// Paused time: were the answer never to come, the timeout would fire at once.
    #[tokio::test(start_paused = true)]
    async fn a_request_queued_on_a_connection_that_ends_is_answered() {
        let (tx, rx) = oneshot::channel();
        let mut c = Some(ClosesWithQueued(Some(tx)));
        let out = tokio::time::timeout(Duration::from_secs(15), drive(&mut c, rx))
            .await
            .expect("answered without waiting for the attempt's timeout");
        assert_eq!(out, Ok(Err("unsent")));
        assert!(c.is_none(), "ended and dropped");
    }

    #[tokio::test]
    async fn ready_work_does_not_poll_the_connection() {
        let (tx, _rx) = oneshot::channel();
        let mut c = conn(tx, true);
        let out = drive(&mut c, ready(1)).await;
        assert_eq!(out, 1);
        assert!(c.as_ref().is_some_and(|c| c.tx.is_some()), "not polled");
        assert!(!poll_once(&mut c).await, "it ends on its first poll");
        assert!(c.is_none());
        assert!(!poll_once(&mut c).await);
    }
}
