//! What the operator sees: every log line goes through the isolate's [`LogLimiter`], and each
//! request's [`Decision`] becomes a data point (`ANALYTICS`, when bound) and maybe a log line.

use std::{
    cell::{OnceCell, RefCell},
    collections::HashMap,
};

use wasm_bindgen::{prelude::wasm_bindgen, JsValue};

use crate::operate::decision::{self, Decision, LogLimiter, ObservePolicy};

/// The Analytics Engine binding name (optional; wrangler.toml `[[analytics_engine_datasets]]`).
pub const ANALYTICS_BINDING: &str = "ANALYTICS";

thread_local! {
    static LIMITER: OnceCell<RefCell<LogLimiter>> = const { OnceCell::new() };
    /// Decisions of forwarded requests waiting for the origin's answer (`forward.mjs` reports
    /// it through `origin_answered` or `origin_failed`), by id.
    static HELD: RefCell<Held> = RefCell::default();
}

#[derive(Default)]
struct Held {
    next: u32,
    waiting: HashMap<u32, Waiting>,
}

struct Waiting {
    policy: ObservePolicy,
    decision: Decision,
    method: String,
    started_ms: f64,
}

/// More forwarded requests in flight than an isolate ever has: the table is emptied rather than
/// letting a runtime that never settled a fetch grow memory.
const MAX_HELD: usize = 10_000;

/// Keeps a forwarded request's decision until the origin has answered, when it is to be recorded
/// at all (a data point, or a line the log may want); `None`: nothing to record, and no call back
/// into wasm for it.
pub fn hold(env: &JsValue, policy: ObservePolicy, decision: Decision, method: &str, started_ms: f64) -> Option<u32> {
    if !analytics_bound(env) && policy.decision_log == decision::DecisionLog::Off {
        return None;
    }
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.waiting.len() >= MAX_HELD {
            held.waiting.clear();
        }
        let id = held.next;
        held.next = held.next.wrapping_add(1);
        held.waiting.insert(id, Waiting { policy, decision, method: method.to_owned(), started_ms });
        Some(id)
    })
}

/// Records a held decision once the origin answered (or failed), after `edit`.
pub fn release(id: Option<u32>, edit: impl FnOnce(&mut Decision), origin_ms: f64) {
    let Some(waiting) = id.and_then(|id| HELD.with(|held| held.borrow_mut().waiting.remove(&id))) else { return };
    let Waiting { policy, mut decision, method, started_ms } = waiting;
    edit(&mut decision);
    // `hold` looked the binding up already (the lookup is kept per instance, as `HELD` is): the
    // environment is not kept for this.
    record(&JsValue::UNDEFINED, policy, decision, &method, started_ms, Some(origin_ms));
}

/// Whether [`record`] would neither count nor log this decision, whatever the draw.
pub fn records_nothing(env: &JsValue, policy: ObservePolicy, decision: &Decision) -> bool {
    !analytics_bound(env) && !policy.wants_line(decision, 0.0)
}

fn analytics_bound(env: &JsValue) -> bool {
    analytics(env).is_some()
}

/// The `ANALYTICS` binding, looked up once per isolate (bindings do not change within one): a
/// lookup per request would be a crossing on every answer.
fn analytics(env: &JsValue) -> Option<JsValue> {
    thread_local! {
        static ANALYTICS: OnceCell<Option<JsValue>> = const { OnceCell::new() };
    }
    ANALYTICS.with(|cell| {
        cell.get_or_init(|| {
            js_sys::Reflect::get(env, &JsValue::from_str(ANALYTICS_BINDING)).ok().filter(|binding| binding.is_object())
        })
        .clone()
    })
}

/// Sets the isolate's line budget; the first call wins (the configuration is fixed per isolate).
/// A line logged before it (none is) would get the default.
pub fn init(lines_per_minute: u32) {
    LIMITER.with(|cell| {
        cell.get_or_init(|| RefCell::new(LogLimiter::new(lines_per_minute)));
    });
}

