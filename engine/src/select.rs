//! A deterministic race between two futures.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use futures::future::Either;

/// The future of [`crate::SagaContext::select`]: polls `left` first, then `right`, and
/// resolves with the first that is ready.
///
/// Deterministic because the engine hands facts to the code one at a time, in history order:
/// on replay the same fact makes the same side win. (`futures::select!` polls its branches in
/// random order, so two new awaitables could be numbered differently on each run: use this, or
/// `futures::select_biased!`.) The loser is dropped; an activity it had scheduled still runs
/// and its result is recorded, but nothing waits for it.
#[must_use = "futures do nothing unless awaited"]
pub struct Select<A, B> {
    pub(crate) left: Pin<Box<A>>,
    pub(crate) right: Pin<Box<B>>,
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(a) = self.left.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        if let Poll::Ready(b) = self.right.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(b));
        }
        Poll::Pending
    }
}
