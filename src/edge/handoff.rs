//! The pipeline's wait on a signature check, done by `entry.mjs` instead of wasm-bindgen-futures.
//!
//! A distinct token's request waits once, on `crypto.subtle.verify`. Driven by
//! `future_to_promise`, that wait cost a promise, a task, two closures and a `queueMicrotask` per
//! wake (~15% of the gateway's CPU on distinct tokens, bench/profile.py --gateway --distinct).
//! Here the pipeline's future hands the promise out ([`wait`]): `fetch` returns it with an id,
//! `entry.mjs` awaits it as plain JavaScript, and [`resume`](super::resume) polls the future again
//! with the result. Any other wait (a key import, KV, a fetch) is left to wasm-bindgen-futures:
//! the future is then handed to `future_to_promise` as before, and a [`HandOff`] polled there
//! waits through a `JsFuture`.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use js_sys::Promise;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

type Slot = Rc<RefCell<Option<Result<JsValue, JsValue>>>>;
pub type Task = Pin<Box<dyn Future<Output = JsValue>>>;

thread_local! {
    /// Set while `fetch` or `resume` polls: only then is a promise handed out.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// The promise the last poll handed out, and where its result goes.
    static OFFERED: RefCell<Option<(Promise, Slot)>> = const { RefCell::new(None) };
    static WAITING: RefCell<Waiting> = RefCell::default();
}

/// `promise`'s result, awaited by `entry.mjs` when this isolate's handler drives the future.
pub fn wait(promise: Promise) -> HandOff {
    HandOff { promise: Some(promise), slot: Rc::default(), fallback: None }
}

pub struct HandOff {
    promise: Option<Promise>,
    slot: Slot,
    fallback: Option<JsFuture>,
}

impl Future for HandOff {
    type Output = Result<JsValue, JsValue>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.slot.borrow_mut().take() {
            return Poll::Ready(result);
        }
        if self.fallback.is_none() {
            let promise = self.promise.take().expect("a hand-off polled again is resumed or falls back");
            if DRIVING.get() {
                OFFERED.set(Some((promise.clone(), self.slot.clone())));
                self.promise = Some(promise);
                return Poll::Pending;
            }
            self.fallback = Some(JsFuture::from(promise));
        }
        Pin::new(self.fallback.as_mut().expect("set above")).poll(cx)
    }
}

/// Polls `task` as the handler's driver. `Ok` with the answer, or `Err` with what to hand
/// `entry.mjs`: `[promise, id]` to await and resume, or a promise of the answer (another wait).
pub fn drive(mut task: Task, id: Option<u32>) -> Result<JsValue, JsValue> {
    OFFERED.set(None);
    DRIVING.set(true);
    let polled = task.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()));
    DRIVING.set(false);
    if let Poll::Ready(answer) = polled {
        return Ok(answer);
    }
    match OFFERED.take() {
        Some((promise, slot)) => {
            let id = WAITING.with(|waiting| waiting.borrow_mut().keep(id, task, slot));
            Err(super::io::handed(&promise, id))
        }
        None => {
            // The promise made before this hand-off no longer counts: a later poll by another
            // executor waits through a JsFuture (see `HandOff::poll`).
            Err(wasm_bindgen_futures::future_to_promise(async move { Ok(task.await) }).into())
        }
    }
}

/// The task waiting under `id`, its hand-off settled with `result`; `None` when it is not here
/// (evicted: see [`Waiting`]).
pub fn settled(id: u32, result: Result<JsValue, JsValue>) -> Option<Task> {
    let (task, slot) = WAITING.with(|waiting| waiting.borrow_mut().take(id))?;
    *slot.borrow_mut() = Some(result);
    Some(task)
}

/// Tasks waiting for `entry.mjs` to resume them. A request the runtime cancels while it waits is
/// never resumed: its task would stay, so the oldest goes once more than any isolate serves at
/// once are here (its request, if alive after all, gets the edge's internal error).
#[derive(Default)]
struct Waiting {
    next: u32,
    tasks: VecDeque<(u32, Task, Slot)>,
}

const MAX_WAITING: usize = 4096;

impl Waiting {
    fn keep(&mut self, id: Option<u32>, task: Task, slot: Slot) -> u32 {
        let id = id.unwrap_or_else(|| {
            self.next = self.next.wrapping_add(1);
            self.next
        });
        if self.tasks.len() >= MAX_WAITING {
            self.tasks.pop_front();
        }
        self.tasks.push_back((id, task, slot));
        id
    }

    fn take(&mut self, id: u32) -> Option<(Task, Slot)> {
        let at = self.tasks.iter().position(|(waiting, _, _)| *waiting == id)?;
        self.tasks.remove(at).map(|(_, task, slot)| (task, slot))
    }
}
