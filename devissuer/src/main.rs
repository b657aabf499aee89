//! `edge-auth-dev-issuer`: a local Auth0 stand-in, so the worker can be tried with real tokens
//! and no tenant.
//!
//!   edge-auth-dev-issuer serve [--port 8788] [--dir .dev-issuer] [--kid dev-key-1]
//!   edge-auth-dev-issuer mint  [--scope "read:messages"] [--permissions a,b] [--aud URI]
//!                              [--exp SECONDS] [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788]
//!                              [--count N] [--kid dev-key-1]
//!   edge-auth-dev-issuer origin [--port 8790]   (an echo origin API for trying the gateway)
//!
//! The signing key is made on first use and kept (PKCS#8 PEM) under --dir, which git ignores.
//! `--kid` names it (default `dev-key-1`): two key dirs under two kids make a key rotation, and a
//! token minted under a kid its issuer does not publish is signed by a real key all the same.

use std::{
    collections::HashMap,
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use edge_auth_dev_issuer::{jwks, server::MockIssuer, sign, Mint, SigningKey};
use serde_json::json;

const DEFAULT_PORT: &str = "8788";
const DEFAULT_AUDIENCE: &str = "https://edge-auth.local/api";
const KID: &str = "dev-key-1";
/// Enough for a benchmark's worth of distinct tokens, small enough to stay a typo guard.
const MAX_COUNT: usize = 1_000_000;

const USAGE: &str = "usage:
  edge-auth-dev-issuer serve [--port 8788] [--dir .dev-issuer] [--kid dev-key-1]
  edge-auth-dev-issuer mint [--scope SCOPES] [--permissions A,B] [--aud URI] [--exp SECONDS]
                            [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788] [--dir .dev-issuer]
                            [--count N]  (N distinct tokens, one a line)
                            [--kid dev-key-1]  (the kid the key is published and minted under)
  edge-auth-dev-issuer origin [--port 8790]  (an origin API that answers with what it received)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edge-auth-dev-issuer: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or("a command is required")?;
    let flags = parse_flags(rest)?;
    let flag = |name: &str, default: &str| flags.get(name).cloned().unwrap_or_else(|| default.to_owned());
    let dir = PathBuf::from(flag("dir", ".dev-issuer"));
    let port = flag("port", DEFAULT_PORT);
    if command == "origin" {
        only_known(&flags, &["port"])?;
        let port = flag("port", "8790");
        let origin = edge_auth_dev_issuer::origin::MockOrigin::bind(&format!("127.0.0.1:{port}"))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        println!("echo origin: {} (answers every request with what it received)", origin.url());
        loop {
            std::thread::park();
        }
    }
    let key = load_or_create_key(&dir, &flag("kid", KID))?;
    match command.as_str() {
        "serve" => {
            only_known(&flags, &["port", "dir", "kid"])?;
            let server = MockIssuer::bind(&format!("127.0.0.1:{port}"), &jwks(&[&key]))
                .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
            println!("dev issuer: {} (JWKS at {})", server.issuer(), server.jwks_url());
            loop {
                std::thread::park();
            }
        }
        "mint" => {
            let known = ["scope", "permissions", "aud", "exp", "nbf", "sub", "iss", "port", "dir", "count", "kid"];
            only_known(&flags, &known)?;
            let issuer = flag("iss", &format!("http://127.0.0.1:{port}/"));
            let mut mint = Mint::new(&issuer, &flag("aud", DEFAULT_AUDIENCE));
            mint.scope = flags.get("scope").cloned();
            mint.permissions = flags.get("permissions").map(|p| p.split(',').map(str::to_owned).collect());
            mint.expires_in = number(&flag("exp", "3600"), "--exp")?;
            mint.not_before_in = flags.get("nbf").map(|n| number(n, "--nbf")).transpose()?;
            if let Some(sub) = flags.get("sub") {
                mint.subject = sub.clone();
            }
            let count = match flags.get("count") {
                None => 1,
                Some(n) => {
                    n.parse().ok().filter(|n| (1..=MAX_COUNT).contains(n)).ok_or("--count takes 1 to 1000000")?
                }
            };
            if count == 1 {
                println!("{}", mint.sign(&key));
                return Ok(());
            }
            // RS256 signatures are deterministic, so equal claims would give equal tokens: each
            // token gets its own `jti` to make all of them distinct.
            let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid });
            let mut out = BufWriter::new(std::io::stdout().lock());
            for i in 0..count {
                let mut claims = mint.claims();
                claims["jti"] = json!(format!("mint-{}-{i}", mint.now));
                writeln!(out, "{}", sign(&header, &claims, &key)).map_err(|e| format!("cannot write: {e}"))?;
            }
            out.flush().map_err(|e| format!("cannot write: {e}"))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg.strip_prefix("--").ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name.to_owned(), value.clone());
    }
    Ok(flags)
}

fn only_known(flags: &HashMap<String, String>, known: &[&str]) -> Result<(), String> {
    match flags.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(format!("unknown option --{unknown}")),
        None => Ok(()),
    }
}

fn number(value: &str, name: &str) -> Result<i64, String> {
    value.parse().map_err(|_| format!("{name} takes a whole number of seconds"))
}

fn load_or_create_key(dir: &Path, kid: &str) -> Result<SigningKey, String> {
    if kid.is_empty() {
        return Err("--kid takes a non-empty key id".into());
    }
    let path = dir.join("signing-key.pem");
    if let Ok(pem) = fs::read_to_string(&path) {
        return SigningKey::from_pem(kid, &pem).map_err(|e| format!("{}: {e}", path.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = SigningKey::generate(kid, 2048);
    fs::write(&path, key.to_pem()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}