/// Prints `line` if the limiter lets a line of `event` and `reason` through now, after any
/// `suppressed` counts it reports. `error` prints to `console.error`.
pub fn emit(event: &'static str, reason: &'static str, line: &str, error: bool) {
    let now = js_sys::Date::now() as u64;
    let admission = LIMITER.with(|cell| {
        cell.get_or_init(|| RefCell::new(LogLimiter::new(decision::DEFAULT_LOG_LINES_PER_MINUTE)))
            .borrow_mut()
            .admit(event, reason, now)
    });
    for report in &admission.reports {
        web_sys::console::log_1(&report.line().into());
    }
    if admission.print {
        if error {
            web_sys::console::error_1(&line.into());
        } else {
            web_sys::console::log_1(&line.into());
        }
    }
}

/// Records a decision: `started_ms` is when the request arrived, `origin_ms` how long the origin
/// took to send its headers (gateway). `writeDataPoint` does no I/O in the request (the runtime
/// buffers the point and sends it later), so it is called in place: a task of its own would cost
/// a promise and a turn of the queue on every recorded request for nothing.
pub fn record(
    env: &JsValue,
    policy: ObservePolicy,
    decision: Decision,
    method: &str,
    started_ms: f64,
    origin_ms: Option<f64>,
) {
    let analytics = analytics(env);
    let wants_line = policy.wants_line(&decision, if policy.samples() { draw() } else { 0.0 });
    // Most decisions are neither logged nor counted: they cost no clock read.
    if analytics.is_none() && !wants_line {
        return;
    }
    write(analytics, wants_line, decision, method, started_ms, origin_ms);
}

/// The writing half of [`record`], a function of its own: a fresh isolate compiles it only once a
/// decision is to be counted or logged (most first requests record nothing).
#[inline(never)]
fn write(
    analytics: Option<JsValue>,
    wants_line: bool,
    decision: Decision,
    method: &str,
    started_ms: f64,
    origin_ms: Option<f64>,
) {
    // The runtime's clock advances only across I/O, so a request served from memory reads 0 ms.
    let total = (js_sys::Date::now() - started_ms).max(0.0);
    let worker_ms = (total - origin_ms.unwrap_or(0.0)).max(0.0);
    if let Some(binding) = analytics {
        let point = decision::data_point(&decision, method, worker_ms, origin_ms);
        match write_point(&binding, &point.texts(), point.doubles[0], point.doubles[1], point.doubles[2]) {
            WRITTEN => {}
            NO_METHOD => {
                emit("analytics_unusable", "", r#"{"component":"edge-auth","event":"analytics_unusable"}"#, true)
            }
            _ => emit("analytics_failed", "", r#"{"component":"edge-auth","event":"analytics_failed"}"#, true),
        }
    }
    if wants_line {
        let line = decision::log_line(&decision, total as u64);
        emit("decision", decision.reason.as_str(), &line, false);
    }
}

const WRITTEN: u8 = 0;
const NO_METHOD: u8 = 1;

#[wasm_bindgen(inline_js = "
export function write_point(binding, texts, status, worker, origin) {
  if (typeof binding.writeDataPoint !== 'function') return 1;
  const [index, ...blobs] = texts.split('\\0');
  try {
    binding.writeDataPoint({ indexes: [index], blobs, doubles: [status, worker, origin] });
    return 0;
  } catch {
    return 2;
  }
}
")]
extern "C" {
    /// `binding.writeDataPoint({ indexes, blobs, doubles })` in one crossing: `texts` is the index
    /// and the blobs, NUL-separated (see `DataPoint::texts`). 0: written; 1: the binding has no
    /// such method (a misnamed KV namespace, say); 2: it threw. Either failure is logged, rate
    /// limited, and the request goes on.
    fn write_point(binding: &JsValue, texts: &str, status: f64, worker: f64, origin: f64) -> u8;
}

/// A uniform draw in [0, 1) from `crypto.getRandomValues`; 0 (log) if it cannot be had.
fn draw() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}
