//! A JWKS endpoint on 127.0.0.1 that counts its hits and can be told to fail, for the dev issuer
//! and the end-to-end tests; with a `Provider`, also the Auth0 look-alike endpoints (oauth.rs). One
//! thread per connection, `Connection: close`: it serves a handful of requests, not traffic.

use std::{
    io::{self, BufRead, BufReader, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::{
    jwks,
    oauth::{default_m2m_scopes, Provider, Request, Response, Settings},
    unix_now, SigningKey,
};

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Where `Mode::Redirect` points: a path that serves the JWKS too, so following it would "work".
pub const REDIRECT_TARGET: &str = "/moved/jwks.json";

/// How the JWKS endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Serve,
    /// Accept, then drop the connection: what an unreachable issuer looks like to a client.
    Down,
    /// 200 with a body that is not a JWKS.
    Garbage,
    Status(u16),
    /// Answer after this long: a distant issuer, or, past the client's timeout, a hung one.
    Delay(Duration),
    /// 302 to another path of this server, which serves the JWKS: a client must not follow it.
    Redirect,
    /// 200 with a well-formed JWKS padded past 64 KiB.
    Oversized,
    /// 200 with JSON nested 10,000 arrays deep.
    Deep,
    /// Headers promising more body than is sent, then the connection closes mid-body.
    Truncated,
    /// Headers and half the body, then nothing more for this long, the connection held open: an
    /// issuer that stalls mid-body (a client's timeout must cover the body too).
    StallBody(Duration),
}

struct Shared {
    jwks: Mutex<String>,
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    /// Requests for any other path (a followed redirect would land here).
    other_hits: AtomicUsize,
    stopped: AtomicBool,
    /// The login, token and logout endpoints; without one, every other path is a 404.
    provider: Option<Mutex<Provider>>,
}

pub struct MockIssuer {
    port: u16,
    shared: Arc<Shared>,
}

impl MockIssuer {
    /// Listens on an ephemeral loopback port.
    pub fn start(jwks: &Value) -> io::Result<MockIssuer> {
        Self::bind("127.0.0.1:0", jwks)
    }

    pub fn bind(address: &str, jwks: &Value) -> io::Result<MockIssuer> {
        Self::listen(TcpListener::bind(address)?, jwks, None)
    }

    /// The JWKS and the Auth0 look-alike endpoints, signing with `key`. `redirect_uris` is the allow-list
    /// for `/authorize` and `/v2/logout`; the issuer is `http://127.0.0.1:PORT/` for the port bound.
    pub fn bind_provider(
        address: &str,
        key: &SigningKey,
        default_audience: &str,
        redirect_uris: &[String],
    ) -> io::Result<MockIssuer> {
        Self::bind_provider_with_m2m_scopes(address, key, default_audience, redirect_uris, &default_m2m_scopes())
    }

    /// As `bind_provider`, with the scopes the M2M client may be granted (`serve --m2m-scopes`).
    pub fn bind_provider_with_m2m_scopes(
        address: &str,
        key: &SigningKey,
        default_audience: &str,
        redirect_uris: &[String],
        m2m_scopes: &[String],
    ) -> io::Result<MockIssuer> {
        let listener = TcpListener::bind(address)?;
        let settings = Settings {
            issuer: format!("http://127.0.0.1:{}/", listener.local_addr()?.port()),
            client_id: crate::oauth::DEV_CLIENT_ID.into(),
            default_audience: default_audience.into(),
            redirect_uris: redirect_uris.to_vec(),
            m2m_scopes: m2m_scopes.to_vec(),
        };
        let provider = Provider::new(settings, key.clone());
        Self::listen(listener, &jwks(&[key]), Some(provider))
    }

    fn listen(listener: TcpListener, jwks: &Value, provider: Option<Provider>) -> io::Result<MockIssuer> {
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            jwks: Mutex::new(jwks.to_string()),
            mode: Mutex::new(Mode::Serve),
            hits: AtomicUsize::new(0),
            other_hits: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            provider: provider.map(Mutex::new),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(MockIssuer { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The issuer identifier (`iss`) tokens from this issuer carry.
    pub fn issuer(&self) -> String {
        format!("{}/", self.origin())
    }

    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.origin())
    }

    pub fn set_jwks(&self, jwks: &Value) {
        *self.shared.jwks.lock().unwrap() = jwks.to_string();
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Requests for the JWKS so far, failed ones included.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Requests for any other path.
    pub fn other_hits(&self) -> usize {
        self.shared.other_hits.load(Ordering::SeqCst)
    }
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    // Head and body go out as separate writes: without this, Nagle's algorithm holds the body back
    // until the client's delayed ACK (tens of ms) and every answer looks slow.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&mut BufReader::new(stream.try_clone()?))?;
    let (method, path) = (request.method.as_str(), request.path.as_str());
    if method != "GET" || path != JWKS_PATH {
        shared.other_hits.fetch_add(1, Ordering::SeqCst);
        if let Some(provider) = &shared.provider {
            let response = provider.lock().unwrap().handle(&request, unix_now(), &mut rand::thread_rng());
            return write_response(stream, &response);
        }
        if path == REDIRECT_TARGET {
            let body = shared.jwks.lock().unwrap().clone();
            return respond(stream, 200, "application/json", &body);
        }
        return respond(stream, 404, "application/json", r#"{"error":"not_found"}"#);
    }
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let mode = shared.mode.lock().unwrap().clone();
    match mode {
        Mode::Serve => {
            let body = shared.jwks.lock().unwrap().clone();
            respond(stream, 200, "application/json", &body)
        }
        Mode::Down => stream.shutdown(Shutdown::Both),
        Mode::Garbage => respond(stream, 200, "application/json", "<html>this is not a key set</html>"),
        Mode::Status(code) => respond(stream, code, "text/plain", "issuer error"),
        Mode::Delay(duration) => {
            thread::sleep(duration);
            let body = shared.jwks.lock().unwrap().clone();
            respond(stream, 200, "application/json", &body)
        }
        Mode::Redirect => {
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: {REDIRECT_TARGET}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes())?;
            stream.flush()
        }
        Mode::Oversized => {
            let jwks = shared.jwks.lock().unwrap().clone();
            let padding = "x".repeat(70 * 1024);
            let body = format!("{{\"padding\":\"{padding}\",{}", jwks.trim_start_matches('{'));
            respond(stream, 200, "application/json", &body)
        }
        Mode::Deep => {
            let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
            respond(stream, 200, "application/json", &body)
        }
        Mode::Truncated => {
            let mut stream = stream;
            let body = shared.jwks.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len() * 2
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body.as_bytes()[..body.len() / 2])?;
            stream.flush()?;
            stream.shutdown(Shutdown::Both)
        }
        Mode::StallBody(stall) => {
            let mut stream = stream;
            let body = shared.jwks.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body.as_bytes()[..body.len() / 2])?;
            stream.flush()?;
            std::thread::sleep(stall);
            stream.shutdown(Shutdown::Both)
        }
    }
}

fn respond(mut stream: TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Enough for a token request or a form; anything larger is refused unread.
const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

fn read_request(reader: &mut impl BufRead) -> io::Result<Request> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, "request too large");
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request { method: method.into(), path: path.into(), query: query.into(), ..Request::default() };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if request.headers.len() == MAX_HEADERS {
            return Err(too_big());
        }
        if let Some((name, value)) = line.split_once(':') {
            request.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length = request.header("content-length").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
    if length > MAX_BODY {
        return Err(too_big());
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(request)
}

fn write_response(mut stream: TcpStream, response: &Response) -> io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", response.status, response.body.len());
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_with_its_headers_and_body() {
        let raw = "POST /oauth/token?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8788\r\nContent-Type: application/x-www-form-urlencoded\r\nDPoP: p1\r\ndpop: p2\r\nContent-Length: 9\r\n\r\ncode=abcdEXTRA";
        let request = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!(
            (request.method.as_str(), request.path.as_str(), request.query.as_str()),
            ("POST", "/oauth/token", "a=1")
        );
        assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(request.headers.iter().filter(|(n, _)| n == "dpop").count(), 2);
        assert_eq!(request.body, b"code=abcd");
    }

    #[test]
    fn an_oversized_request_is_refused_unread() {
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(read_request(&mut big.as_bytes()).is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert!(read_request(&mut format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).is_err());
    }

    #[test]
    fn the_provider_answers_over_the_socket_and_the_jwks_still_counts() {
        let key = SigningKey::generate("k", 2048);
        let issuer =
            MockIssuer::bind_provider("127.0.0.1:0", &key, "https://api", &["http://127.0.0.1:1/".into()]).unwrap();
        let get = |path: &str| {
            let mut stream = TcpStream::connect(("127.0.0.1", issuer.port())).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", issuer.port()).unwrap();
            let mut answer = String::new();
            io::Read::read_to_string(&mut stream, &mut answer).unwrap();
            answer
        };
        let discovery = get("/.well-known/openid-configuration");
        assert!(discovery.starts_with("HTTP/1.1 200"), "{discovery}");
        assert!(discovery.contains(&format!("\"issuer\":\"{}\"", issuer.issuer())));
        assert!(get(JWKS_PATH).contains("\"kid\":\"k\""));
        assert_eq!(issuer.hits(), 1);
    }

    /// One request over a fresh connection: status, headers (names in lower case) and body.
    fn http(
        port: u16,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Vec<(String, String)>, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}").unwrap();
        let mut answer = String::new();
        io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn json_of(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    fn claims_of(jwt: &str) -> Value {
        use base64ct::{Base64UrlUnpadded, Encoding};
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    /// What the MCP SDK's OAuth client does against an authorization server `http://127.0.0.1:PORT/`:
    /// RFC 8414 metadata (the first URL it tries), registration, /authorize with PKCE and `resource` (signed in
    /// by `login_hint`), the code exchange and a refresh, both with `resource`; then its ClientCredentialsProvider
    /// (HTTP Basic). Bad input on the wire gets its error and issues nothing.
    #[test]
    fn an_mcp_client_discovers_registers_logs_in_and_an_m2m_client_gets_a_token_over_http() {
        use crate::oauth::{parse_form, M2M_CLIENT_ID, M2M_CLIENT_SECRET};
        use base64ct::{Base64, Base64UrlUnpadded, Encoding};
        use sha2::{Digest, Sha256};

        let key = SigningKey::generate("k", 2048);
        let issuer = MockIssuer::bind_provider_with_m2m_scopes(
            "127.0.0.1:0",
            &key,
            "https://api",
            &[],
            &["mcp:tools".into(), "read:messages".into()],
        )
        .unwrap();
        let port = issuer.port();
        let base = issuer.issuer();
        let resource = "http://127.0.0.1:8787/mcp";
        let callback = "http://localhost:33418/callback";
        // As URLSearchParams sends them: all but the unreserved characters percent-encoded.
        let enc = |v: &str| -> String {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };

        let (status, headers, body) = http(
            port,
            "GET",
            "/.well-known/oauth-authorization-server",
            &[("MCP-Protocol-Version", "2025-11-25"), ("Accept", "application/json")],
            "",
        );
        assert_eq!(status, 200, "{body}");
        assert!(headers.iter().any(|(n, v)| n == "content-type" && v == "application/json"));
        let metadata = json_of(&body);
        assert_eq!(metadata["issuer"], base);
        let registration = metadata["registration_endpoint"].as_str().unwrap();
        assert_eq!(registration, format!("{base}oidc/register"));
        let path_of = |url: &str| url.strip_prefix(base.trim_end_matches('/')).unwrap().to_owned();

        let json = [("Content-Type", "application/json")];
        let refused =
            http(port, "POST", &path_of(registration), &json, r#"{"redirect_uris":["http://evil.example/cb"]}"#);
        assert_eq!((refused.0, json_of(&refused.2)["error"].as_str()), (400, Some("invalid_redirect_uri")));
        let client = format!(
            r#"{{"client_name":"MCP test","redirect_uris":["{callback}"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","scope":"openid offline_access mcp:tools"}}"#
        );
        let (status, _, body) = http(port, "POST", &path_of(registration), &json, &client);
        assert_eq!(status, 201, "{body}");
        let client_id = json_of(&body)["client_id"].as_str().unwrap().to_owned();

        let verifier = "mcp-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
        let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
        let authorize = |resource: &str| {
            let params = [
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("redirect_uri", callback),
                ("state", "s1"),
                ("scope", "openid offline_access mcp:tools"),
                ("prompt", "consent"),
                ("resource", resource),
                ("login_hint", "dev-user|1"),
            ];
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
            let (status, headers, body) = http(port, "GET", &format!("/authorize?{}", query.join("&")), &[], "");
            assert_eq!(status, 302, "{body}");
            let location = headers.iter().find(|(n, _)| n == "location").unwrap().1.clone();
            assert!(location.starts_with(&format!("{callback}?")), "{location}");
            parse_form(location.split_once('?').unwrap().1)
        };
        assert_eq!(authorize("not-absolute")["error"], "invalid_target");
        let code = authorize(resource)["code"].clone();

        let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")];
        let exchange = format!(
            "grant_type=authorization_code&code={code}&code_verifier={verifier}&redirect_uri={}&resource={}&client_id={client_id}",
            enc(callback),
            enc(resource)
        );
        let (status, _, body) = http(port, "POST", "/oauth/token", &form, &exchange);
        assert_eq!(status, 200, "{body}");
        let tokens = json_of(&body);
        let access = claims_of(tokens["access_token"].as_str().unwrap());
        assert_eq!((access["aud"].as_str(), access["azp"].as_str()), (Some(resource), Some(client_id.as_str())));
        assert_eq!(access["iss"], base);

        let refresh = |resource: &str, token: &str| {
            let body = format!(
                "grant_type=refresh_token&refresh_token={token}&resource={}&client_id={client_id}",
                enc(resource)
            );
            http(port, "POST", "/oauth/token", &form, &body)
        };
        let refresh_token = tokens["refresh_token"].as_str().unwrap();
        let (status, _, body) = refresh("https://elsewhere.example/", refresh_token);
        assert_eq!((status, json_of(&body)["error"].as_str()), (400, Some("invalid_target")));
        let (status, _, body) = refresh(resource, refresh_token);
        assert_eq!(status, 200, "{body}");
        assert_eq!(claims_of(json_of(&body)["access_token"].as_str().unwrap())["aud"], resource);

        let basic =
            |secret: &str| format!("Basic {}", Base64::encode_string(format!("{M2M_CLIENT_ID}:{secret}").as_bytes()));
        let cc = format!("grant_type=client_credentials&scope=mcp%3Atools&resource={}", enc(resource));
        let wrong = basic("nope");
        let (status, headers, body) = http(port, "POST", "/oauth/token", &[form[0], ("Authorization", &wrong)], &cc);
        assert_eq!((status, json_of(&body)["error"].as_str()), (401, Some("invalid_client")));
        assert!(headers.iter().any(|(n, v)| n == "www-authenticate" && v.starts_with("Basic")));
        let right = basic(M2M_CLIENT_SECRET);
        let denied = "grant_type=client_credentials&scope=repo%3Aadmin";
        let (status, _, body) = http(port, "POST", "/oauth/token", &[form[0], ("Authorization", &right)], denied);
        assert_eq!((status, json_of(&body)["error"].as_str()), (403, Some("access_denied")));
        let (status, _, body) = http(port, "POST", "/oauth/token", &[form[0], ("Authorization", &right)], &cc);
        assert_eq!(status, 200, "{body}");
        let access = claims_of(json_of(&body)["access_token"].as_str().unwrap());
        assert_eq!(
            (access["sub"].as_str(), access["aud"].as_str(), access["scope"].as_str(), access["gty"].as_str()),
            (Some("edge-auth-dev-m2m@clients"), Some(resource), Some("mcp:tools"), Some("client-credentials"))
        );
    }
}
