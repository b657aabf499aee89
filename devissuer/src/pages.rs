//! A static file server on 127.0.0.1 for the demo page: the page must live on an origin of its own (not the
//! worker's, not the issuer's) for CORS to be exercised at all. GET and HEAD of files directly in one folder;
//! nothing else, so no path can leave it.

use std::{
    fs,
    io::{self, BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

pub struct Pages {
    port: u16,
}

impl Pages {
    pub fn bind(address: &str, root: &Path) -> io::Result<Pages> {
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a folder"));
        }
        let listener = TcpListener::bind(address)?;
        let port = listener.local_addr()?.port();
        let root = root.to_path_buf();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &root);
                });
            }
        });
        Ok(Pages { port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// The file a request path names: `/` is index.html, and only plain names of files directly in `root`.
fn file_for(root: &Path, path: &str) -> Option<PathBuf> {
    let name = path.strip_prefix('/')?;
    let name = if name.is_empty() { "index.html" } else { name };
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && !name.starts_with('.');
    plain.then(|| root.join(name))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("json") | Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(mut stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let (status, kind, body) = match (method, file_for(root, path).and_then(|f| Some((fs::read(&f).ok()?, f)))) {
        ("GET" | "HEAD", Some((body, file))) => (200, content_type(&file), body),
        ("GET" | "HEAD", None) => (404, "text/plain", b"not found\n".to_vec()),
        _ => (405, "text/plain", b"GET only\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_in_the_folder_are_served() {
        let root = Path::new("/srv/demo");
        assert_eq!(file_for(root, "/"), Some(root.join("index.html")));
        assert_eq!(file_for(root, "/app.js"), Some(root.join("app.js")));
        for bad in ["/../etc/passwd", "/a/b.js", "/.git", "/%2e%2e", "app.js", "/a\\b"] {
            assert_eq!(file_for(root, bad), None, "{bad}");
        }
    }
}
