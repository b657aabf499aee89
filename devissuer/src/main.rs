//! `edge-auth-dev-issuer`: a local Auth0 stand-in, so the worker can be tried with real tokens
//! and no tenant.
//!
//!   edge-auth-dev-issuer serve [--port 8788] [--dir .dev-issuer]
//!   edge-auth-dev-issuer mint  [--scope "read:messages"] [--permissions a,b] [--aud URI]
//!                              [--exp SECONDS] [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788]
//!
//! The signing key is made on first use and kept (PKCS#8 PEM) under --dir, which git ignores.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use edge_auth_dev_issuer::{jwks, server::MockIssuer, Mint, SigningKey};

const DEFAULT_PORT: &str = "8788";
const DEFAULT_AUDIENCE: &str = "https://edge-auth.local/api";
const KID: &str = "dev-key-1";

const USAGE: &str = "usage:
  edge-auth-dev-issuer serve [--port 8788] [--dir .dev-issuer]
  edge-auth-dev-issuer mint [--scope SCOPES] [--permissions A,B] [--aud URI] [--exp SECONDS]
                            [--nbf SECONDS] [--sub ID] [--iss URL] [--port 8788] [--dir .dev-issuer]";

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
    let key = load_or_create_key(&dir)?;
    match command.as_str() {
        "serve" => {
            only_known(&flags, &["port", "dir"])?;
            let server = MockIssuer::bind(&format!("127.0.0.1:{port}"), &jwks(&[&key]))
                .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
            println!("dev issuer: {} (JWKS at {})", server.issuer(), server.jwks_url());
            loop {
                std::thread::park();
            }
        }
        "mint" => {
            only_known(&flags, &["scope", "permissions", "aud", "exp", "nbf", "sub", "iss", "port", "dir"])?;
            let issuer = flag("iss", &format!("http://127.0.0.1:{port}/"));
            let mut mint = Mint::new(&issuer, &flag("aud", DEFAULT_AUDIENCE));
            mint.scope = flags.get("scope").cloned();
            mint.permissions = flags.get("permissions").map(|p| p.split(',').map(str::to_owned).collect());
            mint.expires_in = number(&flag("exp", "3600"), "--exp")?;
            mint.not_before_in = flags.get("nbf").map(|n| number(n, "--nbf")).transpose()?;
            if let Some(sub) = flags.get("sub") {
                mint.subject = sub.clone();
            }
            println!("{}", mint.sign(&key));
            Ok(())
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

fn load_or_create_key(dir: &Path) -> Result<SigningKey, String> {
    let path = dir.join("signing-key.pem");
    if let Ok(pem) = fs::read_to_string(&path) {
        return SigningKey::from_pem(KID, &pem).map_err(|e| format!("{}: {e}", path.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = SigningKey::generate(KID, 2048);
    fs::write(&path, key.to_pem()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}
