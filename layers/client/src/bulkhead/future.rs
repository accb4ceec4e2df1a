//! `BulkheadFuture`: the call, holding its permit until it answers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::permits::Permit;
use crate::error::{BoxError, BulkheadFull};

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead).
    pub struct BulkheadFuture<F> {
        #[pin]
        call: Option<F>,
        permit: Option<Permit>,
        full: Option<BulkheadFull>,
    }
}

impl<F> BulkheadFuture<F> {
    pub(crate) fn running(call: F, permit: Permit) -> Self {
        Self {
            call: Some(call),
            permit: Some(permit),
            full: None,
        }
    }

    pub(crate) fn full(error: BulkheadFull) -> Self {
        Self {
            call: None,
            permit: None,
            full: Some(error),
        }
    }
}

impl<F, T, E> Future for BulkheadFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(call) = this.call.as_mut().as_pin_mut() else {
            let full = this
                .full
                .take()
                .unwrap_or_else(|| BulkheadFull::new("(polled after completion)".into(), 0));
            return Poll::Ready(Err(Box::new(full)));
        };
        let result = ready!(call.poll(cx));
        // The answer is here: the permit goes back before the caller reads the body, and the
        // finished call is not polled again.
        this.call.set(None);
        this.permit.take();
        Poll::Ready(result.map_err(Into::into))
    }
}
