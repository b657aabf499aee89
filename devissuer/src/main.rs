//! `edge-auth-dev-issuer`: a local Auth0 stand-in, so the worker can be tried with real tokens
//! and no tenant.
//!
//!   edge-auth-dev-issuer serve [--port 8788] [--dir DIR] [--kid dev-key-1]
//!                              [--redirect-uris URL,URL] [--aud URI] [--m2m-scopes A,B]
//!   edge-auth-dev-issuer mint  [--scope "read:messages"] [--permissions a,b] [--aud URI]
//!                              [--exp SECONDS] [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788]
//!                              [--count N] [--kid dev-key-1] [--dpop-jkt THUMBPRINT]
//!   edge-auth-dev-issuer proof --method GET --url URL [--token TOKEN] [--nonce NONCE] [--dir DIR]
//!                              [--count N]
//!   edge-auth-dev-issuer jkt [--dir DIR]   (the thumbprint of the key `proof` signs with)
//!   edge-auth-dev-issuer assertion-key [--alg EdDSA|ES256] [--kid K] [--keep JWKS]
//!                              (a key for the worker's ASSERTION_KEYS, as a `wrangler secret put` line)
//!   edge-auth-dev-issuer origin [--port 8790]   (an echo origin API for trying the gateway)
//!   edge-auth-dev-issuer pages --dir DIR [--port 8790]   (static files, for the demo page)
//!
//! `serve` is a local Auth0 look-alike (oauth.rs): login page, /authorize, /oauth/token, /userinfo,
//! /v2/logout, for the URLs --redirect-uris allows; RFC 8414 metadata and /oidc/register for MCP clients;
//! client_credentials for the M2M client (edge-auth-dev-m2m, secret edge-auth-dev-m2m-secret).
//!
//! The signing key is made on first use and kept (PKCS#8 PEM) under --dir (by default the
//! repository's `.dev-issuer/`, which git ignores, whatever directory a command runs in); so is the
//! EC P-256 key `proof` makes DPoP proofs with (dpop-key.pem). A new key is announced on stderr.
//! `--kid` names it (default `dev-key-1`): two key dirs under two kids make a key rotation, and a
//! token minted under a kid its issuer does not publish is signed by a real key all the same.

