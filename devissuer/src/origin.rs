//! A stand-in origin API on 127.0.0.1 for the gateway: it answers every request with what it
//! received (method, target, headers, body length and SHA-256), so a test or a newcomer can see
//! exactly what the edge forwarded. A few paths misbehave on purpose (under any base path):
//!
//! - `/__status/NNN`: answers status NNN.
//! - `/__cookies`: two `Set-Cookie` headers.
//! - `/__redirect`: 302 to `/elsewhere` (a gateway must hand it back, not follow it).
//! - `/__slow/MS`: answers after MS milliseconds.
//! - `/__reset`: reads the request, then closes the connection without answering.
//! - `/__cors`: CORS headers of its own (`Access-Control-Allow-Origin: *` with credentials), as a
//!   careless origin sends them.
//!
//! A WebSocket handshake (`Upgrade: websocket`) on any path is accepted: the first message is the
//! handshake as received (the same echo, as text), then every message is sent back as it came.
//! Messages and close codes received are counted ([`MockOrigin::socket_messages`],
//! [`MockOrigin::socket_closes`]).
//!
//! One thread per connection, HTTP/1.1 keep-alive, bodies streamed through SHA-256 (never held).

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct MockOrigin {
    port: u16,
    hits: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    sockets: Arc<Sockets>,
}

/// What the origin's WebSockets received.
#[derive(Default)]
struct Sockets {
    messages: AtomicUsize,
    closes: Mutex<Vec<Option<u16>>>,
}

impl MockOrigin {
    pub fn start() -> io::Result<MockOrigin> {
        Self::bind("127.0.0.1:0")
    }

    pub fn bind(address: &str) -> io::Result<MockOrigin> {
        let listener = TcpListener::bind(address)?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Sockets::default());
        let (accept_hits, accept_stopped, accept_sockets) = (hits.clone(), stopped.clone(), sockets.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (hits, sockets) = (accept_hits.clone(), accept_sockets.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &hits, &sockets);
                });
            }
        });
        Ok(MockOrigin { port, hits, stopped, sockets })
    }

    /// WebSocket messages received so far, on every socket.
    pub fn socket_messages(&self) -> usize {
        self.sockets.messages.load(Ordering::SeqCst)
    }

    /// The close code of every socket that was closed by its peer, in order (`None`: no code).
    pub fn socket_closes(&self) -> Vec<Option<u16>> {
        self.sockets.closes.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for MockOrigin {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, hits: &AtomicUsize, sockets: &Sockets) -> io::Result<()> {
    // Head and body go out as separate writes: without this, Nagle's algorithm holds the body back
    // until the client's delayed ACK (tens of ms) and every answer looks slow.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    // HTTP/1.1 keep-alive, as a real origin does: the gateway's outbound connections are reused.
    while serve_one(&mut reader, &mut stream, hits, sockets)? {}
    Ok(())
}

/// Answers one request; `false` when the connection is done.
fn serve_one(
    reader: &mut BufReader<TcpStream>,
    stream: &mut TcpStream,
    hits: &AtomicUsize,
    sockets: &Sockets,
) -> io::Result<bool> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if method.is_empty() {
        return Ok(false);
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let close = http10 || header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let echo = |body_bytes: u64, body_sha256: &str| {
        json!({
            "method": method,
            "target": target,
            "headers": headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<Value>>(),
            "body_bytes": body_bytes,
            "body_sha256": body_sha256,
        })
    };
    if header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        let hello = echo(0, "").to_string();
        let protocol = header("sec-websocket-protocol").and_then(|p| p.split(',').next()).map(str::trim);
        socket(reader, stream, header("sec-websocket-key").unwrap_or_default(), protocol, hello, sockets)?;
        return Ok(false);
    }
    let (body_bytes, body_sha256) = read_body(reader, chunked, length)?;

    // The special paths work under any base path the gateway prefixes.
    let path = target.split('?').next().unwrap_or("");
    let path = path.find("/__").map_or(path, |i| &path[i..]);
    if let Some(code) = path.strip_prefix("/__status/").and_then(|c| c.parse::<u16>().ok()) {
        respond(stream, code, &[], &json!({ "status": code }), close)?;
        return Ok(!close);
    }
    match path {
        "/__cookies" => {
            let cookies = [("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2; Path=/; HttpOnly")];
            respond(stream, 200, &cookies, &json!({ "cookies": 2 }), close)?;
        }
        "/__redirect" => respond(stream, 302, &[("location", "/elsewhere")], &json!({ "redirect": true }), close)?,
        "/__cors" => {
            let cors = [
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "X-Internal"),
            ];
            respond(stream, 200, &cors, &json!({ "cors": "the origin's own" }), close)?;
        }
        "/__reset" => {
            stream.shutdown(Shutdown::Both)?;
            return Ok(false);
        }
        _ => {
            if let Some(ms) = path.strip_prefix("/__slow/").and_then(|ms| ms.parse::<u64>().ok()) {
                thread::sleep(Duration::from_millis(ms.min(60_000)));
            }
            respond(stream, 200, &[], &echo(body_bytes, &body_sha256), close)?;
        }
    }
    Ok(!close)
}

/// Completes a WebSocket handshake, sends `hello`, then echoes every message until the peer closes.
fn socket(
    reader: &mut BufReader<TcpStream>,
    stream: &mut TcpStream,
    key: &str,
    protocol: Option<&str>,
    hello: String,
    sockets: &Sockets,
) -> io::Result<()> {
    use tungstenite::{handshake::derive_accept_key, protocol::Role, Message, WebSocket};
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(protocol) = protocol {
        head.push_str(&format!("sec-websocket-protocol: {protocol}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.set_read_timeout(None)?;
    // Whatever the reader already buffered belongs to the socket.
    let buffered = reader.buffer().to_vec();
    let mut ws = WebSocket::from_partially_read(stream.try_clone()?, buffered, Role::Server, None);
    let fail = |e: tungstenite::Error| io::Error::other(e.to_string());
    ws.send(Message::text(hello)).map_err(fail)?;
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                sockets.closes.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
                // tungstenite answers the close itself; flush it out.
                let _ = ws.flush();
                return Ok(());
            }
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                sockets.messages.fetch_add(1, Ordering::SeqCst);
                ws.send(message).map_err(fail)?;
            }
            Ok(_) => {}
            Err(_) => {
                sockets.closes.lock().unwrap().push(None);
                return Ok(());
            }
        }
    }
}

/// Reads a request body (fixed length or chunked) through SHA-256, holding 64 KiB at most.
fn read_body(reader: &mut impl BufRead, chunked: bool, length: Option<u64>) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut take = |reader: &mut dyn Read, mut remaining: u64, hasher: &mut Sha256| -> io::Result<u64> {
        let mut read = 0;
        while remaining > 0 {
            let want = remaining.min(buffer.len() as u64) as usize;
            let n = reader.read(&mut buffer[..want])?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            remaining -= n as u64;
            read += n as u64;
        }
        Ok(read)
    };
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            // Strict, as a real server is: a body cut short or a bad chunk size is an error (the
            // connection is dropped unanswered), never the end of the body.
            let size = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or_default(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let got = take(reader, size, &mut hasher)?;
            if got < size {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut short"));
            }
            total += got;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    } else if let Some(length) = length {
        total = take(reader, length, &mut hasher)?;
        if total < length {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short"));
        }
    }
    Ok((total, hex(&hasher.finalize())))
}

/// SHA-256 of `data`, in lower-case hex, as the origin reports a body's.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &Value, close: bool) -> io::Result<()> {
    let body = body.to_string();
    let connection = if close { "close" } else { "keep-alive" };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {connection}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
