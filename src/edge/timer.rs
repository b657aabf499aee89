//! A timer that honours the `Future` contract and cleans up after itself.
//!
//! - It wakes the waker of its most recent poll. worker's `Delay` keeps the waker of its first
//!   poll, and `fetch` (mod.rs) first polls every request with a no-op waker to answer
//!   synchronously when it can, so a `Delay` begun there would never wake the request again.
//! - Dropped before it fires (its request was answered first), it clears its `setTimeout` and
//!   settles its promise at once: a pending timer would keep the request's state alive until it
//!   fires, and a promise that never settles would keep `JsFuture`'s callbacks (which hold each
//!   other) in wasm memory for good.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub struct Sleep {
    fired: JsFuture,
    resolve: Option<Function>,
    handle: JsValue,
}

/// Resolves after `ms` milliseconds.
pub fn sleep(ms: u64) -> Sleep {
    let mut resolve = None;
    let mut handle = JsValue::UNDEFINED;
    let promise = Promise::new(&mut |resolve_fn: Function, _reject| {
        match global_function("setTimeout")
            .and_then(|f| f.call2(&JsValue::NULL, &resolve_fn, &JsValue::from_f64(ms as f64)).ok())
        {
            Some(id) => handle = id,
            // No timer to be had: resolve at once rather than hang the request.
            None => {
                let _ = resolve_fn.call0(&JsValue::NULL);
            }
        }
        resolve = Some(resolve_fn);
    });
    Sleep { fired: JsFuture::from(promise), resolve, handle }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.fired).poll(cx).map(|_| ())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(clear) = global_function("clearTimeout") {
            let _ = clear.call1(&JsValue::NULL, &self.handle);
        }
        // Settling an already settled promise does nothing; settling a pending one frees its callbacks.
        if let Some(resolve) = self.resolve.take() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }
}

fn global_function(name: &str) -> Option<Function> {
    Reflect::get(&js_sys::global(), &name.into()).ok()?.dyn_into().ok()
}
