//! Keeps an async step that most requests skip in a function of its own.
//!
//! A fresh isolate compiles each wasm function the first time it is called (V8's lazy
//! compilation), and the compile time grows with the function. An `.await` on an async fn lets
//! the compiler inline the callee's whole state machine into the caller's `poll`, so the first
//! public request of an isolate used to compile the token path, the key fetch and DPoP with it
//! (one `poll` of 70 KB, ~4 ms of compiling). [`outline`] draws the line: the wrapped step's
//! `poll` is never inlined, so it is compiled when a request first takes it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// `step`, polled through a function that is never inlined into its caller.
pub fn outline<F: Future>(step: F) -> Outlined<F> {
    Outlined(step)
}

pub struct Outlined<F>(F);

impl<F: Future> Future for Outlined<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: a structural pin projection: the field is never moved out of, nor is it
        // reachable other than pinned, and `Outlined` has no Drop of its own.
        unsafe { self.map_unchecked_mut(|outlined| &mut outlined.0) }.poll(cx)
    }
}
