//! A timer that honours the `Future` contract: it wakes the waker of its most recent poll.
//! worker's `Delay` keeps the waker of its first poll, and `fetch` (mod.rs) first polls every
//! request with a no-op waker to answer synchronously when it can, so a `Delay` begun there
//! would never wake the promise that carries the request on.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Resolves after `ms` milliseconds (`setTimeout`, whose promise `JsFuture` awaits correctly).
pub async fn sleep(ms: u64) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let set_timeout = Reflect::get(&js_sys::global(), &"setTimeout".into()).map(|f| f.unchecked_into::<Function>());
        let scheduled = set_timeout.and_then(|f| f.call2(&JsValue::NULL, &resolve, &JsValue::from_f64(ms as f64)));
        if scheduled.is_err() {
            // No timer to be had: resolve at once rather than hang the request.
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// `work`'s output, or `None` once `ms` milliseconds have passed first.
pub async fn race<T>(work: impl std::future::Future<Output = T>, ms: u64) -> Option<T> {
    use std::{
        future::{poll_fn, Future},
        pin::pin,
        task::Poll,
    };
    let mut work = pin!(work);
    let mut timer = pin!(sleep(ms));
    poll_fn(|cx| {
        if let Poll::Ready(value) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
