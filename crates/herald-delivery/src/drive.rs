//! [`drive`]: runs an exchange together with the HTTP/1 connection it uses, in the task
//! of the attempt, instead of in a connection task of its own.
//!
//! Owns the polling order only. A hyper HTTP/1 `Connection` is the future that does the
//! socket work; the request and body futures make progress only while it is polled. Here
//! the attempt polls both: no task per connection, no cross-task wake-up per request.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

/// How the connection stood when the exchange finished.
#[derive(Debug)]
pub(crate) enum Driver<E> {
    /// Still open: it may serve another request.
    Open,
    /// It finished (closed cleanly, or failed with the error): never poll it again.
    Ended(Result<(), E>),
}

/// Polls `work` to completion, polling `conn` whenever `work` is not done. `work` is
/// polled again right after `conn` made progress, so a response that `conn` just read is
/// taken in the same wake-up. Once `conn` ends it is not polled again; whatever `work`
/// still waits for then fails through hyper's own channels (they close with the
/// connection).
pub(crate) async fn drive<C, E, W>(conn: &mut C, work: W) -> (W::Output, Driver<E>)
where
    C: Future<Output = Result<(), E>> + Unpin,
    W: Future,
{
    let mut work = pin!(work);
    let mut ended: Option<Result<(), E>> = None;
    let output = poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if ended.is_none() {
            if let Poll::Ready(result) = Pin::new(&mut *conn).poll(cx) {
                ended = Some(result);
            }
            return work.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    let state = match ended {
        Some(result) => Driver::Ended(result),
        None => Driver::Open,
    };
    (output, state)
}

/// Polls `conn` once, so it notices what arrived while nobody polled it (the other side
/// closed, or sent something unasked). `None` while it is open.
pub(crate) async fn poll_once<C, E>(conn: &mut C) -> Option<Result<(), E>>
where
    C: Future<Output = Result<(), E>> + Unpin,
{
    poll_fn(|cx| match Pin::new(&mut *conn).poll(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::ready;
    use tokio::sync::oneshot;

    /// A connection that hands `value` to `tx` on its first poll and then stays open, or
    /// ends after handing it over.
    struct FakeConn {
        tx: Option<oneshot::Sender<u32>>,
        end_after_send: bool,
        polls_after_end: u32,
        ended: bool,
    }

    impl Future for FakeConn {
        type Output = Result<(), &'static str>;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            if self.ended {
                self.polls_after_end += 1;
            }
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(7);
            }
            if self.end_after_send {
                self.ended = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        }
    }

    fn conn(tx: oneshot::Sender<u32>, end_after_send: bool) -> FakeConn {
        FakeConn {
            tx: Some(tx),
            end_after_send,
            polls_after_end: 0,
            ended: false,
        }
    }

    #[tokio::test]
    async fn work_that_needs_the_connection_completes() {
        let (tx, rx) = oneshot::channel();
        let mut c = conn(tx, false);
        let (out, state) = drive(&mut c, rx).await;
        assert_eq!(out, Ok(7));
        assert!(matches!(state, Driver::Open));
    }

    #[tokio::test]
    async fn an_ended_connection_is_reported_and_never_polled_again() {
        let (tx, rx) = oneshot::channel();
        let mut c = conn(tx, true);
        let (out, state) = drive(&mut c, rx).await;
        assert_eq!(out, Ok(7));
        assert!(matches!(state, Driver::Ended(Ok(()))));
        assert_eq!(c.polls_after_end, 0);

        // Work that can never finish through a dead connection fails through its own
        // channel instead of hanging: here the connection drops the sender as it ends.
        let (tx, rx) = oneshot::channel::<u32>();
        let mut c = DroppingConn(Some(tx));
        let (out, state) = drive(&mut c, rx).await;
        assert!(out.is_err());
        assert!(matches!(state, Driver::Ended(Err("reset"))));
    }

    /// A connection that fails, dropping what it would have answered with.
    struct DroppingConn(Option<oneshot::Sender<u32>>);

    impl Future for DroppingConn {
        type Output = Result<(), &'static str>;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            assert!(self.0.take().is_some(), "polled after it ended");
            Poll::Ready(Err("reset"))
        }
    }

    #[tokio::test]
    async fn ready_work_does_not_poll_the_connection() {
        let (tx, _rx) = oneshot::channel();
        let mut c = conn(tx, true);
        let (out, state) = drive(&mut c, ready(1)).await;
        assert_eq!(out, 1);
        assert!(matches!(state, Driver::Open));
        assert!(c.tx.is_some(), "the connection was not polled");
        assert!(matches!(poll_once(&mut c).await, Some(Ok(()))));
    }
}
