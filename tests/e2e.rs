//! End to end: the real worker in `wrangler dev` (workerd, with local KV and Cache API) against a
//! mock issuer on loopback, over real HTTP, with real RS256 tokens signed by test keys.
//!
//! Needs the built worker and the npm tools: run through `./scripts/test.sh`, which builds once
//! and runs these with `--ignored`. Each test gets its own issuer and worker, so they run in
//! parallel and never share keys or state.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use edge_auth_dev_issuer::{
    b64, jwks,
    origin::{sha256_hex, MockOrigin},
    server::{MockIssuer, Mode},
    sign, Mint, SigningKey,
};
use serde_json::{json, Value};

const AUDIENCE: &str = "https://e2e.edge-auth.test/api";
const APP_ORIGIN: &str = "https://app.example.com";
const ISSUER_RTT_MS: u64 = 150;
const NEEDS: &str = "run ./scripts/test.sh, which builds the worker and installs wrangler";

fn keys() -> &'static [SigningKey] {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| (1..=3).map(|i| SigningKey::generate(&format!("e2e-key-{i}"), 2048)).collect())
}

fn key(n: usize) -> &'static SigningKey {
    &keys()[n - 1]
}

// ---------------------------------------------------------------- harness

struct Reply {
    status: u16,
    /// Repeated headers joined with ", ", as a client library would show them.
    headers: HashMap<String, String>,
    /// Every header line, in order (to count repeated ones such as `Set-Cookie`).
    lines: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// A plain HTTP/1.0 client: one request per connection, no chunking to decode.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(port, method, path, headers, &[])
}

/// Like [`request`], with a body.
fn send(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the worker");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    for chunk in body.chunks(64 * 1024) {
        stream.write_all(chunk).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut map: HashMap<String, String> = HashMap::new();
    let mut all = Vec::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            all.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            map.entry(name.trim().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value.trim())
                })
                .or_insert_with(|| value.trim().to_owned());
        }
    }
    Reply { status, headers: map, lines: all, body: body.to_owned() }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-auth-e2e-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `wrangler dev` on its own port, with local KV and Cache persisted under `state`.
struct Worker {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Worker {
    /// The demo worker: ready once `/api/public` answers 200.
    fn start(issuer: &MockIssuer, extra: &[(&str, &str)], state: &Path) -> Worker {
        Self::launch(issuer, extra, state, |port| request(port, "GET", "/api/public", &[]).status == 200)
    }

    /// A gateway (extra holds ORIGIN_URL and ROUTES): ready once it answers at all.
    fn start_gateway(issuer: &MockIssuer, extra: &[(&str, &str)], state: &Path) -> Worker {
        Self::launch(issuer, extra, state, |port| request(port, "OPTIONS", "/", &[]).status != 0)
    }

    fn launch(issuer: &MockIssuer, extra: &[(&str, &str)], state: &Path, ready: impl Fn(u16) -> bool) -> Worker {
        Self::launch_with(issuer, extra, state, None, ready)
    }

    /// With `config`, wrangler reads that file instead of wrangler.toml.
    fn launch_with(
        issuer: &MockIssuer,
        extra: &[(&str, &str)],
        state: &Path,
        config: Option<&Path>,
        ready: impl Fn(u16) -> bool,
    ) -> Worker {
        Self::launch_in(issuer, extra, state, config, &[], &[], ready)
    }

    /// With `env` for wrangler and `args` after wrangler's own.
    fn launch_in(
        issuer: &MockIssuer,
        extra: &[(&str, &str)],
        state: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
        ready: impl Fn(u16) -> bool,
    ) -> Worker {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(root.join("build/worker.mjs").exists(), "no built worker: {NEEDS}");
        let wrangler = root.join("node_modules/.bin/wrangler");
        assert!(wrangler.exists(), "no wrangler: {NEEDS}");
        let mut vars: Vec<(String, String)> = vec![
            ("AUTH0_DOMAIN".into(), format!("127.0.0.1:{}", issuer.port())),
            ("AUTH0_AUDIENCE".into(), AUDIENCE.into()),
            ("CORS_ALLOWED_ORIGINS".into(), APP_ORIGIN.into()),
        ];
        for (name, value) in extra {
            vars.retain(|(n, _)| n != name);
            vars.push((name.to_string(), value.to_string()));
        }
        // A port found free can be taken by another test's wrangler or workerd before this one
        // binds it (tests start workers in parallel): that start is retried on other ports.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let mut command = Command::new(&wrangler);
            command
                .current_dir(root)
                .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(["--inspector-port", &free_port().to_string(), "--show-interactive-dev-session=false"])
                .arg("--persist-to")
                .arg(state)
                .env("EDGE_AUTH_PREBUILT", "1")
                .env("WRANGLER_SEND_METRICS", "false")
                .env("CI", "true")
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        root.join("node_modules/.bin").display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (name, value) in &vars {
                command.arg("--var").arg(format!("{name}:{value}"));
            }
            if let Some(config) = config {
                command.arg("--config").arg(config);
            }
            command.args(args).envs(env.iter().copied());
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let child = command.spawn().expect("start wrangler dev");
            let mut worker = Worker::capture(child, port);
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                // A proxy still starting may accept a connection and drop it before answering:
                // the probe's request fails then (it panics), which only means "not yet".
                let answered =
                    || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ready(port))).unwrap_or(false);
                if TcpStream::connect(("127.0.0.1", port)).is_ok() && answered() {
                    return worker;
                }
                let taken = worker.log().contains("Address already in use");
                if taken && attempts < 3 {
                    break; // dropping `worker` stops its process group
                }
                let exited = worker.child.try_wait().ok().flatten().is_some();
                assert!(!exited && Instant::now() < deadline, "wrangler dev did not start:\n{}", worker.log());
                thread::sleep(Duration::from_millis(250));
            }
            drop(worker);
        }
    }

    /// The built worker on bare workerd, from a Cap'n Proto config as bench/bench.py writes one:
    /// no wrangler dev proxy in front, so the runtime itself meets what a client sends (wrangler's
    /// proxy may refuse a broken body first). `vars` are every binding, as text.
    fn bare(vars: &[(&str, &str)], name: &str) -> Worker {
        Worker::bare_with(vars, name, &[], "")
    }

    /// [`Worker::bare`] with bindings written as Cap'n Proto (`extra`) and the config's
    /// `extensions` list (for a wrapped binding's module), both inserted as given.
    fn bare_with(vars: &[(&str, &str)], name: &str, extra: &[&str], extensions: &str) -> Worker {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(root.join("build/worker.mjs").exists(), "no built worker: {NEEDS}");
        let workerd = root.join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
        assert!(workerd.exists(), "no workerd: {NEEDS}");
        let toml = std::fs::read_to_string(root.join("wrangler.toml")).unwrap();
        let date = toml
            .lines()
            .find_map(|l| l.strip_prefix("compatibility_date = "))
            .expect("wrangler.toml names a compatibility date")
            .trim_matches('"');
        let port = free_port();
        let quote = |s: &str| serde_json::to_string(s).unwrap();
        // Cap'n Proto embeds files by relative path: the bundle is copied beside the config.
        let dir = temp_dir(name);
        let mut modules = vec!["(name = \"worker.mjs\", esModule = embed \"worker.mjs\")".to_owned()];
        for entry in std::fs::read_dir(root.join("build")).unwrap().flatten() {
            let file = entry.path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&file, dir.join(&name)).unwrap();
            if file.extension().is_some_and(|e| e == "wasm") {
                modules.push(format!("(name = {}, wasm = embed {})", quote(&name), quote(&name)));
            }
        }
        let mut bindings: Vec<String> =
            vars.iter().map(|(n, v)| format!("(name = {}, text = {})", quote(n), quote(v))).collect();
        bindings.extend(extra.iter().map(|b| (*b).to_owned()));
        let config = dir.join("worker.capnp");
        std::fs::write(
            &config,
            format!(
                "using Workerd = import \"/workerd/workerd.capnp\";\n\
                 const config :Workerd.Config = (\n\
                   services = [(name = \"main\", worker = .worker), (name = \"loopback\", network = (allow = [\"local\"]))],\n\
                   sockets = [(name = \"http\", address = \"127.0.0.1:{port}\", http = (), service = \"main\")],\n\
                   extensions = [{extensions}],\n\
                 );\n\
                 const worker :Workerd.Worker = (\n\
                   modules = [{}],\n\
                   compatibilityDate = {},\n\
                   bindings = [{}],\n\
                   globalOutbound = \"loopback\",\n\
                 );\n",
                modules.join(", "),
                quote(date),
                bindings.join(", ")
            ),
        )
        .unwrap();
        let mut command = Command::new(&workerd);
        command.arg("serve").arg(&config).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start workerd");
        let mut worker = Worker::capture(child, port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() || request(port, "OPTIONS", "/", &[]).status == 0 {
            let exited = worker.child.try_wait().ok().flatten();
            assert!(exited.is_none() && Instant::now() < deadline, "workerd did not start:\n{}", worker.log());
            thread::sleep(Duration::from_millis(200));
        }
        worker
    }

    /// A child's output, kept line by line for [`Worker::log`].
    fn capture(mut child: Child, port: u16) -> Worker {
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Worker { child, port, log }
    }

    fn get(&self, path: &str, token: &str) -> Reply {
        request(self.port, "GET", path, &[("Authorization", &format!("Bearer {token}"))])
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a key store log line matching `wanted`: wrangler relays the worker's console
    /// output asynchronously, so a line may trail the response that caused it.
    fn expect_event(&self, what: &str, wanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.events().iter().any(&wanted) {
            assert!(Instant::now() < deadline, "no {what} log line:\n{}", self.log());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The key store's structured log lines so far.
    fn events(&self) -> Vec<Value> {
        self.lines().into_iter().filter(|v| v["component"] == "edge-auth.jwks").collect()
    }

    /// Every structured log line so far, from any of the worker's components.
    fn lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            // From the first `{"` to the last `}`: wrangler wraps console.error lines in colour codes.
            .filter_map(|l| Some(&l[l.find("{\"")?..=l.rfind('}')?]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["component"].as_str().is_some_and(|c| c.starts_with("edge-auth")))
            .collect()
    }

    /// Waits for any component's log line matching `wanted`.
    fn expect_line(&self, what: &str, wanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lines().iter().any(&wanted) {
            assert!(Instant::now() < deadline, "no {what} log line:\n{}", self.log());
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // wrangler runs workerd as a child: end the whole process group (and only it).
        let group = i32::try_from(self.child.id()).expect("pid fits i32");
        assert!(group > 1, "refusing to signal process group {group}");
        // SAFETY: kill(2) with a negative pid signals exactly the group we created at spawn.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn token_for(issuer: &MockIssuer, key: &SigningKey) -> String {
    Mint::new(&issuer.issuer(), AUDIENCE).sign(key)
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- the contract

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn routes_errors_and_cors_hold_in_workerd() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let state = temp_dir("contract");
    let w = Worker::start(&issuer, &[], &state);
    let mint = || Mint::new(&issuer.issuer(), AUDIENCE);
    let token = mint().sign(key(1));

    // Routes.
    let public = request(w.port, "GET", "/api/public", &[]);
    assert_eq!(
        (public.status, public.json()),
        (200, json!({"message": "Hello from a public endpoint! You don't need to be authenticated to see this."}))
    );
    assert_eq!(public.header("content-type"), Some("application/json"));
    let private = w.get("/api/private", &token);
    assert_eq!(
        (private.status, private.json()),
        (200, json!({"message": "Hello from a private endpoint! You need to be authenticated to see this."}))
    );
    let scoped = w.get("/api/private-scoped", &Mint { scope: Some("read:messages".into()), ..mint() }.sign(key(1)));
    assert_eq!(
        (scoped.status, scoped.json()),
        (
            200,
            json!({"message": "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this."})
        )
    );
    let by_permission =
        w.get("/api/private-scoped", &Mint { permissions: Some(vec!["read:messages".into()]), ..mint() }.sign(key(1)));
    assert_eq!(by_permission.status, 200);
    let missing = request(w.port, "GET", "/nope", &[]);
    assert_eq!((missing.status, missing.error().as_str()), (404, "not_found"));
    let post = request(w.port, "POST", "/api/private", &[]);
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD, OPTIONS")));

    // CORS preflight, allowed and not.
    let preflight = request(
        w.port,
        "OPTIONS",
        "/api/private",
        &[
            ("Origin", APP_ORIGIN),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("Authorization"));
    let foreign = request(
        w.port,
        "OPTIONS",
        "/api/private",
        &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(foreign.status, 204);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(foreign.header("access-control-allow-methods"), None);

    // Every error row: status, code, challenge, no-store.
    let expired = Mint { expires_in: -120, ..mint() }.sign(key(1));
    let premature = Mint { not_before_in: Some(600), ..mint() }.sign(key(1));
    let wrong_aud = Mint { audience: json!("https://other.api"), ..mint() }.sign(key(1));
    let wrong_iss = Mint::new("https://evil.example/", AUDIENCE).sign(key(1));
    let claims = mint().claims();
    let alg_none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims.to_string().as_bytes()));
    let hs256 = sign(&json!({"alg": "HS256", "kid": "e2e-key-1"}), &claims, key(1));
    let other_signer = sign(&json!({"alg": "RS256", "kid": "e2e-key-1"}), &claims, key(2));
    let huge = Mint { subject: "x".repeat(9000), ..mint() }.sign(key(1));
    let unscoped = mint().sign(key(1));
    let two = format!("Bearer {token} {token}");
    let cases: Vec<(&str, Option<String>, u16, &str, &str)> = vec![
        ("/api/private", None, 401, "missing_authorization", "Bearer realm="),
        ("/api/private", Some("Basic dXNlcjpwYXNz".into()), 401, "missing_authorization", "Bearer realm="),
        ("/api/private", Some("Bearer ".into()), 400, "invalid_request", "error=\"invalid_request\""),
        ("/api/private", Some(two), 400, "invalid_request", "error=\"invalid_request\""),
        ("/api/private", Some("Bearer not-a-jwt".into()), 401, "invalid_token", "not a well-formed JWS"),
        ("/api/private", Some(format!("Bearer {huge}")), 401, "invalid_token", "too large"),
        ("/api/private", Some(format!("Bearer {alg_none}")), 401, "invalid_token", "algorithm is not supported"),
        ("/api/private", Some(format!("Bearer {hs256}")), 401, "invalid_token", "algorithm is not supported"),
        ("/api/private", Some(format!("Bearer {other_signer}")), 401, "invalid_token", "signature is invalid"),
        ("/api/private", Some(format!("Bearer {expired}")), 401, "invalid_token", "expired"),
        ("/api/private", Some(format!("Bearer {premature}")), 401, "invalid_token", "not valid yet"),
        ("/api/private", Some(format!("Bearer {wrong_aud}")), 401, "invalid_token", "audience"),
        ("/api/private", Some(format!("Bearer {wrong_iss}")), 401, "invalid_token", "issuer"),
        (
            "/api/private-scoped",
            Some(format!("Bearer {unscoped}")),
            403,
            "insufficient_scope",
            "scope=\"read:messages\"",
        ),
    ];
    for (path, authorization, status, code, challenge) in cases {
        let mut headers = vec![("Origin", APP_ORIGIN)];
        if let Some(a) = &authorization {
            headers.push(("Authorization", a.as_str()));
        }
        let r = request(w.port, "GET", path, &headers);
        let label = format!("{path} {}", authorization.as_deref().map(|a| &a[..a.len().min(40)]).unwrap_or("(none)"));
        assert_eq!((r.status, r.error().as_str()), (status, code), "{label}: {}", r.body);
        assert!(r.header("www-authenticate").unwrap_or_default().contains(challenge), "{label}: {:?}", r.headers);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{label}");
        // Errors to an allowed origin are readable by the browser.
        assert_eq!(r.header("access-control-allow-origin"), Some(APP_ORIGIN), "{label}");
        if code == "missing_authorization" {
            assert!(!r.header("www-authenticate").unwrap().contains("error="), "{label}");
        }
    }
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn misconfiguration_is_500_naming_the_variable_and_public_still_works() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let state = temp_dir("misconfig");
    let w = Worker::start(&issuer, &[("AUTH0_DOMAIN", "https://tenant.auth0.com/")], &state);
    let r = w.get("/api/private", &token_for(&issuer, key(1)));
    assert_eq!((r.status, r.error().as_str()), (500, "server_misconfigured"));
    assert!(r.json()["error_description"].as_str().unwrap().contains("AUTH0_DOMAIN"));
    assert_eq!(request(w.port, "GET", "/api/public", &[]).status, 200);
    drop(w);
    let w = Worker::start(&issuer, &[("CLOCK_SKEW_SECONDS", "9999")], &state);
    let r = w.get("/api/private-scoped", &token_for(&issuer, key(1)));
    assert_eq!(r.status, 500);
    assert!(r.json()["error_description"].as_str().unwrap().contains("CLOCK_SKEW_SECONDS"));
}

// ---------------------------------------------------------------- signatures through WebCrypto

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn webcrypto_gives_every_signature_vector_its_verdict() {
    // The same corpus the pure-Rust engine is held to on the host (tests/pipeline.rs).
    let corpus: Value = serde_json::from_str(include_str!("vectors/signatures.json")).unwrap();
    let issuer = MockIssuer::start(&corpus["jwks"]).unwrap();
    let vars = [
        ("AUTH0_ISSUER", corpus["issuer"].as_str().unwrap()),
        ("AUTH0_AUDIENCE", corpus["audience"].as_str().unwrap()),
    ];
    let w = Worker::start(&issuer, &vars, &temp_dir("vectors"));
    let vectors = corpus["vectors"].as_array().unwrap();
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let r = w.get("/api/private", vector["token"].as_str().unwrap());
        if vector["valid"] == json!(true) {
            assert_eq!(r.status, 200, "{name}: {}", r.body);
        } else {
            assert_eq!((r.status, r.error().as_str()), (401, "invalid_token"), "{name}: {}", r.body);
            assert_eq!(r.json()["error_description"], json!("The token signature is invalid"), "{name}");
        }
    }
    // Each key was imported once and kept: a second pass gives the same verdicts from warm keys.
    for vector in vectors.iter().filter(|v| v["valid"] == json!(false)) {
        assert_eq!(w.get("/api/private", vector["token"].as_str().unwrap()).status, 401);
    }
    eprintln!("webcrypto: {} signature vectors, verdicts identical to the pure-Rust engine's", vectors.len());
}

// ---------------------------------------------------------------- keys kept close

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn cold_start_with_the_issuer_down_and_nothing_cached_is_503() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    issuer.set_mode(Mode::Down);
    let w = Worker::start(&issuer, &[], &temp_dir("cold-down"));
    let r = w.get("/api/private", &token_for(&issuer, key(1)));
    assert_eq!((r.status, r.error().as_str()), (503, "temporarily_unavailable"), "{}", r.body);
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
    // Within the cooldown the worker does not hammer the issuer.
    let hits = issuer.hits();
    for _ in 0..10 {
        assert_eq!(w.get("/api/private", &token_for(&issuer, key(1))).status, 503);
    }
    assert_eq!(issuer.hits(), hits);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn rotation_is_accepted_after_one_refetch_and_removal_is_enforced_after_refresh() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w =
        Worker::start(&issuer, &[("JWKS_COOLDOWN_SECONDS", "1"), ("JWKS_MAX_AGE_SECONDS", "3")], &temp_dir("rotation"));
    // Verified once, then served from the verified-token cache until its key goes.
    let cached = token_for(&issuer, key(1));
    assert_eq!(w.get("/api/private", &cached).status, 200);
    assert_eq!(w.get("/api/private", &cached).status, 200);
    assert_eq!(issuer.hits(), 1);

    // Rotation: key 2 appears upstream; its first token triggers exactly one refetch.
    issuer.set_jwks(&jwks(&[key(1), key(2)]));
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(2))).status, 200);
    assert_eq!(issuer.hits(), 2);
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(2))).status, 200);
    assert_eq!(issuer.hits(), 2, "served from memory");

    // Removal: key 1 leaves upstream; once the keys go stale and the background refresh lands,
    // key 1 is refused.
    issuer.set_jwks(&jwks(&[key(2)]));
    let old = token_for(&issuer, key(1));
    wait_until("key 1 to be refused", Duration::from_secs(20), || w.get("/api/private", &old).status == 401);
    assert_eq!(w.get("/api/private", &old).error(), "invalid_token");
    let r = w.get("/api/private", &cached);
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_token"), "a cached token dies with its key");
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(2))).status, 200);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn an_issuer_outage_or_garbage_after_warm_up_keeps_the_last_good_keys() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w =
        Worker::start(&issuer, &[("JWKS_COOLDOWN_SECONDS", "1"), ("JWKS_MAX_AGE_SECONDS", "1")], &temp_dir("outage"));
    let token = token_for(&issuer, key(1));
    assert_eq!(w.get("/api/private", &token).status, 200);
    for mode in [Mode::Down, Mode::Garbage, Mode::Status(500), Mode::Delay(Duration::from_secs(8))] {
        issuer.set_mode(mode.clone());
        let before = issuer.hits();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let r = w.get("/api/private", &token);
            assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
            assert!(r.header("retry-after").is_none());
            thread::sleep(Duration::from_millis(100));
        }
        assert!(issuer.hits() > before, "{mode:?}: stale keys should have been refreshed in the background");
    }
    w.expect_event("fetch_failed", |e| e["event"] == "fetch_failed");
    w.expect_event("served_stale", |e| e["event"] == "served_stale");
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_restarted_worker_with_kv_kept_serves_keys_while_the_issuer_is_down() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let state = temp_dir("restart");
    let token = token_for(&issuer, key(1));

    // Emulate the round trip to a distant tenant, so the two cold paths can be compared.
    issuer.set_mode(Mode::Delay(Duration::from_millis(ISSUER_RTT_MS)));
    let first = Worker::start(&issuer, &[("STATUS_ENDPOINT", "true")], &state);
    let started = Instant::now();
    assert_eq!(first.get("/api/private", &token).status, 200);
    let from_issuer = started.elapsed();
    // The KV write runs after the answer (in waitUntil, from a later task): the runtime would keep
    // the isolate for it; this test stops the process, so it waits until the status says written.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = request(first.port, "GET", "/.well-known/edge-auth/status", &[]).json();
        if status["issuers"][0]["tiers"]["kv"]["present"] == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the first worker never wrote its keys to KV: {status}\n{}", first.log());
        thread::sleep(Duration::from_millis(50));
    }
    drop(first);

    // Only KV survives: the per-data-centre cache is dropped, and the issuer is gone.
    let _ = std::fs::remove_dir_all(state.join("v3/cache"));
    issuer.set_mode(Mode::Down);
    let hits = issuer.hits();
    let second = Worker::start(&issuer, &[("STATUS_ENDPOINT", "true")], &state);
    let started = Instant::now();
    let r = second.get("/api/private", &token);
    let from_kv = started.elapsed();
    assert_eq!(r.status, 200, "{}\n{}", r.body, second.log());
    assert_eq!(issuer.hits(), hits, "keys came from KV, not the issuer");
    second.expect_event("keys loaded from KV", |e| e["event"] == "loaded" && e["source"] == "kv");
    let status = request(second.port, "GET", "/.well-known/edge-auth/status", &[]).json();
    assert_eq!(status["issuers"][0]["tiers"]["kv"]["present"], json!(true), "{status}");
    assert_eq!(status["issuers"][0]["tiers"]["memory"]["source"], json!("kv"), "{status}");
    eprintln!(
        "cold first request: keys from the issuer {:.1} ms, keys from KV {:.1} ms (wrangler dev; issuer round trip emulated at {ISSUER_RTT_MS} ms)",
        from_issuer.as_secs_f64() * 1000.0,
        from_kv.as_secs_f64() * 1000.0
    );
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_burst_of_random_kids_stays_within_the_cooldown_bound() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let cooldown = 2.0;
    let w = Worker::start(&issuer, &[("JWKS_COOLDOWN_SECONDS", "2")], &temp_dir("burst"));
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(1))).status, 200);
    let before = issuer.hits();
    let claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
    let started = Instant::now();
    let total = 300;
    for i in 0..total {
        let forged = sign(&json!({"alg": "RS256", "kid": format!("random-{i}-{}", free_port())}), &claims, key(3));
        let r = w.get("/api/private", &forged);
        assert_eq!((r.status, r.error().as_str()), (401, "invalid_token"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fetches = issuer.hits() - before;
    let bound = (elapsed / cooldown).floor() as usize + 1;
    eprintln!("random-kid burst: {total} requests in {elapsed:.1} s caused {fetches} issuer fetches (bound {bound})");
    assert!(fetches <= bound, "{fetches} fetches for {total} random kids in {elapsed:.1} s exceeds {bound}");
    w.expect_event("cooldown_hit", |e| e["event"] == "cooldown_hit");
    // A real token still works throughout.
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(1))).status, 200);
}