use std::{
    collections::HashMap,
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use edge_auth_dev_issuer::{
    dpop::{self, ClientKey, ProofClaims},
    oauth::{default_m2m_scopes, DEV_CLIENT_ID, M2M_CLIENT_ID, M2M_CLIENT_SECRET},
    server::MockIssuer,
    sign, unix_now, Mint, SigningKey,
};
use serde_json::json;

const DEFAULT_PORT: &str = "8788";
const DEFAULT_AUDIENCE: &str = "https://edge-auth.local/api";
const KID: &str = "dev-key-1";
/// Enough for a benchmark's worth of distinct tokens, small enough to stay a typo guard.
const MAX_COUNT: usize = 1_000_000;

const USAGE: &str = "usage:
  edge-auth-dev-issuer serve [--port 8788] [--dir DIR] [--kid dev-key-1]
                             [--redirect-uris URL,URL]  (where /authorize and /v2/logout may send a browser)
                             [--aud URI]  (the audience when a request names neither audience nor resource)
                             [--m2m-scopes A,B]  (what edge-auth-dev-m2m may be granted;
                                                  default mcp:tools,read:messages,repo:admin)
  edge-auth-dev-issuer mint [--scope SCOPES] [--permissions A,B] [--aud URI] [--exp SECONDS]
                            [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788] [--dir DIR]
                            [--count N]  (N distinct tokens, one a line)
                            [--kid dev-key-1]  (the kid the key is published and minted under)
                            [--dpop-jkt THUMBPRINT]  (a DPoP-bound token: cnf.jkt)
  edge-auth-dev-issuer proof --method GET --url URL [--token TOKEN] [--nonce NONCE] [--dir DIR]
                             [--count N]  (N proofs, one a line, each with its own jti)
                             (an ES256 DPoP proof made with the local key in --dir)
  edge-auth-dev-issuer jkt [--dir DIR]  (that key's RFC 7638 thumbprint, for mint --dpop-jkt)
  edge-auth-dev-issuer assertion-key [--alg EdDSA|ES256] [--kid edge-YYYY-MM-DD]
                                     [--keep JWKS]  (the JWKS the worker serves now, to rotate: its
                                                     keys stay published after the new one)
                                     (prints the line that stores a new key as ASSERTION_KEYS)
  edge-auth-dev-issuer origin [--port 8790]  (an origin API that answers with what it received)
  edge-auth-dev-issuer pages --dir DIR [--port 8790]  (serves the files in DIR, for the demo page)
--dir DIR: where the keys are kept (default: the repository's .dev-issuer/, from any directory)";

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
    // The repository's .dev-issuer/ unless --dir says otherwise, and absolute from here on: a command
    // run from another directory signs with the same keys (a relative default made a new key there,
    // and its tokens were refused), and every message names the folder wherever it was run from.
    let dir = match flags.get("dir") {
        Some(dir) => std::path::absolute(dir).map_err(|e| format!("--dir: {e}"))?,
        None => default_dir(),
    };
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
    if command == "pages" {
        only_known(&flags, &["port", "dir"])?;
        let port = flag("port", "8790");
        let root = flags.get("dir").ok_or("pages needs --dir")?;
        let pages = edge_auth_dev_issuer::pages::Pages::bind(&format!("127.0.0.1:{port}"), Path::new(root))
            .map_err(|e| format!("cannot serve {root} on 127.0.0.1:{port}: {e}"))?;
        println!("pages: {} (the files in {root})", pages.url());
        loop {
            std::thread::park();
        }
    }
    if command == "proof" || command == "jkt" {
        return dpop_command(command, &flags, &dir);
    }
    if command == "assertion-key" {
        return assertion_key_command(&flags);
    }
    let key = load_or_create_key(&dir, &flag("kid", KID))?;
    match command.as_str() {
        "serve" => {
            only_known(&flags, &["port", "dir", "kid", "redirect-uris", "aud", "m2m-scopes"])?;
            let redirect_uris: Vec<String> = match flags.get("redirect-uris") {
                None => Vec::new(),
                Some(list) => list.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            };
            if let Some(bad) = redirect_uris.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(format!("--redirect-uris takes absolute http(s) URLs; {bad:?} is not one"));
            }
            let m2m_scopes = m2m_scopes_flag(flags.get("m2m-scopes").map(String::as_str))?;
            let audience = flag("aud", DEFAULT_AUDIENCE);
            let server = MockIssuer::bind_provider_with_m2m_scopes(
                &format!("127.0.0.1:{port}"),
                &key,
                &audience,
                &redirect_uris,
                &m2m_scopes,
            )
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
            println!("dev issuer: {} (JWKS at {})", server.issuer(), server.jwks_url());
            println!("  signing key kept in {} (--dir)", dir.display());
            println!(
                "  login for client id {DEV_CLIENT_ID}, redirects allowed to: {}",
                if redirect_uris.is_empty() { "none (--redirect-uris)".to_owned() } else { redirect_uris.join(", ") }
            );
            println!(
                "  MCP clients: metadata at {}.well-known/oauth-authorization-server, register at {}oidc/register",
                server.issuer(),
                server.issuer()
            );
            println!(
                "  M2M client {M2M_CLIENT_ID}, secret {M2M_CLIENT_SECRET}: client_credentials for {}",
                if m2m_scopes.is_empty() { "no scopes".to_owned() } else { m2m_scopes.join(" ") }
            );
            loop {
                std::thread::park();
            }
        }
        "mint" => {
            let known =
                ["scope", "permissions", "aud", "exp", "nbf", "sub", "iss", "port", "dir", "count", "kid", "dpop-jkt"];
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
            let jkt = flags.get("dpop-jkt").map(|j| jkt_flag(j)).transpose()?;
            let claims = || {
                let mut claims = mint.claims();
                if let Some(jkt) = &jkt {
                    claims["cnf"] = json!({ "jkt": jkt });
                }
                claims
            };
            let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid });
            if count == 1 {
                println!("{}", sign(&header, &claims(), &key));
                return Ok(());
            }
            // RS256 signatures are deterministic, so equal claims would give equal tokens: each
            // token gets its own `jti` to make all of them distinct.
            let mut out = BufWriter::new(std::io::stdout().lock());
            for i in 0..count {
                let mut claims = claims();
                claims["jti"] = json!(format!("mint-{}-{i}", mint.now));
                writeln!(out, "{}", sign(&header, &claims, &key)).map_err(|e| format!("cannot write: {e}"))?;
            }
            out.flush().map_err(|e| format!("cannot write: {e}"))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// `proof` and `jkt`: the client side of DPoP, with a key kept in `dir` so that a token bound to its
/// thumbprint can be used from a shell across many calls.
fn dpop_command(command: &str, flags: &HashMap<String, String>, dir: &Path) -> Result<(), String> {
    let key = load_or_create_client_key(dir)?;
    if command == "jkt" {
        only_known(flags, &["dir"])?;
        println!("{}", key.thumbprint());
        return Ok(());
    }
    only_known(flags, &["method", "url", "token", "nonce", "dir", "count"])?;
    let method = flags.get("method").ok_or("proof needs --method (GET, POST, ...)")?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("--method takes an HTTP method in capitals, as the request sends it".into());
    }
    let url = flags.get("url").ok_or("proof needs --url, the URL the request goes to")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("--url takes an absolute http(s) URL".into());
    }
    let count = match flags.get("count") {
        None => 1,
        Some(n) => n.parse().ok().filter(|n| (1..=MAX_COUNT).contains(n)).ok_or("--count takes 1 to 1000000")?,
    };
    // Many proofs (a benchmark's worth, each good once): one a line, each with its own jti.
    let mut out = BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let claims = ProofClaims {
            method,
            url,
            access_token: flags.get("token").map(String::as_str),
            nonce: flags.get("nonce").map(String::as_str),
            iat: unix_now(),
            jti: dpop::random_jti(),
        };
        writeln!(out, "{}", dpop::make_proof(&key, &claims)).map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(())
}

