//! Waiting for commits: blocking (a condition variable) and async (wakers,
//! any executor).
//!
//! A waiter checks its condition, then (for blocking waits) re-checks under
//! the signal's lock before sleeping, or (for futures) registers its waker
//! and re-checks. A committer publishes the new commit point first and
//! notifies after, taking the same locks, so a waiter either sees the new
//! point in its re-check or is woken: no wakeup is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use super::Inner;
use crate::Result;
use crate::device::Device;

#[derive(Debug, Default)]
pub(crate) struct Signal {
    lock: Mutex<()>,
    cv: Condvar,
    wakers: Mutex<Vec<Waker>>,
}

impl Signal {
    /// Wakes every blocked thread and pending future.
    pub(crate) fn notify(&self) {
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
        self.cv.notify_all();
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for waker in wakers {
            waker.wake();
        }
    }

    /// Blocks until `check` returns a value.
    pub(crate) fn wait_until<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            if let Some(value) = check() {
                return value;
            }
            let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(value) = check() {
                return value;
            }
            drop(self.cv.wait(guard).unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Polls `check`; if it has no value yet, arranges for `cx` to be woken
    /// at the next notification.
    pub(crate) fn poll_until<T>(
        &self,
        cx: &Context<'_>,
        mut check: impl FnMut() -> Option<T>,
    ) -> Poll<T> {
        if let Some(value) = check() {
            return Poll::Ready(value);
        }
        {
            let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        match check() {
            Some(value) => Poll::Ready(value),
            None => Poll::Pending,
        }
    }
}

/// A future that completes when an entry is durable (see
/// [`super::FasterLog::wait_for_commit_async`]).
pub struct CommitFuture<D: Device> {
    inner: Arc<Inner<D>>,
    address: u64,
}

impl<D: Device> std::fmt::Debug for CommitFuture<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitFuture").field("address", &self.address).finish_non_exhaustive()
    }
}

impl<D: Device> CommitFuture<D> {
    pub(crate) fn new(inner: Arc<Inner<D>>, address: u64) -> Self {
        Self { inner, address }
    }
}

impl<D: Device> Future for CommitFuture<D> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &self.inner;
        inner.signal.poll_until(cx, || inner.commit_status(self.address).transpose())
    }
}