// ---------------------------------------------------------------- no stampede on the issuer

/// `n` requests released together, each with a token of its own (so that no verified-token cache
/// answers for another), and their statuses.
fn all_at_once(w: &Worker, issuer: &MockIssuer, batch: &str, n: usize) -> Vec<u16> {
    let port = w.port;
    let start = Arc::new(std::sync::Barrier::new(n));
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let token =
                Mint { subject: format!("user|{batch}-{i}"), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1));
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                request(port, "GET", "/api/private", &[("Authorization", &format!("Bearer {token}"))]).status
            })
        })
        .collect();
    requests.into_iter().map(|r| r.join().unwrap()).collect()
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn concurrent_requests_on_a_cold_worker_or_at_rollover_cause_one_issuer_fetch() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    issuer.set_mode(Mode::Delay(Duration::from_millis(400)));
    // No stale window: at max-age the keys go out of use, the other way onto the keyless path.
    let vars = [("JWKS_MAX_AGE_SECONDS", "2"), ("JWKS_STALE_IF_ERROR_SECONDS", "0")];
    let w = Worker::start(&issuer, &vars, &temp_dir("stampede"));
    let n = 40;

    let cold = all_at_once(&w, &issuer, "cold", n);
    assert!(cold.iter().all(|&s| s == 200), "{cold:?}\n{}", w.log());
    let cold_fetches = issuer.hits();

    thread::sleep(Duration::from_millis(2500));
    let rollover = all_at_once(&w, &issuer, "rollover", n);
    assert!(rollover.iter().all(|&s| s == 200), "{rollover:?}\n{}", w.log());
    let rollover_fetches = issuer.hits() - cold_fetches;

    eprintln!("{n} concurrent requests: {cold_fetches} issuer fetch(es) cold, {rollover_fetches} at rollover");
    assert_eq!((cold_fetches, rollover_fetches), (1, 1));
}

// ---------------------------------------------------------------- gateway mode

const GATEWAY_ROUTES: &str = r#"[
    {"path": "/public/*", "auth": "public"},
    {"path": "/optional", "auth": "optional"},
    {"path": "/orders/:id", "methods": ["GET"], "scopes": ["read:orders"]},
    {"path": "/orders/:id", "methods": ["delete"], "any_scopes": ["admin", "owner"]},
    {"path": "/admin/*", "scopes": ["admin"], "any_scopes": ["ops", "sre"]},
    {"path": "/upload", "methods": ["POST"]},
    {"path": "/__cookies", "auth": "public"},
    {"path": "/__redirect", "auth": "public"},
    {"path": "/__status/:code", "auth": "public"},
    {"path": "/__slow/:ms", "auth": "public"},
    {"path": "/__reset", "auth": "public"},
    {"path": "/__cors", "auth": "public"},
    {"path": "/live", "auth": "public", "websocket": true},
    {"path": "/feed", "websocket": true}
]"#;
const ORIGIN_SECRET: &str = "s3cret-from-the-edge";

/// What the mock origin says it received.
struct Received(Value);

impl Received {
    fn of(reply: &Reply) -> Received {
        assert_eq!(reply.status, 200, "the origin should have answered: {}", reply.body);
        Received(reply.json())
    }

    fn target(&self) -> &str {
        self.0["target"].as_str().unwrap()
    }

    fn header(&self, name: &str) -> Option<String> {
        let headers = self.0["headers"].as_array().unwrap();
        let found: Vec<&str> = headers.iter().filter(|h| h[0] == name).map(|h| h[1].as_str().unwrap()).collect();
        (!found.is_empty()).then(|| found.join(", "))
    }
}