/// `assertion-key`: a new private JWK for the worker's `ASSERTION_KEYS`, printed as the shell line
/// that stores it (stdout, so that it can be run or piped as is); what to do with it on stderr.
/// The key is kept nowhere else: the secret is its only copy.
fn assertion_key_command(flags: &HashMap<String, String>) -> Result<(), String> {
    use edge_auth_dev_issuer::assertion::{self, AssertionAlg};
    only_known(flags, &["alg", "kid", "keep"])?;
    // Ed25519 by default: WebCrypto signs with it in about a third of ES256's CPU at the edge
    // (docs/assertion.md, "What it costs"), and every library the docs show verifies both.
    let alg = match flags.get("alg") {
        None => AssertionAlg::EdDsa,
        Some(name) => AssertionAlg::parse(name).ok_or("--alg takes EdDSA or ES256")?,
    };
    let kid = flags.get("kid").cloned().unwrap_or_else(|| format!("edge-{}", date(unix_now())));
    if !assertion::usable_kid(&kid) {
        return Err("--kid takes 1 to 128 printable ASCII characters without spaces, quotes or backslashes".into());
    }
    let served = match flags.get("keep") {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|_| "--keep takes the JWKS the worker serves, as JSON text")?,
        ),
    };
    let new = assertion::assertion_key(alg, &kid);
    let keys = assertion::rotated(new.clone(), served.as_ref())?;
    println!("{}", assertion::secret_put_line(&keys));
    let name = match alg {
        AssertionAlg::Es256 => "ES256 (EC P-256)",
        AssertionAlg::EdDsa => "EdDSA (Ed25519)",
    };
    eprintln!("edge-auth-dev-issuer: a new {name} key, kid {kid}; it signs every assertion once the secret is put.");
    eprintln!("  The secret cannot be read back: keep this key's JSON where you keep secrets, rotating needs it.");
    if keys.as_array().map_or(0, Vec::len) > 1 {
        eprintln!("  The kept keys stay published, so assertions they signed still verify. Once those have expired");
        eprintln!("  (ASSERTION_TTL_SECONDS, at most 300 s), retire them:");
        eprintln!("  {}", assertion::secret_put_line(&serde_json::Value::Array(vec![new])));
    } else {
        eprintln!("  Set ASSERTION_ISSUER too. To rotate, run this again with");
        eprintln!("  --keep \"$(curl -s https://YOUR-API/.well-known/edge-auth/jwks.json)\"");
    }
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time (UTC), for a kid that says when its key was made.
fn date(unix: i64) -> String {
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `--m2m-scopes a,b`: OAuth scope tokens (RFC 6749 §3.3: printable ASCII but space, `"` and `\`); an empty
/// value grants nothing.
fn m2m_scopes_flag(value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(value) = value else { return Ok(default_m2m_scopes()) };
    let scopes: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    match scopes.iter().find(|s| !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        Some(bad) => Err(format!("--m2m-scopes takes scope names separated by commas; {bad:?} is not one")),
        None => Ok(scopes),
    }
}

/// A thumbprint is a base64url SHA-256: 43 characters. Anything else is a paste error.
fn jkt_flag(value: &str) -> Result<String, String> {
    let ok = value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| value.to_owned())
        .ok_or("--dpop-jkt takes an RFC 7638 SHA-256 thumbprint (43 base64url characters)".into())
}

fn load_or_create_client_key(dir: &Path) -> Result<ClientKey, String> {
    let path = dir.join("dpop-key.pem");
    if let Ok(pem) = fs::read_to_string(&path) {
        return ClientKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = ClientKey::generate();
    fs::write(&path, key.to_pem()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Said on stderr: a new key means tokens bound to an earlier one (another --dir) are refused.
    eprintln!("edge-auth-dev-issuer: made a new DPoP key in {}", path.display());
    Ok(key)
}

/// `.dev-issuer/` at the top of the repository this binary was built from (git ignores it).
fn default_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).join(".dev-issuer")
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
    eprintln!("edge-auth-dev-issuer: made a new signing key in {}", path.display());
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_auth_dev_issuer::oauth::DEFAULT_M2M_SCOPES;

    #[test]
    fn a_kid_made_today_names_the_date() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_767_225_600), "2026-01-01");
        assert_eq!(date(1_709_164_800), "2024-02-29");
        assert_eq!(date(1_796_690_234), "2026-12-08");
    }

    #[test]
    fn m2m_scopes_flag_takes_scope_names_separated_by_commas() {
        assert_eq!(m2m_scopes_flag(None).unwrap(), DEFAULT_M2M_SCOPES);
        assert_eq!(m2m_scopes_flag(Some("mcp:tools, read:messages,")).unwrap(), ["mcp:tools", "read:messages"]);
        assert!(m2m_scopes_flag(Some("")).unwrap().is_empty());
        for bad in ["two words", "quo\"te", "back\\slash", "tab\tbed"] {
            assert!(m2m_scopes_flag(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