fn gateway(issuer: &MockIssuer, origin: &MockOrigin, extra: &[(&str, &str)], name: &str) -> Worker {
    let base = format!("{}/base/", origin.url());
    let mut vars = vec![
        ("ORIGIN_URL", base.as_str()),
        ("ROUTES", GATEWAY_ROUTES),
        ("ORIGIN_SECRET", ORIGIN_SECRET),
        ("FORWARD_CLAIMS", "true"),
        ("ORIGIN_TIMEOUT_SECONDS", "2"),
    ];
    vars.extend_from_slice(extra);
    Worker::start_gateway(issuer, &vars, &temp_dir(name))
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn the_gateway_enforces_its_rules_before_anything_reaches_the_origin() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let w = gateway(&issuer, &origin, &[], "gw-rules");
    let mint = || Mint::new(&issuer.issuer(), AUDIENCE);
    let bearer = |m: Mint| format!("Bearer {}", m.sign(key(1)));
    let with_scope = |scope: &str| bearer(Mint { scope: Some(scope.into()), ..mint() });
    let call = |method: &str, path: &str, authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        request(w.port, method, path, &headers)
    };

    // Each refusal is the worker's own answer: the origin never sees the request.
    let refusals: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("GET", "/orders/42", None, 401, "missing_authorization"),
        ("GET", "/orders/42", Some("Bearer not.a.token".into()), 401, "invalid_token"),
        ("GET", "/orders/42", Some(bearer(mint())), 403, "insufficient_scope"),
        ("DELETE", "/orders/42", Some(with_scope("read:orders")), 403, "insufficient_scope"),
        ("GET", "/admin/panel", Some(with_scope("admin")), 403, "insufficient_scope"),
        ("GET", "/admin/panel", Some(with_scope("ops sre")), 403, "insufficient_scope"),
        ("PUT", "/orders/42", Some(with_scope("read:orders")), 405, "method_not_allowed"),
        ("GET", "/orders", Some(with_scope("read:orders")), 404, "not_found"),
        ("GET", "/nothing/here", None, 404, "not_found"),
        ("GET", "/optional", Some("Bearer not.a.token".into()), 401, "invalid_token"),
        ("GET", "/public/..%2Fadmin", None, 400, "invalid_request"),
        ("GET", "/public/a%5Cb", None, 400, "invalid_request"),
        ("GET", "/public/a%2eb", None, 400, "invalid_request"),
        ("GET", "/public//admin", None, 400, "invalid_request"),
        ("GET", "/public/a;b", None, 400, "invalid_request"),
        ("GET", "/public/%61", None, 400, "invalid_request"),
    ];
    for (method, path, authorization, status, code) in refusals {
        let r = call(method, path, authorization.as_deref());
        assert_eq!((r.status, r.error().as_str()), (status, code), "{method} {path}: {}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{method} {path}");
    }
    assert_eq!(origin.hits(), 0, "no refused request may reach the origin");
    let r = call("DELETE", "/orders/42", Some(&bearer(mint())));
    assert!(r.header("www-authenticate").unwrap().contains(r#"scope="admin owner""#), "{:?}", r.headers);
    let r = call("GET", "/admin/x", Some(&bearer(mint())));
    assert!(r.header("www-authenticate").unwrap().contains(r#"scope="admin ops sre""#), "{:?}", r.headers);
    assert_eq!(call("PUT", "/orders/42", None).header("allow"), Some("GET, HEAD, DELETE"));

    // Admitted: each kind of rule.
    assert_eq!(call("GET", "/public/x", None).status, 200);
    assert_eq!(call("HEAD", "/public/x", None).status, 200);
    assert_eq!(call("GET", "/orders/42", Some(&with_scope("read:orders"))).status, 200);
    assert_eq!(call("HEAD", "/orders/42", Some(&with_scope("read:orders"))).status, 200, "GET takes HEAD");
    assert_eq!(call("DELETE", "/orders/42", Some(&with_scope("owner"))).status, 200);
    assert_eq!(call("GET", "/admin/a/b", Some(&with_scope("admin sre"))).status, 200);
    let anonymous = Received::of(&call("GET", "/optional", None));
    assert_eq!(anonymous.header("x-auth-subject"), None);
    let known = Received::of(&call("GET", "/optional", Some(&bearer(mint()))));
    assert_eq!(known.header("x-auth-subject").as_deref(), Some("dev-user|1"));
    assert_eq!(origin.hits(), 8);

    // A preflight is the worker's: no token, never forwarded.
    let preflight = request(
        w.port,
        "OPTIONS",
        "/orders/42",
        &[("Origin", APP_ORIGIN), ("Access-Control-Request-Method", "DELETE")],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert_eq!(origin.hits(), 8);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn the_origin_receives_the_request_exactly_with_the_verified_identity_and_nothing_spoofed() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let w = gateway(&issuer, &origin, &[], "gw-forward");
    let token = Mint {
        scope: Some("read:orders write:orders read:orders".into()),
        permissions: Some(vec!["admin".into(), "read:orders".into()]),
        ..Mint::new(&issuer.issuer(), AUDIENCE)
    }
    .sign(key(1));
    let bearer = format!("Bearer {token}");
    let spoofed = [
        ("Authorization", bearer.as_str()),
        ("X-Auth-Subject", "admin"),
        ("x-auth-scopes", "everything"),
        ("X-Auth-Claims", "e30"),
        ("X-Auth-Anything", "1"),
        ("X-Edge-Auth-Secret", "guessed"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-For", "203.0.113.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Prefix", "/admin"),
        ("Forwarded", "for=203.0.113.1;proto=https"),
        ("X-Real-IP", "203.0.113.1"),
        ("Proxy-Authorization", "Basic YWRtaW46YWRtaW4="),
        ("X-Custom", "kept"),
    ];
    let got = Received::of(&request(w.port, "GET", "/orders/7?next=%2Fhome&b=2&a=1&b=1", &spoofed));
    // Path and query exactly as sent, under the origin's base path; the origin's own Host.
    assert_eq!(got.target(), "/base/orders/7?next=%2Fhome&b=2&a=1&b=1");
    assert_eq!(got.header("host"), Some(format!("127.0.0.1:{}", origin.port())));
    assert_eq!(got.header("x-forwarded-host"), Some(format!("127.0.0.1:{}", w.port)));
    // The proxy headers are the edge's: the scheme of the URL the client used, the address the
    // runtime reports (wrangler dev says 127.0.0.1), and none of the client's own.
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    for name in ["x-forwarded-prefix", "forwarded", "x-real-ip", "proxy-authorization"] {
        assert_eq!(got.header(name), None, "{name}");
    }
    // The edge speaks for itself only.
    assert_eq!(got.header("x-auth-subject").as_deref(), Some("dev-user|1"));
    assert_eq!(got.header("x-auth-scopes").as_deref(), Some("admin read:orders write:orders"));
    assert_eq!(got.header("x-auth-claims").as_deref(), Some(token.split('.').nth(1).unwrap()));
    assert_eq!(got.header("x-auth-anything"), None);
    assert_eq!(got.header("x-edge-auth-secret").as_deref(), Some(ORIGIN_SECRET));
    assert_eq!(got.header("x-custom").as_deref(), Some("kept"));
    assert_eq!(got.header("authorization"), None, "Authorization is not forwarded by default");
    // Public requests carry no identity, whatever the client claims.
    let public = Received::of(&request(w.port, "GET", "/public/a/b:c@d%20e?x=%2F&&y", &spoofed[1..]));
    assert_eq!(public.target(), "/base/public/a/b:c@d%20e?x=%2F&&y");
    assert_eq!((public.header("x-auth-subject"), public.header("x-auth-scopes")), (None, None));
    assert_eq!(public.header("x-edge-auth-secret").as_deref(), Some(ORIGIN_SECRET));

    // A large upload is streamed through intact.
    let body: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let uploaded = Received::of(&send(w.port, "POST", "/upload", &[("Authorization", &bearer)], &body));
    assert_eq!(uploaded.0["body_bytes"], json!(body.len()));
    assert_eq!(uploaded.0["body_sha256"], json!(sha256_hex(&body)));

    // The origin's answers come back as it gave them.
    let cookies = request(w.port, "GET", "/__cookies", &[("Origin", APP_ORIGIN)]);
    assert_eq!(cookies.status, 200);
    let set: Vec<&str> = cookies.lines.iter().filter(|(n, _)| n == "set-cookie").map(|(_, v)| v.as_str()).collect();
    assert_eq!(set, ["a=1; Path=/", "b=2; Path=/; HttpOnly"], "{:?} {}", cookies.lines, cookies.body);
    assert_eq!(cookies.header("access-control-allow-origin"), Some(APP_ORIGIN), "CORS added to the origin's answer");
    // The edge owns CORS (CORS_ALLOWED_ORIGINS is set): the origin's own Access-Control-* never
    // reach a browser, allowed origin or not.
    let owned = request(w.port, "GET", "/__cors", &[("Origin", APP_ORIGIN)]);
    assert_eq!(owned.header("access-control-allow-origin"), Some(APP_ORIGIN), "{:?}", owned.lines);
    assert_eq!(owned.header("access-control-allow-credentials"), None);
    assert_eq!(
        owned.header("access-control-expose-headers"),
        Some("WWW-Authenticate, Retry-After, DPoP-Nonce, Mcp-Session-Id")
    );
    let foreign = request(w.port, "GET", "/__cors", &[("Origin", "https://evil.example")]);
    let leaked: Vec<_> = foreign.lines.iter().filter(|(n, _)| n.starts_with("access-control-")).collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    let preflight = request(
        w.port,
        "OPTIONS",
        "/orders/42",
        &[("Origin", APP_ORIGIN), ("Access-Control-Request-Method", "DELETE")],
    );
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, HEAD, DELETE, OPTIONS"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("Authorization, Content-Type, DPoP"));
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    let redirect = request(w.port, "GET", "/__redirect", &[]);
    assert_eq!((redirect.status, redirect.header("location")), (302, Some("/elsewhere")), "not followed");
    let failing = request(w.port, "GET", "/__status/503", &[]);
    assert_eq!((failing.status, failing.json()), (503, json!({ "status": 503 })));

    // The origin slow or gone: the gateway's own errors, logged.
    let slow = request(w.port, "GET", "/__slow/5000", &[]);
    assert_eq!((slow.status, slow.error().as_str()), (504, "origin_timeout"), "{}", slow.body);
    assert_eq!(slow.header("cache-control"), Some("no-store"));
    let reset = request(w.port, "GET", "/__reset", &[]);
    assert_eq!((reset.status, reset.error().as_str()), (502, "origin_unreachable"), "{}", reset.body);
    w.expect_line("origin_timeout", |e| e["event"] == "origin_timeout");
    w.expect_line("origin_unreachable", |e| e["event"] == "origin_unreachable");
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn authorization_is_forwarded_only_when_asked_and_a_down_origin_is_502() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let w = gateway(&issuer, &origin, &[("FORWARD_AUTHORIZATION", "true"), ("FORWARD_CLAIMS", "false")], "gw-authz");
    let token = Mint { scope: Some("read:orders".into()), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1));
    let bearer = format!("Bearer {token}");
    let got = Received::of(&request(w.port, "GET", "/orders/1", &[("Authorization", &bearer)]));
    assert_eq!(got.header("authorization").as_deref(), Some(bearer.as_str()));
    assert_eq!(got.header("x-auth-claims"), None, "FORWARD_CLAIMS is off");
    // A credential the edge did not check never passes, even with FORWARD_AUTHORIZATION.
    let unchecked = Received::of(&request(w.port, "GET", "/public/x", &[("Authorization", "Token forged")]));
    assert_eq!(unchecked.header("authorization"), None);
    let anonymous = Received::of(&request(w.port, "GET", "/optional", &[("Authorization", "Basic YTpi")]));
    assert_eq!(anonymous.header("authorization"), None);
    drop(w);

    // Without CORS_ALLOWED_ORIGINS the origin owns CORS: its headers pass untouched.
    let origin_owned = Worker::start_gateway(
        &issuer,
        &[("ORIGIN_URL", &origin.url()), ("ROUTES", GATEWAY_ROUTES), ("CORS_ALLOWED_ORIGINS", "")],
        &temp_dir("gw-origin-cors"),
    );
    let r = request(origin_owned.port, "GET", "/__cors", &[("Origin", "https://evil.example")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{:?}", r.lines);
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    drop(origin_owned);

    let down = format!("http://127.0.0.1:{}", free_port());
    let w = Worker::start_gateway(&issuer, &[("ORIGIN_URL", &down), ("ROUTES", GATEWAY_ROUTES)], &temp_dir("gw-down"));
    // The same head three times: the plan is fixed by it from the second on, and entry.mjs sends
    // the third itself. Each failure is still a refusal with its decision (made again from the head).
    // (The readiness probe's own 404 line may land in the log at any time: only this rule's count.)
    for _ in 0..3 {
        let r = request(w.port, "GET", "/public/x", &[]);
        assert_eq!((r.status, r.error().as_str()), (502, "origin_unreachable"), "{}", r.body);
    }
    // A verified token's forward is kept for its head too (from the second request on): each
    // failure is still logged, made again with the issuer and key that verified it.
    for _ in 0..3 {
        let r = request(w.port, "GET", "/orders/1", &[("Authorization", &bearer)]);
        assert_eq!((r.status, r.error().as_str()), (502, "origin_unreachable"), "{}", r.body);
    }
    let ours = |rule: &str| -> Vec<Value> { decisions(&w).into_iter().filter(|line| line["rule"] == rule).collect() };
    wait_until("a decision line per refusal", Duration::from_secs(10), || {
        ours("/public/*").len() >= 3 && ours("/orders/:id").len() >= 3
    });
    thread::sleep(Duration::from_millis(300));
    for rule in ["/public/*", "/orders/:id"] {
        let lines = ours(rule);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &lines {
            assert_eq!(
                (line["reason"].as_str(), line["status"].as_u64()),
                (Some("origin_unreachable"), Some(502)),
                "{line}"
            );
            if rule == "/orders/:id" {
                assert_eq!(
                    (line["iss"].as_str(), line["kid"].as_str()),
                    (Some(issuer.issuer().as_str()), Some(key(1).kid.as_str()))
                );
            }
        }
    }
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_kept_token_answer_ends_when_its_token_expires() {
    // No leeway: a token with 2 s left is admitted, then, asked again and again (its answer kept
    // for its head from the second request on), refused from its exp on.
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w = Worker::start(&issuer, &[("CLOCK_SKEW_SECONDS", "0")], &temp_dir("kept-expiry"));
    let mint = Mint { expires_in: 2, ..Mint::new(&issuer.issuer(), AUDIENCE) };
    let exp_ms = u128::try_from(mint.now + mint.expires_in).unwrap() * 1000;
    let token = mint.sign(key(1));
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let (mut admitted, mut refused_at) = (0, None);
    while refused_at.is_none() && now_ms() < exp_ms + 3000 {
        let sent = now_ms();
        let r = w.get("/api/private", &token);
        match r.status {
            // The worker's clock read at or after `sent`: from exp on, it must refuse.
            200 => assert!(sent < exp_ms, "admitted {} ms after exp", sent - exp_ms),
            401 => {
                assert_eq!(r.error(), "invalid_token", "{}", r.body);
                refused_at = Some(now_ms());
            }
            other => panic!("{other}: {}", r.body),
        }
        admitted += usize::from(r.status == 200);
        thread::sleep(Duration::from_millis(20));
    }
    let refused_at = refused_at.expect("never refused");
    assert!(refused_at >= exp_ms, "refused {} ms before exp", exp_ms - refused_at);
    assert!(admitted > 10, "only {admitted} admitted before exp");
    assert_eq!(w.get("/api/private", &token).status, 401, "and stays refused");
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_kept_token_answer_ends_when_its_key_leaves_the_key_set() {
    // The second request keeps the answer for a second; within it, a token with a new kid makes
    // the worker fetch keys that no longer hold key 1: the next request with the first token must
    // be refused at once, not served from the table until the second is out.
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w = Worker::start(&issuer, &[("JWKS_COOLDOWN_SECONDS", "1")], &temp_dir("kept-rotation"));
    let old = token_for(&issuer, key(1));
    assert_eq!(w.get("/api/private", &old).status, 200);
    thread::sleep(Duration::from_millis(1100));
    let kept = Instant::now();
    assert_eq!(w.get("/api/private", &old).status, 200);
    assert_eq!(w.get("/api/private", &old).status, 200);
    issuer.set_jwks(&jwks(&[key(2)]));
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(2))).status, 200);
    assert_eq!(issuer.hits(), 2);
    let r = w.get("/api/private", &old);
    assert!(kept.elapsed() < Duration::from_millis(900), "too slow to test within the second: {:?}", kept.elapsed());
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_token"), "{}", r.body);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_gateway_that_cannot_read_its_configuration_forwards_nothing() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("ROUTES", r#"[{"path": "/a"}, {"path": "/b", "color": "red"}]"#)], "ROUTES is invalid: rule 1 ("),
        (&[("ROUTES", "[{")], "ROUTES is invalid: not a JSON array"),
        (&[("ORIGIN_URL", "http://api.example.com")], "ORIGIN_URL is invalid"),
        (&[("ORIGIN_TIMEOUT_SECONDS", "0")], "ORIGIN_TIMEOUT_SECONDS is invalid"),
    ];
    for (i, (vars, problem)) in cases.into_iter().enumerate() {
        let w = gateway(&issuer, &origin, vars, &format!("gw-misconfig-{i}"));
        let r = request(w.port, "GET", "/public/x", &[]);
        assert_eq!((r.status, r.error().as_str()), (500, "server_misconfigured"), "{vars:?}: {}", r.body);
        let description = r.json()["error_description"].as_str().unwrap_or_default().to_owned();
        assert!(description.starts_with(problem), "{vars:?}: {description}");
        if i == 0 {
            // The response names the rule; only the log says why (the why may quote a secret ROUTES).
            assert!(!description.contains("color"), "{description}");
            w.expect_line("the rule's detail", |e| {
                e["event"] == "misconfigured"
                    && e["detail"].as_str().is_some_and(|d| d.contains("unknown field `color`"))
            });
        }
        // The demo routes are not served in front of someone's API either.
        assert_eq!(request(w.port, "GET", "/api/public", &[]).status, 500);
        // Preflights are still answered.
        let preflight = request(
            w.port,
            "OPTIONS",
            "/public/x",
            &[("Origin", APP_ORIGIN), ("Access-Control-Request-Method", "GET")],
        );
        assert_eq!(preflight.status, 204);
    }
    assert_eq!(origin.hits(), 0);
}

/// A WebSocket client for `path` on the worker, with these extra handshake headers.
type Socket = tungstenite::WebSocket<TcpStream>;

fn connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Socket, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut handshake = format!("ws://127.0.0.1:{port}{path}").into_client_request()?;
    for (name, value) in headers {
        handshake
            .headers_mut()
            .insert(tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the worker");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tungstenite::client(handshake, stream).map(|(socket, _)| socket).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("a blocking handshake was interrupted"),
    })
}

/// The first message of the mock origin's sockets: the handshake as it received it.
fn handshake_seen(socket: &mut Socket) -> Received {
    match socket.read().expect("the origin's first message") {
        tungstenite::Message::Text(text) => Received(serde_json::from_str(&text).unwrap()),
        other => panic!("expected the handshake echo, got {other:?}"),
    }
}

fn echo(socket: &mut Socket, message: tungstenite::Message) -> tungstenite::Message {
    socket.send(message).expect("send through the relay");
    socket.read().expect("the origin's echo")
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn websockets_open_only_where_a_rule_allows_and_close_when_the_token_expires() {
    use tungstenite::{protocol::frame::coding::CloseCode, Message};
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let w = gateway(&issuer, &origin, &[("CLOCK_SKEW_SECONDS", "1")], "gw-websocket");
    let bearer = |m: Mint| format!("Bearer {}", m.sign(key(1)));

    // Refused where no rule allows it, whoever asks: the origin never sees the handshake.
    let admin = bearer(Mint { scope: Some("admin ops".into()), ..Mint::new(&issuer.issuer(), AUDIENCE) });
    for (path, authorization) in [("/public/x", None), ("/admin/panel", Some(admin.as_str())), ("/optional", None)] {
        let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        match connect(w.port, path, &headers) {
            Err(tungstenite::Error::Http(response)) => {
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!((response.status().as_u16(), &body["error"]), (400, &json!("invalid_request")), "{path}");
                assert_eq!(body["error_description"], json!("Upgrade not allowed on this route"), "{path}");
            }
            other => panic!("{path}: the upgrade should be refused, got {:?}", other.map(|_| "a socket")),
        }
    }
    assert_eq!(origin.hits(), 0, "a refused upgrade reached the origin");

    // A public socket: relayed both ways, text and binary, and closed by the client.
    let mut public = connect(w.port, "/live", &[]).expect("a socket on the public WebSocket rule");
    let seen = handshake_seen(&mut public);
    assert_eq!(seen.target(), "/base/live");
    assert_eq!(seen.header("x-edge-auth-secret").as_deref(), Some(ORIGIN_SECRET));
    assert_eq!(seen.header("x-auth-subject"), None);
    assert_eq!(echo(&mut public, Message::text("hello")), Message::text("hello"));
    assert_eq!(echo(&mut public, Message::binary(vec![0u8, 1, 2, 255])), Message::binary(vec![0u8, 1, 2, 255]));
    public.close(None).unwrap();
    wait_until("the origin to see the client's close", Duration::from_secs(10), || !origin.socket_closes().is_empty());

    // A protected socket needs its token, and lives until the token would be refused: exp + skew.
    let missing = connect(w.port, "/feed", &[]);
    assert!(matches!(&missing, Err(tungstenite::Error::Http(r)) if r.status() == 401), "{missing:?}");
    let lifetime = 4;
    let token = Mint { expires_in: lifetime, ..Mint::new(&issuer.issuer(), AUDIENCE) };
    // exp + CLOCK_SKEW_SECONDS, in seconds since the epoch.
    let close_at = (token.now + lifetime + 1) as f64;
    let opened = Instant::now();
    let mut socket = connect(w.port, "/feed", &[("Authorization", &bearer(token))]).expect("a socket with a token");
    assert_eq!(handshake_seen(&mut socket).header("x-auth-subject").as_deref(), Some("dev-user|1"));
    assert_eq!(echo(&mut socket, Message::text("before exp")), Message::text("before exp"));
    let before = origin.socket_messages();
    let closed = match socket.read() {
        Ok(Message::Close(frame)) => frame,
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => panic!("the socket ended without a close frame: {e}"),
    };
    let lived = opened.elapsed();
    let late = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - close_at;
    assert_eq!(closed.as_ref().map(|f| f.code), Some(CloseCode::Policy), "{closed:?}");
    // Never before exp + skew (a little slack for the runtime's coarse clock), and soon after it.
    assert!((-0.2..3.0).contains(&late), "closed {late:.2} s after exp + skew");
    wait_until("the origin to see 1008", Duration::from_secs(10), || origin.socket_closes().contains(&Some(1008)));
    assert!(socket.send(Message::text("after exp")).is_err() || socket.read().is_err(), "the socket is closed");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(origin.socket_messages(), before, "a frame reached the origin after the token expired");
    eprintln!(
        "websocket: a socket opened with a {lifetime} s token (skew 1 s) was closed with 1008 after {lived:?}, \
         {late:.2} s after exp + skew"
    );
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn on_bare_workerd_a_broken_client_body_is_400_trace_is_405_and_frames_are_relayed() {
    use tungstenite::Message;
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let domain = format!("127.0.0.1:{}", issuer.port());
    let base = format!("{}/base", origin.url());
    let w = Worker::bare(
        &[
            ("AUTH0_DOMAIN", &domain),
            ("AUTH0_AUDIENCE", AUDIENCE),
            ("ORIGIN_URL", &base),
            ("ROUTES", GATEWAY_ROUTES),
            ("ORIGIN_SECRET", ORIGIN_SECRET),
        ],
        "bare-gateway",
    );
    let raw = |text: &[u8]| -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", w.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(text).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let post = |chunks: &str| {
        format!(
            "POST /public/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}"
        )
    };

    // A good chunked body passes whole; a bad chunk size is the client's fault, not the origin's.
    let good = raw(post("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_bytes());
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
    assert!(good.contains(&format!("\"body_sha256\":\"{}\"", sha256_hex(b"hello world"))), "{good}");
    let bad = raw(post("5\r\nhello\r\nZZ\r\nbroken\r\n0\r\n\r\n").as_bytes());
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}\n{}", w.log());
    assert!(bad.contains("\"error\":\"invalid_request\""), "{bad}");
    w.expect_line("client_body_failed", |e| e["event"] == "client_body_failed");
    assert!(!w.lines().iter().any(|e| e["event"] == "origin_unreachable"), "blamed on the origin:\n{}", w.log());

    // TRACE and TRACK are never forwarded (with the secret attached, an echoing origin would
    // hand it out), whatever the rules say; nor is an encoded delimiter ever matched around.
    // Counted once the origin has settled: the broken upload's head may reach it (it goes before
    // the body fails) after the client already has its 400.
    let mut hits = origin.hits();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(250));
        let now = origin.hits();
        if now == hits {
            break;
        }
        hits = now;
    }
    let r = request(w.port, "TRACE", "/public/x", &[]);
    assert_eq!((r.status, r.error().as_str()), (405, "method_not_allowed"), "{}", r.body);
    // workerd's HTTP parser does not know TRACK and refuses it before any worker runs; the host
    // tests hold the worker's own 405 for it.
    let r = request(w.port, "TRACK", "/public/x", &[]);
    assert!(r.status == 405 || r.status == 501 || r.status == 400, "TRACK: {} {}", r.status, r.body);
    for path in ["/admin%3Bx", "/admin%3fx", "/admin%23", "/public/a%3Bb"] {
        let r = request(w.port, "GET", path, &[]);
        assert_eq!((r.status, r.error().as_str()), (400, "invalid_request"), "{path}: {}", r.body);
    }
    // Only a WebSocket is relayed, even on a rule that allows one. (wrangler dev's proxy drops
    // such an Upgrade before the worker sees it; workerd hands it over.)
    let h2c = raw(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n");
    assert!(h2c.starts_with("HTTP/1.1 400") && h2c.contains("Upgrade not allowed on this route"), "{h2c}");
    assert_eq!(origin.hits(), hits, "refused requests reached the origin");

    // What a relayed frame costs: round trips of one small message, through the gateway's relay
    // and straight to the origin.
    let frames = 2000;
    let round_trips = |mut socket: Socket| {
        handshake_seen(&mut socket);
        let started = Instant::now();
        for i in 0..frames {
            let message = Message::text(format!("frame {i}"));
            assert_eq!(echo(&mut socket, message.clone()), message);
        }
        let binary = Message::binary(vec![0u8, 1, 2, 255]);
        assert_eq!(echo(&mut socket, binary.clone()), binary);
        started.elapsed() / frames
    };
    let stream = TcpStream::connect(("127.0.0.1", origin.port())).unwrap();
    let (straight, _) = tungstenite::client(format!("ws://127.0.0.1:{}/live", origin.port()), stream).unwrap();
    let straight = round_trips(straight);
    let relayed = round_trips(connect(w.port, "/live", &[]).expect("a relayed socket"));
    eprintln!(
        "websocket relay on bare workerd: {frames} round trips of a small text frame, {relayed:?} each through the \
         gateway, {straight:?} straight to the origin ({:?} added per round trip, two relayed frames)",
        relayed.saturating_sub(straight)
    );
}

// ---------------------------------------------------------------- the attack corpus

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn every_attack_row_gets_its_answer_from_the_real_worker() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // The rows tests/attacks.rs runs through the host pipeline, here over HTTP in workerd.
    let corpus: Value = serde_json::from_str(include_str!("vectors/attacks.json")).unwrap();
    let text = |key: &str| corpus[key].as_str().unwrap().to_owned();

    // Every URL in a token (jku, x5u) points at the canary: a listener that counts connections.
    let canary_address = text("canary").trim_start_matches("http://").to_owned();
    let canary = TcpListener::bind(&canary_address)
        .unwrap_or_else(|e| panic!("the canary address {canary_address} must be free: {e}"));
    let canary_hits = Arc::new(AtomicUsize::new(0));
    let hits = canary_hits.clone();
    thread::spawn(move || {
        for stream in canary.incoming() {
            hits.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });

    // One issuer per worker; a cooldown as long as max-age, so the cold start is each worker's only
    // fetch and any other hit would have to come from something in a token.
    let (issuer, audience) = (text("issuer"), text("audience"));
    // Every decision logged, none held back: each row's line is checked against its answer.
    let vars = [
        ("AUTH0_ISSUER", issuer.as_str()),
        ("AUTH0_AUDIENCE", audience.as_str()),
        ("JWKS_COOLDOWN_SECONDS", "600"),
        ("DECISION_LOG", "all"),
        ("LOG_LINES_PER_MINUTE", "100000"),
    ];
    let demo_issuer = MockIssuer::start(&corpus["jwks"]).unwrap();
    let demo = Worker::start(&demo_issuer, &vars, &temp_dir("attacks-demo"));
    let gateway_issuer = MockIssuer::start(&corpus["jwks"]).unwrap();
    let origin = MockOrigin::start().unwrap();
    let origin_url = format!("{}/base", origin.url());
    let routes = corpus["gateway_routes"].to_string();
    let mut gateway_vars = vars.to_vec();
    gateway_vars.extend([("ORIGIN_URL", origin_url.as_str()), ("ROUTES", routes.as_str())]);
    let extra = corpus["gateway_vars"].as_object().unwrap();
    gateway_vars.extend(extra.iter().map(|(name, value)| (name.as_str(), value.as_str().unwrap())));
    let gateway = Worker::start_gateway(&gateway_issuer, &gateway_vars, &temp_dir("attacks-gateway"));

    let rows = corpus["rows"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut sent = HashMap::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for (mode, worker) in [("demo", &demo), ("gateway", &gateway)] {
        for row in rows.iter().filter(|r| r["mode"] == mode || r["mode"] == "both") {
            let name = row["name"].as_str().unwrap();
            let mut headers: Vec<(&str, &str)> = row["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap(), h[1].as_str().unwrap()))
                .collect();
            let (method, path) = (row["method"].as_str().unwrap(), row["path"].as_str().unwrap());
            // A DPoP row's proof is made now, for the URL this worker is called at.
            let proof = row.get("dpop").map(|recipe| {
                let token = headers.iter().find(|(n, _)| *n == "Authorization").map_or("", |(_, v)| &v[5..]);
                let url = format!("http://127.0.0.1:{}{path}", worker.port);
                let jti = format!("{mode}-{name}");
                dpop::from_recipe(recipe, &corpus["dpop_keys"], method, &url, token, unix_now(), &jti)
            });
            let lines_before = decisions(worker).len();
            let mut requests = 1;
            if let Some(proof) = &proof {
                headers.push(("DPoP", proof));
                if row["dpop"]["send_twice"] == true {
                    request(worker.port, method, path, &headers);
                    requests += 1;
                }
            }
            let before = origin.hits();
            let r = request(worker.port, method, path, &headers);
            *sent.entry(mode).or_insert(0) += 1;
            let mut fail = |problem: String| failures.push(format!("[{mode}] {name}: {problem}"));
            // This row's decision line: the last of the lines its requests wrote, in order.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut lines = decisions(worker);
            while lines.len() < lines_before + requests && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
                lines = decisions(worker);
            }
            match lines.get(lines_before + requests - 1).filter(|_| lines.len() == lines_before + requests) {
                None => fail(format!("{} decision line(s) for {requests} request(s)", lines.len() - lines_before)),
                Some(line) => {
                    let reason = line["reason"].as_str().unwrap_or_default().to_owned();
                    if line["status"] != json!(r.status) {
                        fail(format!("the decision line says status {}, the answer was {}", line["status"], r.status));
                    }
                    if !reason_fits(&reason, r.status, &r.error()) {
                        fail(format!("the decision line's reason {reason} does not fit {} {}", r.status, r.error()));
                    }
                    if reason != row["reason"].as_str().unwrap_or_default() {
                        fail(format!("decided {reason}, the row expects {}", row["reason"]));
                    }
                    *reasons.entry(reason).or_insert(0) += 1;
                }
            }
            let expected = (row["status"].as_u64().unwrap() as u16, row["error"].as_str().unwrap_or_default());
            let got = (r.status, r.error());
            if (got.0, got.1.as_str()) != expected {
                // The mock origin's echo names the target it was sent; an error body says why.
                let said = r.json().get("target").map_or_else(|| r.body.clone(), |t| format!("forwarded to {t}"));
                fail(format!("answered {got:?}, expected {expected:?}: {said}"));
            }
            if r.status >= 500 {
                fail(format!("a 5xx: {}", r.status));
            }
            let reached = origin.hits() - before;
            let admitted = (200..300).contains(&expected.0);
            if mode == "demo" || !admitted {
                if reached != 0 {
                    fail(format!("the origin was reached {reached} time(s)"));
                }
                continue;
            }
            if reached != 1 || !(200..300).contains(&r.status) {
                fail(format!("admitted, but the origin was reached {reached} time(s)"));
                continue;
            }
            // What the origin received, as its echo reports it (names in lower case).
            let echo = r.json();
            let values = |name: &str| -> Vec<String> {
                let all = echo["headers"].as_array().map(Vec::as_slice).unwrap_or_default();
                let lower = name.to_ascii_lowercase();
                all.iter().filter(|h| h[0] == lower.as_str()).map(|h| h[1].as_str().unwrap().to_owned()).collect()
            };
            for name in row["origin_must_not_see"].as_array().into_iter().flatten() {
                let seen = values(name.as_str().unwrap());
                if !seen.is_empty() {
                    fail(format!("the origin saw {name}: {seen:?}"));
                }
            }
            for pair in row["origin_must_see"].as_array().into_iter().flatten() {
                let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
                let seen = values(name);
                if seen != [value] {
                    fail(format!("the origin saw {name}: {seen:?}, expected exactly {value:?}"));
                }
            }
        }
    }
    let (demo_fetches, gateway_fetches) = (demo_issuer.hits(), gateway_issuer.hits());
    let canary_connections = canary_hits.load(Ordering::SeqCst);
    eprintln!(
        "attack corpus: {} rows ({} demo, {} gateway), {} requests to the demo worker, {} to the gateway; \
         issuer fetches {demo_fetches} and {gateway_fetches}, origin hits {}, canary connections {canary_connections}",
        rows.len(),
        rows.iter().filter(|r| r["mode"] != "gateway").count(),
        rows.iter().filter(|r| r["mode"] != "demo").count(),
        sent.get("demo").unwrap_or(&0),
        sent.get("gateway").unwrap_or(&0),
        origin.hits(),
    );
    let mut histogram: Vec<_> = reasons.into_iter().collect();
    histogram.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    eprintln!("attack corpus decisions by reason: {histogram:?}");
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(canary_connections, 0, "the worker connected to a URL taken from a token");
    assert!(
        demo_fetches <= 1 && gateway_fetches <= 1,
        "issuer fetches beyond the cold start: {demo_fetches}, {gateway_fetches}"
    );
}

/// Whether a decision's reason is one the answer's status and error code allow (docs/operating.md, "Seeing
/// what the edge decides").
fn reason_fits(reason: &str, status: u16, error: &str) -> bool {
    const TOKEN: [&str; 10] = [
        "malformed_token",
        "unsupported_alg",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "untrusted_issuer",
        "wrong_audience",
        "token_binding",
        "revoked",
    ];
    match (status, error) {
        (100..=399, _) => ["ok", "public", "anonymous", "preflight"].contains(&reason),
        (400, "invalid_request") => {
            ["invalid_request", "ambiguous_path", "upgrade_not_allowed", "client_body_failed"].contains(&reason)
        }
        (401, "invalid_token") => TOKEN.contains(&reason),
        (401, code) | (403, code) | (404, code) | (405, code) | (429, code) => reason == code,
        (500, "server_misconfigured") => reason == "misconfigured",
        (502, _) => reason == "origin_unreachable",
        (503, _) => ["no_keys", "denylist_unavailable"].contains(&reason),
        (504, _) => reason == "origin_timeout",
        _ => false,
    }
}

// ---------------------------------------------------------------- faults

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn issuer_faults_are_refused_logged_and_never_replace_good_keys() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let faults = [
        (Mode::Redirect, "HTTP status 302"),
        (Mode::Oversized, "response too large"),
        (Mode::Deep, "malformed JWKS"),
        (Mode::Truncated, "network error"),
        (Mode::Status(500), "HTTP status 500"),
        (Mode::Down, "network error"),
        // Past JWKS_FETCH_TIMEOUT_SECONDS (1 s on the cold worker): the fetch is given up.
        (Mode::Delay(Duration::from_secs(3)), "timeout"),
        // Headers and half the body in time, then a stall: the timeout covers the body too.
        (Mode::StallBody(Duration::from_secs(4)), "timeout"),
    ];

    // Cold: no keys anywhere, so each fault is a 503 with Retry-After (never a 500), and logged.
    let cold = Worker::start(
        &issuer,
        &[("JWKS_COOLDOWN_SECONDS", "1"), ("JWKS_FETCH_TIMEOUT_SECONDS", "1")],
        &temp_dir("faults-cold"),
    );
    for (mode, reason) in &faults {
        issuer.set_mode(mode.clone());
        thread::sleep(Duration::from_millis(1100));
        let r = cold.get("/api/private", &token_for(&issuer, key(1)));
        assert_eq!((r.status, r.error().as_str()), (503, "temporarily_unavailable"), "{mode:?}: {}", r.body);
        assert!(r.header("retry-after").is_some(), "{mode:?}");
        cold.expect_event(reason, |e| e["event"] == "fetch_failed" && e["reason"] == *reason);
    }
    drop(cold);

    // Warm: keys held survive every fault, refreshed in the background and failing each time.
    issuer.set_mode(Mode::Serve);
    // A 1 s fetch timeout here too: a refresh hung on the slow faults must end before the next
    // fault's 2.5 s, or that fault's refresh could not start in time to be counted.
    let w = Worker::start(
        &issuer,
        &[("JWKS_COOLDOWN_SECONDS", "1"), ("JWKS_MAX_AGE_SECONDS", "1"), ("JWKS_FETCH_TIMEOUT_SECONDS", "1")],
        &temp_dir("faults"),
    );
    let token = token_for(&issuer, key(1));
    assert_eq!(w.get("/api/private", &token).status, 200);
    for (mode, _) in &faults {
        issuer.set_mode(mode.clone());
        let before = issuer.hits();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            let r = w.get("/api/private", &token);
            assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
            thread::sleep(Duration::from_millis(100));
        }
        assert!(issuer.hits() > before, "{mode:?}: the stale keys should have been refreshed");
    }
    assert_eq!(issuer.other_hits(), 0, "the redirect was followed");
    w.expect_event("served_stale", |e| e["event"] == "served_stale");
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn without_a_kv_binding_the_worker_still_serves_and_garbage_in_kv_is_ignored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let token = token_for(&issuer, key(1));

    // No KV binding at all: memory and the issuer are enough; the status route says KV is absent.
    let config_dir = temp_dir("no-kv-config");
    let config = config_dir.join("wrangler.toml");
    let main = root.join("build/worker.mjs");
    std::fs::write(
        &config,
        format!("name = \"edge-auth\"\nmain = \"{}\"\ncompatibility_date = \"2026-11-01\"\n", main.display()),
    )
    .unwrap();
    let ready = |port| request(port, "GET", "/api/public", &[]).status == 200;
    let w = Worker::launch_with(&issuer, &[("STATUS_ENDPOINT", "true")], &temp_dir("no-kv"), Some(&config), ready);
    assert_eq!(w.get("/api/private", &token).status, 200);
    let status = request(w.port, "GET", "/.well-known/edge-auth/status", &[]).json();
    assert_eq!(status["issuers"][0]["tiers"]["kv"]["available"], json!(false), "{status}");
    drop(w);

    // KV holding garbage under the worker's key, the issuer down: the garbage is ignored (logged),
    // never trusted, and the answer is 503 until the issuer is back.
    let state = temp_dir("kv-garbage");
    let kv_key = format!("jwks/v1/{}|{}", issuer.issuer(), issuer.jwks_url());
    let put = Command::new(root.join("node_modules/.bin/wrangler"))
        .current_dir(root)
        .env(
            "PATH",
            format!("{}:{}", root.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default()),
        )
        .env("WRANGLER_SEND_METRICS", "false")
        .args(["kv", "key", "put", "--local", "--binding", "JWKS_KV", "--persist-to"])
        .arg(&state)
        .arg(&kv_key)
        .arg(r#"{"v":1,"issuer":"garbage","jwks":"[[["}"#)
        .output()
        .expect("wrangler kv key put");
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    issuer.set_mode(Mode::Down);
    let w = Worker::start(&issuer, &[("JWKS_COOLDOWN_SECONDS", "1")], &state);
    let r = w.get("/api/private", &token);
    assert_eq!((r.status, r.error().as_str()), (503, "temporarily_unavailable"), "{}", r.body);
    w.expect_event("ignored_tier", |e| e["event"] == "ignored_tier" && e["tier"] == "kv");
    issuer.set_mode(Mode::Serve);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(w.get("/api/private", &token).status, 200);
}

// ---------------------------------------------------------------- several issuers, DPoP

#[path = "common/dpop.rs"]
mod dpop;

use dpop::{Proof, ProofKey};

fn unix_now() -> i64 {
    edge_auth_dev_issuer::unix_now()
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn two_issuers_each_verify_their_own_tokens_and_an_untrusted_one_is_never_contacted() {
    let tenant = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let custom = MockIssuer::start(&jwks(&[key(2)])).unwrap();
    // The attacker's host publishes the attacker's key: a token naming it must never make the
    // edge fetch anything there.
    let attacker = MockIssuer::start(&jwks(&[key(3)])).unwrap();
    let issuers = format!(r#"[{{"domain": "127.0.0.1:{}"}}]"#, custom.port());
    let w = Worker::start(&tenant, &[("ISSUERS", &issuers), ("STATUS_ENDPOINT", "true")], &temp_dir("issuers"));

    assert_eq!(w.get("/api/private", &token_for(&tenant, key(1))).status, 200);
    assert_eq!(w.get("/api/private", &token_for(&custom, key(2))).status, 200);
    // Issuer confusion: iss of one, kid (and signature) of the other.
    for (issuer, signer) in [(&custom, key(1)), (&tenant, key(2))] {
        let confused = w.get("/api/private", &token_for(issuer, signer));
        assert_eq!((confused.status, confused.error().as_str()), (401, "invalid_token"), "{}", confused.body);
    }
    let untrusted = w.get("/api/private", &token_for(&attacker, key(3)));
    assert_eq!(
        (untrusted.status, untrusted.json()["error_description"].as_str()),
        (401, Some("The token issuer is not trusted"))
    );
    assert_eq!(attacker.hits() + attacker.other_hits(), 0, "the worker contacted an issuer named only by a token");

    let status = request(w.port, "GET", "/.well-known/edge-auth/status", &[]).json();
    let listed: Vec<&str> =
        status["issuers"].as_array().unwrap().iter().map(|i| i["issuer"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![tenant.issuer(), custom.issuer()]);
    assert_eq!(status["issuers"][1]["tiers"]["memory"]["kids"], json!(["e2e-key-2"]), "{status}");
}

fn bound_token(issuer: &MockIssuer, proof_key: &ProofKey) -> String {
    let mut claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
    claims["cnf"] = json!({ "jkt": proof_key.thumbprint() });
    sign(&json!({ "alg": "RS256", "typ": "at+jwt", "kid": key(1).kid }), &claims, key(1))
}

fn dpop_get(w: &Worker, path: &str, token: &str, proof: &str) -> Reply {
    request(w.port, "GET", path, &[("Authorization", &format!("DPoP {token}")), ("DPoP", proof)])
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn dpop_proofs_in_every_algorithm_are_verified_by_webcrypto_once_each() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w = Worker::start(&issuer, &[], &temp_dir("dpop"));
    let url = format!("http://127.0.0.1:{}/api/private", w.port);
    let keys = [ProofKey::es256(), ProofKey::eddsa(), ProofKey::Rs256(key(2).clone()), ProofKey::Ps256(key(3).clone())];
    for (i, k) in keys.iter().enumerate() {
        let token = bound_token(&issuer, k);
        let proof = Proof::new(k, "GET", &url, &token, unix_now(), &format!("e2e-{i}")).sign(k);
        let ok = dpop_get(&w, "/api/private", &token, &proof);
        assert_eq!(ok.status, 200, "{}: {}", k.alg(), ok.body);
        let replayed = dpop_get(&w, "/api/private", &token, &proof);
        assert_eq!((replayed.status, replayed.error().as_str()), (401, "invalid_dpop_proof"), "{}", k.alg());
        // A proof signed by the right kind of key, but not the one in its header.
        let mut forged = Proof::new(k, "GET", &url, &token, unix_now(), &format!("e2e-forged-{i}"));
        forged.header["jwk"] = keys[(i + 1) % 2].public_jwk();
        forged.header["alg"] = json!(keys[(i + 1) % 2].alg());
        let forged = dpop_get(&w, "/api/private", &token, &forged.sign(k));
        assert_eq!(
            (forged.status, forged.error().as_str()),
            (401, "invalid_dpop_proof"),
            "{}: {}",
            k.alg(),
            forged.body
        );
        // Bound, so never as Bearer.
        let bearer = w.get("/api/private", &token);
        assert_eq!((bearer.status, bearer.error().as_str()), (401, "invalid_token"), "{}", k.alg());
    }
    // Challenges for both schemes, and the DPoP error on the DPoP one.
    let k = &keys[0];
    let token = bound_token(&issuer, k);
    let stale = Proof::new(k, "GET", &url, &token, unix_now() - 3600, "stale").sign(k);
    let refused = dpop_get(&w, "/api/private", &token, &stale);
    // The runtime's Headers join the two challenges into one line, as RFC 9110 §11.6.1 allows.
    assert_eq!(
        refused.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"{AUDIENCE}\", DPoP algs=\"ES256 RS256 PS256 EdDSA\", error=\"invalid_dpop_proof\", \
                 error_description=\"The DPoP proof is too old\""
            )
            .as_str()
        )
    );
    // CORS: a browser may send the proof and read the nonce.
    let preflight = request(
        w.port,
        "OPTIONS",
        "/api/private",
        &[
            ("Origin", APP_ORIGIN),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization, dpop"),
        ],
    );
    assert!(
        preflight.header("access-control-allow-headers").is_some_and(|h| h.contains("DPoP")),
        "{:?}",
        preflight.lines
    );
    let exposed = request(w.port, "GET", "/api/private", &[("Origin", APP_ORIGIN)]);
    assert!(exposed.header("access-control-expose-headers").is_some_and(|h| h.contains("DPoP-Nonce")));
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn webcrypto_gives_every_proof_vector_its_verdict() {
    // The corpus the host engines are held to (tests/proof_vectors.rs). Its proofs are for another
    // URL and time: past a sound signature, a proof fails on its htu, so the description tells
    // which verdict WebCrypto gave.
    let corpus: Value = serde_json::from_str(include_str!("vectors/proofs.json")).unwrap();
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w = Worker::start(&issuer, &[], &temp_dir("proof-vectors"));
    let mut claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
    claims["cnf"] = json!({ "jkt": "any" });
    let token = sign(&json!({ "alg": "RS256", "kid": key(1).kid }), &claims, key(1));
    let vectors = corpus["vectors"].as_array().unwrap();
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let r = dpop_get(&w, "/api/private", &token, vector["proof"].as_str().unwrap());
        let expected = if vector["valid"] == json!(true) {
            "The DPoP proof htu does not match the request URL"
        } else {
            "The DPoP proof signature is invalid"
        };
        assert_eq!((r.status, r.json()["error_description"].as_str()), (401, Some(expected)), "{name}: {}", r.body);
    }
    eprintln!("webcrypto: {} proof vectors, verdicts identical to the host engines'", vectors.len());
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn with_a_nonce_secret_a_client_learns_the_nonce_once_and_proves_with_it() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let secret = "e2e nonce secret, at least 32 characters long";
    let w = Worker::start(&issuer, &[("DPOP_NONCE_SECRET", secret)], &temp_dir("dpop-nonce"));
    let url = format!("http://127.0.0.1:{}/api/private", w.port);
    let k = ProofKey::es256();
    let token = bound_token(&issuer, &k);
    let first = dpop_get(&w, "/api/private", &token, &Proof::new(&k, "GET", &url, &token, unix_now(), "n1").sign(&k));
    assert_eq!((first.status, first.error().as_str()), (401, "use_dpop_nonce"), "{}", first.body);
    let nonce = first.header("dpop-nonce").expect("DPoP-Nonce on use_dpop_nonce").to_owned();
    assert!(first.header("www-authenticate").is_some_and(|c| c.contains("error=\"use_dpop_nonce\"")));
    let mut retry = Proof::new(&k, "GET", &url, &token, unix_now(), "n2");
    retry.claims["nonce"] = json!(nonce);
    let second = dpop_get(&w, "/api/private", &token, &retry.sign(&k));
    assert_eq!(second.status, 200, "{}", second.body);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn the_gateway_sends_the_proof_with_authorization_and_names_the_bound_key() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let routes = r#"[{"path": "/api/*"}, {"path": "/open/*", "auth": "public"}]"#;
    let k = ProofKey::es256();
    let token = bound_token(&issuer, &k);
    for (forward_authorization, name) in [("true", "gw-dpop-fwd"), ("false", "gw-dpop")] {
        let w =
            gateway(&issuer, &origin, &[("ROUTES", routes), ("FORWARD_AUTHORIZATION", forward_authorization)], name);
        let url = format!("http://127.0.0.1:{}/api/orders", w.port);
        let proof = Proof::new(&k, "GET", &url, &token, unix_now(), name).sign(&k);
        let got = Received::of(&dpop_get(&w, "/api/orders", &token, &proof));
        assert_eq!(got.header("x-auth-key-thumbprint"), Some(k.thumbprint()));
        let forwarded = (got.header("authorization"), got.header("dpop"));
        if forward_authorization == "true" {
            assert_eq!(forwarded, (Some(format!("DPoP {token}")), Some(proof.clone())));
        } else {
            assert_eq!(forwarded, (None, None));
        }
        // On a public rule nothing was verified: neither travels, and no binding is claimed.
        let open = Received::of(&request(
            w.port,
            "GET",
            "/open/x",
            &[("Authorization", &format!("DPoP {token}")), ("DPoP", &proof), ("X-Auth-Key-Thumbprint", "forged")],
        ));
        assert_eq!(
            (open.header("authorization"), open.header("dpop"), open.header("x-auth-key-thumbprint")),
            (None, None, None)
        );
    }
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_proof_made_by_the_dpop_npm_package_verifies_end_to_end() {
    // tests/interop/dpop-client.mjs: panva's `dpop` client library, nothing of this repository.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut client = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("tests/interop/dpop-client.mjs"))
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node and the dpop package: run ./scripts/test.sh");
    let mut input = client.stdin.take().unwrap();
    let mut output = BufReader::new(client.stdout.take().unwrap()).lines();
    let jkt = output.next().expect("the client's thumbprint").unwrap();

    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let w = Worker::start(&issuer, &[], &temp_dir("dpop-npm"));
    let mut claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
    claims["cnf"] = json!({ "jkt": jkt });
    let token = sign(&json!({ "alg": "RS256", "kid": key(1).kid }), &claims, key(1));
    let mut proof_for = |path: &str| {
        writeln!(input, "GET http://127.0.0.1:{}{path} {token}", w.port).unwrap();
        output.next().expect("a proof").unwrap()
    };
    for path in ["/api/private", "/api/private?again=1"] {
        let proof = proof_for(path);
        let r = dpop_get(&w, path, &token, &proof);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let scoped = dpop_get(&w, "/api/private-scoped", &token, &proof_for("/api/private-scoped"));
    assert_eq!((scoped.status, scoped.error().as_str()), (403, "insufficient_scope"));
    // Its proof for one URL is refused at another.
    let elsewhere = dpop_get(&w, "/api/private", &token, &proof_for("/api/public"));
    assert_eq!((elsewhere.status, elsewhere.error().as_str()), (401, "invalid_dpop_proof"));
    drop(input);
    let _ = client.wait();
}

// ---------------------------------------------------------------- decisions you can count

/// A wrangler config like wrangler.toml but for the built worker as it is, plus `extra` TOML.
fn test_config(name: &str, extra: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = temp_dir(name).join("wrangler.toml");
    let main = root.join("build/worker.mjs");
    std::fs::write(
        &config,
        format!("name = \"edge-auth\"\nmain = \"{}\"\ncompatibility_date = \"2026-11-01\"\n{extra}", main.display()),
    )
    .unwrap();
    config
}

/// The `decision` lines logged so far.
fn decisions(w: &Worker) -> Vec<Value> {
    w.lines().into_iter().filter(|v| v["event"] == "decision").collect()
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn with_decision_log_all_every_request_gets_one_line_with_its_reason_and_analytics_bound_changes_no_answer() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let config = test_config(
        "decisions-config",
        "\n[[analytics_engine_datasets]]\nbinding = \"ANALYTICS\"\ndataset = \"edge_auth_e2e\"\n",
    );
    let ready = |port| request(port, "GET", "/api/public", &[]).status == 200;
    let w = Worker::launch_with(&issuer, &[("DECISION_LOG", "all")], &temp_dir("decisions"), Some(&config), ready);
    assert!(w.log().contains("ANALYTICS"), "wrangler dev did not bind the dataset:\n{}", w.log());
    // The readiness probe's own line (its 200 on /api/public) may still be on its way through
    // wrangler's log: the count starts after it.
    wait_until("the probe's decision line", Duration::from_secs(10), || {
        decisions(&w).iter().any(|line| line["reason"] == "public")
    });
    let before = decisions(&w).len();
    let mint = || Mint::new(&issuer.issuer(), AUDIENCE);
    let expired = Mint { expires_in: -3600, ..mint() }.sign(key(1));
    // Signed by another key under the held key's kid.
    let forged = sign(&json!({"alg": "RS256", "kid": key(1).kid}), &mint().claims(), key(2));
    let good = mint().sign(key(1));
    // Path, token, status, reason, rule.
    type Case<'a> = (&'a str, Option<String>, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("/api/public", None, 200, "public", Some("/api/public")),
        ("/api/private", Some(good.clone()), 200, "ok", Some("/api/private")),
        ("/api/private", Some(good), 200, "ok", Some("/api/private")),
        ("/api/private", None, 401, "missing_authorization", Some("/api/private")),
        ("/api/private", Some(expired), 401, "expired", Some("/api/private")),
        ("/api/private", Some(forged), 401, "bad_signature", Some("/api/private")),
        ("/api/private-scoped", Some(mint().sign(key(1))), 403, "insufficient_scope", Some("/api/private-scoped")),
        ("/api/nope", None, 404, "not_found", None),
        // The probe's head again: an answer that is logged is never answered from entry.mjs's
        // table of fixed answers.
        ("/api/public", None, 200, "public", Some("/api/public")),
    ];
    for (path, token, status, _, _) in &cases {
        let r = match token {
            Some(token) => w.get(path, token),
            None => request(w.port, "GET", path, &[]),
        };
        assert_eq!(r.status, *status, "{path}: {}", r.body);
    }
    wait_until("a decision line per request", Duration::from_secs(10), || decisions(&w).len() >= before + cases.len());
    let lines = decisions(&w)[before..].to_vec();
    assert_eq!(lines.len(), cases.len(), "{lines:#?}");
    for (line, (path, _, status, reason, rule)) in lines.iter().zip(&cases) {
        assert_eq!(line["reason"], json!(reason), "{path}: {line}");
        assert_eq!(line["status"], json!(status), "{path}: {line}");
        assert_eq!(line["rule"], json!(rule), "{path}: {line}");
        assert!(line["ms"].is_u64(), "{line}");
    }
    assert_eq!(lines[1]["iss"], json!(issuer.issuer()));
    assert_eq!(lines[1]["kid"], json!(key(1).kid));
    // The forged token named a held kid; the missing token named none.
    assert_eq!(lines[5]["kid"], json!(key(1).kid));
    assert_eq!(lines[3]["kid"], Value::Null);
    assert!(!w.log().contains("analytics_unusable") && !w.log().contains("analytics_failed"), "{}", w.log());
}

/// An Analytics Engine stand-in for bare workerd (a wrapped binding): each point becomes a log
/// line, so a test reads exactly what the worker handed to `writeDataPoint`.
const ANALYTICS_LOGGER: &str = r#"export default function () {
  return { writeDataPoint(point) { console.log(JSON.stringify({ component: "edge-auth-test", event: "data_point", point })); } };
}"#;

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn on_bare_workerd_each_request_writes_one_data_point_with_its_rule_reason_and_times() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let domain = format!("127.0.0.1:{}", issuer.port());
    let base = format!("{}/base", origin.url());
    let module = serde_json::to_string(ANALYTICS_LOGGER).unwrap();
    let extension =
        format!("(modules = [(name = \"edge-auth-test:analytics\", internal = true, esModule = {module})])");
    let w = Worker::bare_with(
        &[
            ("AUTH0_DOMAIN", &domain),
            ("AUTH0_AUDIENCE", AUDIENCE),
            ("ORIGIN_URL", &base),
            ("ROUTES", GATEWAY_ROUTES),
            ("ORIGIN_SECRET", ORIGIN_SECRET),
        ],
        "bare-analytics",
        &["(name = \"ANALYTICS\", wrapped = (moduleName = \"edge-auth-test:analytics\"))"],
        &extension,
    );
    let points = || -> Vec<Value> {
        w.lines().into_iter().filter(|v| v["event"] == "data_point").map(|v| v["point"].clone()).collect()
    };
    let before = points().len();
    let token = Mint { scope: Some("read:orders".into()), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1));
    assert_eq!(request(w.port, "GET", "/public/a", &[]).status, 200);
    assert_eq!(w.get("/orders/7", &token).status, 200);
    assert_eq!(w.get("/orders/7", &token).status, 200);
    assert_eq!(request(w.port, "GET", "/orders/7", &[]).status, 401);
    assert_eq!(request(w.port, "GET", "/nowhere", &[]).status, 404);
    wait_until("a data point per request", Duration::from_secs(10), || points().len() >= before + 5);
    let got = points()[before..].to_vec();
    assert_eq!(got.len(), 5, "{got:#?}");
    // index; blobs: reason, class, method, issuer, kid, cache; doubles: status, worker ms, origin ms.
    let iss = issuer.issuer();
    let kid = &key(1).kid;
    let expected = [
        ("/public/*", ["public", "2xx", "GET", "", "", ""], 200),
        ("/orders/:id", ["ok", "2xx", "GET", &iss, kid, "miss"], 200),
        ("/orders/:id", ["ok", "2xx", "GET", &iss, kid, "hit"], 200),
        ("/orders/:id", ["missing_authorization", "4xx", "GET", "", "", ""], 401),
        ("-", ["not_found", "4xx", "GET", "", "", ""], 404),
    ];
    for (point, (index, blobs, status)) in got.iter().zip(expected) {
        assert_eq!(point["indexes"], json!([index]), "{point}");
        // Blobs 7 and 8 are an MCP rule's method and tool: empty on these rules.
        let blobs: Vec<&str> = blobs.iter().copied().chain(["", ""]).collect();
        assert_eq!(point["blobs"], json!(blobs), "{point}");
        let doubles = point["doubles"].as_array().expect("doubles");
        assert_eq!(doubles.len(), 3, "{point}");
        assert_eq!(doubles[0], json!(status), "{point}");
        assert!(doubles[1].as_f64().is_some_and(|ms| ms >= 0.0), "{point}");
        assert!(doubles[2].as_f64().is_some_and(|ms| ms >= 0.0), "{point}");
    }
    assert!(!w.log().contains("analytics_unusable") && !w.log().contains("analytics_failed"), "{}", w.log());
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_flood_of_unknown_kids_makes_no_more_log_lines_than_the_budget() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let budget = 5;
    let w = Worker::start(&issuer, &[("LOG_LINES_PER_MINUTE", "5")], &temp_dir("flood"));
    assert_eq!(w.get("/api/private", &token_for(&issuer, key(1))).status, 200);
    let claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
    let total = 60;
    let started = Instant::now();
    for i in 0..total {
        let forged = sign(&json!({"alg": "RS256", "kid": format!("flood-{i}")}), &claims, key(3));
        assert_eq!(w.get("/api/private", &forged).status, 401);
    }
    // The flood may straddle one minute boundary: two budgets, at most.
    let minutes = if started.elapsed() < Duration::from_secs(59) { 2 } else { 3 };
    w.expect_line("an unknown_kid decision", |v| v["event"] == "decision" && v["reason"] == "unknown_kid");
    thread::sleep(Duration::from_secs(2));
    let lines = w.lines();
    let count = |wanted: &dyn Fn(&Value) -> bool| lines.iter().filter(|v| wanted(v)).count();
    let decided = count(&|v| v["event"] == "decision" && v["reason"] == "unknown_kid");
    let cooldown = count(&|v| v["event"] == "cooldown_hit");
    eprintln!("{total} unknown kids: {decided} decision lines, {cooldown} cooldown_hit lines (budget {budget}/min)");
    assert!(decided >= budget && decided <= budget * minutes, "{decided} decision lines");
    assert!(cooldown <= budget * minutes, "{cooldown} cooldown_hit lines");
    // Every suppressed line counts what was held back, never more than was sent.
    for line in lines.iter().filter(|v| v["event"] == "suppressed") {
        assert!(line["count"].as_u64().unwrap() <= total as u64, "{line}");
    }
}

// ---------------------------------------------------------------- rules and headers from any claim

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn claim_rules_and_claim_headers_hold_through_the_mock_origin() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let routes = r#"[
        {"path": "/org/*", "claims": {"org_id": "org_123", "https://example.com/roles": ["admin", "editor"]}},
        {"path": "/*"}
    ]"#;
    let claim_headers = r#"{"X-Auth-Email": "email", "X-Auth-Roles": "https://example.com/roles"}"#;
    let w = gateway(&issuer, &origin, &[("ROUTES", routes), ("CLAIM_HEADERS", claim_headers)], "gw-claims");
    let token = |edit: &dyn Fn(&mut Value)| {
        let mut claims = Mint::new(&issuer.issuer(), AUDIENCE).claims();
        edit(&mut claims);
        format!("Bearer {}", sign(&json!({"alg": "RS256", "kid": key(1).kid}), &claims, key(1)))
    };
    let member = token(&|c| {
        c["org_id"] = json!("org_123");
        c["https://example.com/roles"] = json!(["editor"]);
        c["email"] = json!("ada@example.com");
    });
    let got = Received::of(&request(
        w.port,
        "GET",
        "/org/reports",
        &[("Authorization", &member), ("X-Auth-Email", "forged@example.com")],
    ));
    assert_eq!(got.target(), "/base/org/reports");
    assert_eq!(got.header("x-auth-email").as_deref(), Some("ada@example.com"));
    assert_eq!(got.header("x-auth-roles").as_deref(), Some(r#"["editor"]"#));
    // Another org: refused at the edge, naming the claim only; the origin sees nothing.
    let before = origin.hits();
    let outsider = token(&|c| {
        c["org_id"] = json!("org_999");
        c["https://example.com/roles"] = json!("admin");
    });
    let r = request(w.port, "GET", "/org/reports", &[("Authorization", &outsider)]);
    assert_eq!((r.status, r.error().as_str()), (403, "access_denied"), "{}", r.body);
    assert!(r.body.contains("org_id") && !r.body.contains("org_999"), "{}", r.body);
    assert_eq!(origin.hits(), before);
    // Elsewhere a token without the claims passes, and a header whose claim is absent is not sent.
    let plain = token(&|_| {});
    let got = Received::of(&request(
        w.port,
        "GET",
        "/other",
        &[("Authorization", &plain), ("X-Auth-Email", "forged@example.com")],
    ));
    assert_eq!((got.header("x-auth-email"), got.header("x-auth-roles")), (None, None));
}

// ---------------------------------------------------------------- revoking now

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn an_entry_written_with_deny_sh_refuses_the_next_requests_within_the_refresh_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let config = test_config(
        "denylist-config",
        "\n[[kv_namespaces]]\nbinding = \"DENYLIST\"\nid = \"00000000000000000000000000000001\"\n",
    );
    let state = temp_dir("denylist");
    let ready = |port| request(port, "GET", "/api/public", &[]).status == 200;
    let refresh = 2;
    let w = Worker::launch_with(&issuer, &[("DENYLIST_REFRESH_SECONDS", "2")], &state, Some(&config), ready);
    let mint = || Mint::new(&issuer.issuer(), AUDIENCE);
    let departing = Mint { subject: "auth0|departing".into(), ..mint() }.sign(key(1));
    let staying = Mint { subject: "auth0|staying".into(), ..mint() }.sign(key(1));
    assert_eq!(w.get("/api/private", &departing).status, 200, "{}", w.log());

    let deny = Command::new("sh")
        .current_dir(root)
        .arg("scripts/deny.sh")
        .args(["add", "sub", "auth0|departing", "--reason", "left the company", "--local"])
        .arg("--persist-to")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .env(
            "PATH",
            format!("{}:{}", root.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .expect("run deny.sh");
    assert!(deny.status.success(), "{}", String::from_utf8_lossy(&deny.stderr));
    let written = Instant::now();
    // The copy is at most `refresh` s old when a request claims a listing, which the next one sees.
    let mut status = 0;
    while written.elapsed() < Duration::from_secs(refresh + 8) {
        status = w.get("/api/private", &departing).status;
        if status == 401 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let took = written.elapsed();
    eprintln!("deny-list entry took effect after {took:?} (refresh {refresh} s)");
    let r = w.get("/api/private", &departing);
    assert_eq!((status, r.status, r.error().as_str()), (401, 401, "invalid_token"), "{}\n{}", r.body, w.log());
    assert_eq!(r.json()["error_description"], json!("The token is revoked"));
    assert!(!r.body.contains("left the company"));
    assert!(took <= Duration::from_secs(refresh + 2), "took {took:?}");
    assert_eq!(w.get("/api/private", &staying).status, 200);
    w.expect_line("a revoked line with the reason", |v| v["event"] == "revoked" && v["reason"] == "left the company");
}

// ---------------------------------------------------------------- the fleet (fleet/)

/// edge-auth's bindings to the fleet's objects (wrangler.toml holds them commented out).
const FLEET_BINDINGS: &str = "
[[durable_objects.bindings]]
name = \"FLEET_REPLAY\"
class_name = \"ReplayShard\"
script_name = \"edge-auth-fleet\"

[[durable_objects.bindings]]
name = \"FLEET_REVOCATIONS\"
class_name = \"Revocations\"
script_name = \"edge-auth-fleet\"
";

/// The fleet's Worker in its own `wrangler dev`, found by edge-auth's through the dev registry.
fn start_fleet(issuer: &MockIssuer, state: &Path, env: &[(&str, &str)], admin: &str) -> Worker {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet/wrangler.toml");
    assert!(config.with_file_name("build").join("index.js").exists(), "no built fleet: {NEEDS}");
    let ready = |port| request(port, "GET", "/list", &[]).status == 401;
    Worker::launch_in(issuer, &[("FLEET_ADMIN_TOKEN", admin)], state, Some(&config), env, &[], ready)
}

fn fleet_admin(fleet: &Worker, admin: &str, path: &str, body: &Value) -> Reply {
    let authorization = format!("Bearer {admin}");
    let headers = [("Authorization", authorization.as_str()), ("Content-Type", "application/json")];
    send(fleet.port, "POST", path, &headers, body.to_string().as_bytes())
}

/// Review finding 5 and issue #27: two edge-auth processes (two isolates that share nothing but
/// the fleet's objects) refuse a DPoP proof the other accepted; a subject revoked in the fleet is
/// refused by both within about a second and its open socket is closed with 1008; and after the
/// fleet and edge-auth restart (state kept with --persist-to), a fresh isolate still refuses the
/// used proof.
#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn fleet_replay_and_revocation_hold_across_two_worker_processes_and_a_restart() {
    use tungstenite::{protocol::frame::coding::CloseCode, Message};
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let registry = temp_dir("fleet-registry");
    let env = [("WRANGLER_REGISTRY_PATH", registry.to_str().unwrap()), ("FLEET_PREBUILT", "1")];
    let admin = "e2e-fleet-admin";
    let fleet_state = temp_dir("fleet-state");
    let fleet = start_fleet(&issuer, &fleet_state, &env, admin);
    let config = test_config("fleet-edge", FLEET_BINDINGS);
    let base = format!("{}/base/", origin.url());
    let vars = [
        ("ORIGIN_URL", base.as_str()),
        ("ROUTES", r#"[{"path": "/now/*", "revocation": "fleet", "websocket": true}, {"path": "/*"}]"#),
        ("DPOP_REPLAY", "fleet"),
    ];
    // One host for both processes, as one hostname is served by many isolates: a proof's htu
    // names it, and holds at either.
    let args = ["--local-upstream", "api.example.test"];
    let start_edge = |name: &str| {
        let ready = |port| request(port, "OPTIONS", "/", &[]).status != 0;
        Worker::launch_in(&issuer, &vars, &temp_dir(name), Some(&config), &env, &args, ready)
    };
    let (a, b) = (start_edge("fleet-a"), start_edge("fleet-b"));
    let k = ProofKey::es256();
    let token = bound_token(&issuer, &k);
    let url = "http://api.example.test/orders/1";
    let proof = |jti: &str| Proof::new(&k, "GET", url, &token, unix_now(), jti).sign(&k);
    // The registry connects each process to the fleet a moment after it starts.
    for w in [&a, &b] {
        let mut attempt = 0;
        wait_until("edge-auth to reach the fleet", Duration::from_secs(30), || {
            attempt += 1;
            dpop_get(w, "/orders/1", &token, &proof(&format!("warm-{}-{attempt}", w.port))).status == 200
        });
    }

    let used = proof("fleet-once");
    let at_a = dpop_get(&a, "/orders/1", &token, &used);
    assert_eq!(at_a.status, 200, "{}\n{}", at_a.body, a.log());
    for (w, name) in [(&b, "the other process"), (&a, "the same process")] {
        let again = dpop_get(w, "/orders/1", &token, &used);
        assert_eq!((again.status, again.error().as_str()), (401, "invalid_dpop_proof"), "{name}: {}", again.body);
        assert_eq!(again.json()["error_description"], json!("The DPoP proof was already used"), "{name}");
    }

    // Revoked in the fleet: both processes refuse the subject within about a second, the KV rule
    // does not read it, and a socket opened with the token is closed.
    let leaving = Mint { subject: "auth0|fleet-leaving".into(), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1));
    for w in [&a, &b] {
        assert_eq!(w.get("/now/x", &leaving).status, 200, "{}", w.log());
    }
    let mut socket = connect(a.port, "/now/feed", &[("Authorization", &format!("Bearer {leaving}"))])
        .expect("a socket with a token");
    assert_eq!(handshake_seen(&mut socket).header("x-auth-subject").as_deref(), Some("auth0|fleet-leaving"));
    assert_eq!(echo(&mut socket, Message::text("before")), Message::text("before"));
    let revoke = json!({ "kind": "sub", "value": "auth0|fleet-leaving", "until": null, "reason": "e2e" });
    assert_eq!(fleet_admin(&fleet, admin, "/revoke", &revoke).status, 200);
    let written = Instant::now();
    let mut took = [None, None];
    while written.elapsed() < Duration::from_secs(6) && took.iter().any(Option::is_none) {
        for (i, w) in [&a, &b].into_iter().enumerate() {
            if took[i].is_none() && w.get("/now/x", &leaving).status == 401 {
                took[i] = Some(written.elapsed());
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("fleet revocation took effect after {:?} and {:?} in the two processes", took[0], took[1]);
    assert!(took.iter().all(|t| t.is_some_and(|t| t <= Duration::from_millis(2500))), "{took:?}");
    let r = b.get("/now/x", &leaving);
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_token"), "{}", r.body);
    assert_eq!(r.json()["error_description"], json!("The token is revoked"));
    assert_eq!(a.get("/elsewhere", &leaving).status, 200, "a kv rule is not judged by the fleet");
    let closed = match socket.read() {
        Ok(Message::Close(frame)) => frame,
        other => panic!("expected the relay to close, got {other:?}"),
    };
    eprintln!("the revoked token's socket was closed {:?} after the revocation was written", written.elapsed());
    assert_eq!(closed.as_ref().map(|f| f.code), Some(CloseCode::Policy), "{closed:?}");

    // Both restart on the state they kept: a fresh isolate still refuses the used proof.
    drop((a, b, fleet));
    let fleet = start_fleet(&issuer, &fleet_state, &env, admin);
    let c = start_edge("fleet-c");
    let mut attempt = 0;
    wait_until("the restarted edge-auth to reach the fleet", Duration::from_secs(30), || {
        attempt += 1;
        dpop_get(&c, "/orders/1", &token, &proof(&format!("warm-c-{attempt}"))).status == 200
    });
    let again = dpop_get(&c, "/orders/1", &token, &used);
    assert_eq!((again.status, again.error().as_str()), (401, "invalid_dpop_proof"), "{}", again.body);
    assert_eq!(c.get("/now/x", &leaving).status, 401, "the revocation outlived the restart");
    drop(fleet);
}

// ---------------------------------------------------------------- limits per caller

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_limit_of_n_gives_429_on_request_n_plus_one_for_one_subject_and_not_another() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let limit = 3;
    let config = test_config(
        "ratelimit-config",
        &format!(
            "\n[[ratelimits]]\nname = \"PER_USER\"\nnamespace_id = \"1001\"\nsimple = {{ limit = {limit}, period = 60 }}\n"
        ),
    );
    let base = format!("{}/base/", origin.url());
    let routes = r#"[
        {"path": "/limited/*", "rate_limit": {"binding": "PER_USER", "key": "subject"}},
        {"path": "/unbound/*", "rate_limit": {"binding": "MISSING", "key": "subject"}}
    ]"#;
    let vars = [("ORIGIN_URL", base.as_str()), ("ROUTES", routes)];
    let ready = |port| request(port, "OPTIONS", "/", &[]).status != 0;
    // A rule naming a binding that is not bound is a configuration error naming the rule.
    let broken = Worker::launch_with(&issuer, &vars, &temp_dir("ratelimit-broken"), Some(&config), ready);
    let r = request(broken.port, "GET", "/limited/x", &[]);
    assert_eq!((r.status, r.error().as_str()), (500, "server_misconfigured"), "{}", r.body);
    assert!(r.body.contains("ROUTES") && r.body.contains("rule 1"), "{}", r.body);
    drop(broken);

    let routes = r#"[{"path": "/limited/*", "rate_limit": {"binding": "PER_USER", "key": "subject"}}]"#;
    let vars = [("ORIGIN_URL", base.as_str()), ("ROUTES", routes)];
    let w = Worker::launch_with(&issuer, &vars, &temp_dir("ratelimit"), Some(&config), ready);
    let bearer = |subject: &str| {
        format!("Bearer {}", Mint { subject: subject.into(), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1)))
    };
    let (alice, bob) = (bearer("auth0|alice"), bearer("auth0|bob"));
    // An invalid token spends nothing.
    let forged = format!(
        "Bearer {}",
        Mint { subject: "auth0|alice".into(), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(2))
    );
    for _ in 0..limit {
        assert_eq!(request(w.port, "GET", "/limited/x", &[("Authorization", &forged)]).status, 401);
    }
    let before = origin.hits();
    for i in 0..limit {
        let r = request(w.port, "GET", "/limited/x", &[("Authorization", &alice)]);
        assert_eq!(r.status, 200, "request {i}: {}\n{}", r.body, w.log());
    }
    let over = request(w.port, "GET", "/limited/x", &[("Authorization", &alice)]);
    assert_eq!((over.status, over.error().as_str()), (429, "rate_limited"), "{}", over.body);
    assert_eq!(over.header("retry-after"), Some("60"));
    assert_eq!(origin.hits(), before + limit, "the refused request reached the origin");
    assert_eq!(request(w.port, "GET", "/limited/x", &[("Authorization", &bob)]).status, 200);
}

// ---------------------------------------------------------------- MCP: a protected resource

const MCP_E2E_RESOURCE: &str = "http://127.0.0.1/mcp";
const MCP_E2E_ROUTES: &str = r#"[
    {"path": "/mcp", "methods": ["GET", "POST", "DELETE"], "resource": "http://127.0.0.1/mcp",
     "mcp": {"tools/call": ["mcp:tools"], "tools/call:delete_repo": ["repo:admin"], "resources/read": ["files:read"]}},
    {"path": "/orders/:id", "methods": ["GET"]}
]"#;

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn an_mcp_rule_is_a_protected_resource_that_reads_the_json_rpc_body() {
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let base = format!("{}/base/", origin.url());
    let audiences = format!("{AUDIENCE},{MCP_E2E_RESOURCE}");
    let w = Worker::start_gateway(
        &issuer,
        &[
            ("ORIGIN_URL", base.as_str()),
            ("ROUTES", MCP_E2E_ROUTES),
            ("AUTH0_AUDIENCE", audiences.as_str()),
            ("FORWARD_AUTHORIZATION", "true"),
            ("MCP_MAX_BODY_BYTES", "4096"),
        ],
        &temp_dir("gw-mcp"),
    );
    let token = |aud: &str, scope: &str| {
        let mint = Mint { scope: Some(scope.into()), ..Mint::new(&issuer.issuer(), aud) };
        format!("Bearer {}", mint.sign(key(1)))
    };
    let post = |authorization: Option<&str>, origin_header: Option<&str>, body: &str| {
        let mut headers = vec![("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
        headers.extend(authorization.map(|a| ("Authorization", a)));
        headers.extend(origin_header.map(|o| ("Origin", o)));
        send(w.port, "POST", "/mcp", &headers, body.as_bytes())
    };
    let call = |tool: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
    let metadata = "http://127.0.0.1/.well-known/oauth-protected-resource/mcp";

    // Discovery: the metadata, and a 401 that names it.
    let doc = request(w.port, "GET", "/.well-known/oauth-protected-resource/mcp", &[]);
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(doc.json()["resource"], json!(MCP_E2E_RESOURCE));
    assert_eq!(doc.json()["authorization_servers"], json!([issuer.issuer()]));
    assert_eq!(doc.header("access-control-allow-origin"), Some("*"));
    assert_eq!(request(w.port, "GET", "/.well-known/oauth-protected-resource/other", &[]).status, 404);
    let r = post(None, None, &call("echo"));
    assert_eq!((r.status, r.error().as_str()), (401, "missing_authorization"));
    assert!(
        r.header("www-authenticate").unwrap().contains(&format!(r#"resource_metadata="{metadata}""#)),
        "{:?}",
        r.headers
    );

    // Refusals never reach the origin.
    let enough = token(MCP_E2E_RESOURCE, "mcp:tools");
    let long = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#, "x".repeat(5000));
    type Refusal<'a> = (Option<String>, Option<&'a str>, String, u16, &'a str);
    let refusals: Vec<Refusal> = vec![
        (Some(token(AUDIENCE, "mcp:tools")), None, call("echo"), 401, "invalid_token"),
        (Some(token(MCP_E2E_RESOURCE, "")), None, call("echo"), 403, "insufficient_scope"),
        (Some(enough.clone()), None, call("delete_repo"), 403, "insufficient_scope"),
        (Some(enough.clone()), None, "not json".into(), 400, "invalid_request"),
        (Some(enough.clone()), None, r#"{"id":1,"method":"tools/list"}"#.into(), 400, "invalid_request"),
        (Some(enough.clone()), None, long, 413, "payload_too_large"),
        (Some(enough.clone()), Some("http://evil.example"), call("echo"), 403, "origin_not_allowed"),
    ];
    // The body must be plain UTF-8 JSON (a server honouring charset=utf-7 would read another message).
    let utf7 = send(
        w.port,
        "POST",
        "/mcp",
        &[("Authorization", enough.as_str()), ("Content-Type", "application/json; charset=utf-7")],
        call("echo").as_bytes(),
    );
    assert_eq!((utf7.status, utf7.error().as_str()), (415, "unsupported_media_type"), "{}", utf7.body);
    for (authorization, page, body, status, code) in refusals {
        let r = post(authorization.as_deref(), page, &body);
        assert_eq!((r.status, r.error().as_str()), (status, code), "{}", &body[..body.len().min(80)]);
    }
    let r = post(Some(&enough), None, &call("delete_repo"));
    assert!(r.header("www-authenticate").unwrap().contains(r#"scope="mcp:tools repo:admin""#), "{:?}", r.headers);
    assert_eq!(origin.hits(), 0, "no refused request may reach the origin");

    // Admitted: the body byte for byte, the identity as X-Auth-*, and never the client's token
    // (no passthrough), even with FORWARD_AUTHORIZATION.
    let batch = format!(r#"[{},{{"jsonrpc":"2.0","method":"notifications/initialized"}}]"#, call("echo"));
    for body in [call("echo"), batch, r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#.to_owned()] {
        let seen = Received::of(&post(Some(&enough), Some(APP_ORIGIN), &body));
        assert_eq!(seen.0["body_sha256"], json!(sha256_hex(body.as_bytes())));
        assert_eq!(seen.header("authorization"), None);
        assert_eq!(seen.header("dpop"), None);
        assert_eq!(seen.header("x-auth-subject").as_deref(), Some("dev-user|1"));
    }
    // The plan kept for that head is used again only for a body its token may send.
    let hits = origin.hits();
    let r = post(Some(&enough), Some(APP_ORIGIN), &call("delete_repo"));
    assert_eq!((r.status, r.error().as_str()), (403, "insufficient_scope"), "{}", r.body);
    let r = post(Some(&enough), Some(APP_ORIGIN), "not json");
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_request"), "{}", r.body);
    assert_eq!(origin.hits(), hits, "a kept plan never forwards a body it would refuse");
    assert_eq!(Received::of(&post(Some(&enough), Some(APP_ORIGIN), &call("echo"))).header("authorization"), None);
    let get = Received::of(&request(w.port, "GET", "/mcp", &[("Authorization", &enough)]));
    assert_eq!(get.header("authorization"), None);
    // Another rule keeps FORWARD_AUTHORIZATION.
    let api = token(AUDIENCE, "");
    let seen = Received::of(&request(w.port, "GET", "/orders/1", &[("Authorization", &api)]));
    assert_eq!(seen.header("authorization").as_deref(), Some(api.as_str()));

    // A browser client's preflight.
    let preflight = request(
        w.port,
        "OPTIONS",
        "/mcp",
        &[
            ("Origin", APP_ORIGIN),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "mcp-session-id"),
        ],
    );
    assert_eq!(preflight.status, 204);
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("Mcp-Session-Id"));
}

// ---------------------------------------------------------------- the identity assertion

const EDGE_ISSUER: &str = "https://edge.e2e.edge-auth.test";
const JWKS_PATH: &str = "/.well-known/edge-auth/jwks.json";

/// Checks assertions as an origin would, with the npm `jose` against the worker's published keys
/// (tests/js/verify-assertion.mjs): one result per case, `ok` or the `code` jose (or the
/// htm/htu check) failed with.
fn jose_verify(cases: &[Value]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("tests/js/verify-assertion.mjs"))
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node and the jose package: run ./scripts/test.sh");
    child.stdin.take().unwrap().write_all(Value::Array(cases.to_vec()).to_string().as_bytes()).unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success(), "verify-assertion.mjs failed: {out}");
    let results: Vec<Value> = serde_json::from_str(&out).expect("a JSON array");
    assert_eq!(results.len(), cases.len());
    results
}

/// A case for [`jose_verify`]: `jwt`, checked as the origin of `origin` would for `method` and
/// the URL `htu`, against worker `w`'s keys.
fn case(w: &Worker, origin: &MockOrigin, jwt: &str, method: &str, htu: &str) -> Value {
    json!({
        "jwt": jwt,
        "jwks": format!("http://127.0.0.1:{}{JWKS_PATH}", w.port),
        "issuer": EDGE_ISSUER,
        "audience": origin.url(),
        "htm": method,
        "htu": htu,
    })
}

fn keys_var(keys: &[Value]) -> String {
    Value::Array(keys.to_vec()).to_string()
}

/// A segment of a compact JWS as JSON, and back.
fn segment(jwt: &str, index: usize) -> Value {
    use base64ct::{Base64UrlUnpadded, Encoding};
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(jwt.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

fn with_segment(jwt: &str, index: usize, value: &Value) -> String {
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[index] = b64(value.to_string().as_bytes());
    parts.join(".")
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn the_origin_verifies_the_edges_assertion_with_jose_on_required_optional_and_public_rules() {
    use edge_auth_dev_issuer::assertion::{assertion_key, public_half, AssertionAlg};
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    // Two keys, as in a rotation: the first signs, both are published.
    let (first, second) =
        (assertion_key(AssertionAlg::Es256, "edge-new"), assertion_key(AssertionAlg::EdDsa, "edge-old"));
    let keys = keys_var(&[first.clone(), second.clone()]);
    let w = gateway(&issuer, &origin, &[("ASSERTION_KEYS", &keys), ("ASSERTION_ISSUER", EDGE_ISSUER)], "gw-assert");
    let base = format!("{}/base", origin.url());

    let published = request(w.port, "GET", JWKS_PATH, &[("Origin", "https://anyone.example")]);
    assert_eq!(published.status, 200, "{}", published.body);
    assert_eq!(published.json(), json!({ "keys": [public_half(&first), public_half(&second)] }));
    assert_eq!(published.header("access-control-allow-origin"), Some("*"));
    assert_eq!(published.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(origin.hits(), 0, "the keys are the edge's own answer");

    let mint = Mint { scope: Some("read:orders".into()), expires_in: 20, ..Mint::new(&issuer.issuer(), AUDIENCE) };
    let token_exp = mint.now + mint.expires_in;
    let bearer = format!("Bearer {}", mint.sign(key(1)));
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let assertion_of = |method: &str, path: &str, authorization: Option<&str>| {
        let mut headers = vec![("X-Auth-Assertion", forged), ("x_auth_assertion", forged)];
        headers.extend(authorization.map(|a| ("Authorization", a)));
        let got = Received::of(&request(w.port, method, path, &headers));
        let assertion = got.header("x-auth-assertion").expect("an assertion");
        assert!(!assertion.contains(forged) && !assertion.contains(", "), "only the edge's: {assertion}");
        assert_eq!(got.header("x_auth_assertion"), None);
        assertion
    };
    let required = assertion_of("GET", "/orders/7?page=2", Some(&bearer));
    let optional = assertion_of("GET", "/optional", None);
    let public = assertion_of("POST", "/public/x", None);
    let results = jose_verify(&[
        case(&w, &origin, &required, "GET", &format!("{base}/orders/7")),
        case(&w, &origin, &optional, "GET", &format!("{base}/optional")),
        case(&w, &origin, &public, "POST", &format!("{base}/public/x")),
    ]);
    for result in &results {
        assert_eq!(result["ok"], true, "{results:#?}");
        assert_eq!(result["header"], json!({ "alg": "ES256", "kid": "edge-new", "typ": "edge-auth+jwt" }));
    }
    let claims = &results[0]["payload"];
    assert_eq!(
        (claims["sub"].as_str(), claims["token_iss"].as_str(), claims["scope"].as_str()),
        (Some("dev-user|1"), Some(issuer.issuer().as_str()), Some("read:orders"))
    );
    assert_eq!(claims["exp"].as_i64(), Some(token_exp), "never past the token's exp (20 s left, TTL 60)");
    for anonymous in [&results[1]["payload"], &results[2]["payload"]] {
        let mut names: Vec<&str> = anonymous.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["aud", "exp", "htm", "htu", "iat", "iss"], "{anonymous}");
        let life = anonymous["exp"].as_i64().unwrap() - anonymous["iat"].as_i64().unwrap();
        assert_eq!(life, 60);
    }

    // A token seen before, with the same method and URL, gets the same assertion (a token's first
    // one is not kept: most tokens seen once never come back); another URL gets its own.
    let again = assertion_of("GET", "/orders/7?page=3", Some(&bearer));
    assert_eq!(assertion_of("GET", "/orders/7", Some(&bearer)), again);
    assert_eq!(assertion_of("GET", "/orders/7?page=4", Some(&bearer)), again);
    assert_ne!(assertion_of("GET", "/orders/8", Some(&bearer)), again);

    // What an origin must refuse, jose refuses.
    let mut altered = segment(&required, 1);
    altered["sub"] = json!("admin");
    let mut unpublished = segment(&required, 0);
    unpublished["kid"] = json!("edge-unpublished");
    let mut other_audience = case(&w, &origin, &required, "GET", &format!("{base}/orders/7"));
    other_audience["audience"] = json!("https://another-origin.example");
    let mut expired = case(&w, &origin, &required, "GET", &format!("{base}/orders/7"));
    expired["now"] = json!(token_exp + 1);
    let refused = jose_verify(&[
        other_audience,
        case(&w, &origin, &with_segment(&required, 1, &altered), "GET", &format!("{base}/orders/7")),
        expired,
        case(&w, &origin, &with_segment(&required, 0, &unpublished), "GET", &format!("{base}/orders/7")),
        // Lifted from one request and sent with another.
        case(&w, &origin, &required, "GET", &format!("{base}/orders/8")),
        case(&w, &origin, &required, "DELETE", &format!("{base}/orders/7")),
    ]);
    let codes: Vec<(&str, &str)> =
        refused.iter().map(|r| (r["code"].as_str().unwrap_or("ok"), r["claim"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        codes,
        [
            ("ERR_JWT_CLAIM_VALIDATION_FAILED", "aud"),
            ("ERR_JWS_SIGNATURE_VERIFICATION_FAILED", ""),
            ("ERR_JWT_EXPIRED", "exp"),
            ("ERR_JWKS_NO_MATCHING_KEY", ""),
            ("htu_mismatch", "htu"),
            ("htm_mismatch", "htm"),
        ],
        "{refused:#?}"
    );
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_rotated_key_set_signs_with_the_new_key_and_still_publishes_the_old_one() {
    use edge_auth_dev_issuer::assertion::{assertion_key, public_half, AssertionAlg};
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let old = assertion_key(AssertionAlg::EdDsa, "edge-2026-11");
    let new = assertion_key(AssertionAlg::Es256, "edge-2026-12");
    let htu = format!("{}/base/public/x", origin.url());
    let before = keys_var(std::slice::from_ref(&old));
    let w = gateway(&issuer, &origin, &[("ASSERTION_KEYS", &before), ("ASSERTION_ISSUER", EDGE_ISSUER)], "gw-rotate-1");
    let signed_by_old = Received::of(&request(w.port, "GET", "/public/x", &[])).header("x-auth-assertion").unwrap();
    assert_eq!(jose_verify(&[case(&w, &origin, &signed_by_old, "GET", &htu)])[0]["header"]["alg"], "EdDSA");
    drop(w);

    // The new key first, the old one kept, published alone (as `assertion-key --keep` writes it).
    let after = keys_var(&[new.clone(), public_half(&old)]);
    let w = gateway(&issuer, &origin, &[("ASSERTION_KEYS", &after), ("ASSERTION_ISSUER", EDGE_ISSUER)], "gw-rotate-2");
    let signed_by_new = Received::of(&request(w.port, "GET", "/public/x", &[])).header("x-auth-assertion").unwrap();
    let results =
        jose_verify(&[case(&w, &origin, &signed_by_new, "GET", &htu), case(&w, &origin, &signed_by_old, "GET", &htu)]);
    assert_eq!(results[0]["header"]["kid"], "edge-2026-12", "{results:#?}");
    assert_eq!(results[1]["ok"], true, "an assertion the old key signed still verifies: {results:#?}");
    let kids: Vec<Value> = request(w.port, "GET", JWKS_PATH, &[]).json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, [json!("edge-2026-12"), json!("edge-2026-11")]);
}

#[test]
#[ignore = "needs the built worker and wrangler: run ./scripts/test.sh"]
fn a_bad_assertion_key_set_is_a_configuration_error_and_nothing_reaches_the_origin() {
    use edge_auth_dev_issuer::assertion::{assertion_key, AssertionAlg};
    let issuer = MockIssuer::start(&jwks(&[key(1)])).unwrap();
    let origin = MockOrigin::start().unwrap();
    let token = format!(
        "Bearer {}",
        Mint { scope: Some("read:orders".into()), ..Mint::new(&issuer.issuer(), AUDIENCE) }.sign(key(1))
    );
    // A key whose private half is not the published one's: WebCrypto imports it, and the probe
    // signature it makes does not verify with its public half (for Ed25519, BoringSSL takes any x).
    let mismatched = |alg: AssertionAlg| {
        let mut key = assertion_key(alg, "edge-1");
        key["x"] = assertion_key(alg, "other")["x"].clone();
        key
    };
    // A key set that does not parse (one member short), and two that parse but cannot sign.
    let mut unreadable = assertion_key(AssertionAlg::Es256, "edge-1");
    unreadable.as_object_mut().unwrap().remove("y");
    for (name, key) in [
        ("gw-assert-unreadable", unreadable),
        ("gw-assert-ec", mismatched(AssertionAlg::Es256)),
        ("gw-assert-ed", mismatched(AssertionAlg::EdDsa)),
    ] {
        let keys = keys_var(std::slice::from_ref(&key));
        let w = gateway(&issuer, &origin, &[("ASSERTION_KEYS", &keys), ("ASSERTION_ISSUER", EDGE_ISSUER)], name);
        for (path, authorization) in [("/public/x", None), ("/orders/1", Some(token.as_str())), ("/public/x", None)] {
            let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("Authorization", a)]).unwrap_or_default();
            let r = request(w.port, "GET", path, &headers);
            assert_eq!((r.status, r.error().as_str()), (500, "server_misconfigured"), "{name} {path}: {}", r.body);
            let description = r.json()["error_description"].as_str().unwrap_or_default().to_owned();
            assert!(description.starts_with("ASSERTION_KEYS is invalid"), "{name}: {description}");
            assert!(!r.body.contains("\"d\""), "{name}: {}", r.body);
        }
        assert_eq!(origin.hits(), 0, "{name}: forwarded without an assertion");
        w.expect_line("the misconfiguration", |line| {
            line["event"] == "misconfigured" && line["variable"] == "ASSERTION_KEYS"
        });
        assert!(!w.log().contains(key["d"].as_str().unwrap()), "{name}: key material in the log");
    }
}
