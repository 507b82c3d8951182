//! A small scripted HTTP/1.1 server for the probe tests: keep-alive, request bodies read and
//! counted, responses chosen by a closure, optional delays, and a streaming `/__down?bytes=N`.
//! It can listen inside one of the bed's namespaces.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path with the query string.
    pub target: String,
    pub body_len: u64,
    /// The body as text when it is at most 64 KiB (empty for larger ones).
    pub body: String,
}

pub enum Reply {
    /// Status, content type and body, after an optional delay before the headers.
    Body { status: u16, delay: Duration, content_type: &'static str, body: Vec<u8> },
    /// `n` zero bytes, streamed.
    Zeros(u64),
    /// Accept the request and never answer (until the client gives up).
    Hang,
    /// Answer garbage that is not HTTP at all, then close.
    Garbage,
    /// 302 to this URL.
    Redirect(String),
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Body { status, delay: Duration::ZERO, content_type: "application/json", body: body.as_bytes().to_vec() }
    }
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Body { status, delay: Duration::ZERO, content_type: "text/plain", body: body.as_bytes().to_vec() }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Listen on `bind` (port 0 picks one), in network namespace `netns` if given.
    pub fn start(
        bind: &str,
        netns: Option<&str>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let handler: Handler = Arc::new(handler);
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (bind, netns, st, reqs) = (bind.to_string(), netns.map(String::from), stop.clone(), requests.clone());
        std::thread::spawn(move || {
            if let Some(ns) = netns {
                super::enter_netns(&ns);
            }
            let l = TcpListener::bind(&bind).expect("bind test http server");
            l.set_nonblocking(true).unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (h, reqs) = (handler.clone(), reqs.clone());
                        std::thread::spawn(move || serve(s, h, reqs));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(5)).expect("http server up");
        Server { addr, requests, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(s: TcpStream, handler: Handler, requests: Arc<AtomicU64>) {
    s.set_nodelay(true).ok();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let mut content_length = 0u64;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        // Read the request body: kept when small (a webhook's JSON), only counted when large (a
        // speed test's upload, streamed to nowhere as fast as the link allows).
        let mut body = Vec::new();
        let body_len = if content_length <= 64 << 10 {
            (&mut reader).take(content_length).read_to_end(&mut body).unwrap_or(0) as u64
        } else {
            std::io::copy(&mut (&mut reader).take(content_length), &mut std::io::sink()).unwrap_or(0)
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let req = Request { method, target, body_len, body: String::from_utf8_lossy(&body).into_owned() };
        let ok = match handler(&req) {
            Reply::Body { status, delay, content_type, body } => {
                std::thread::sleep(delay);
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                    body.len()
                );
                w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body)).is_ok()
            }
            Reply::Redirect(to) => {
                let head = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
                w.write_all(head.as_bytes()).is_ok()
            }
            Reply::Zeros(n) => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n");
                let chunk = vec![0u8; 64 << 10];
                let mut left = n;
                let mut ok = w.write_all(head.as_bytes()).is_ok();
                while ok && left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    ok = w.write_all(&chunk[..k]).is_ok();
                    left -= k as u64;
                }
                ok
            }
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                false
            }
            Reply::Garbage => {
                let _ = w.write_all(b"\x00\x01garbage, not http\r\n\r\n");
                false
            }
        };
        if !ok {
            return;
        }
    }
}

/// The speed-test endpoints of Cloudflare (`/__down?bytes=N`, `/__up`) and LibreSpeed
/// (`/garbage.php?ckSize=MB`, `/empty.php`).
pub fn speed_handler(req: &Request) -> Reply {
    let query = |key: &str| -> Option<u64> {
        req.target.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let path = req.target.split('?').next().unwrap_or("");
    match path {
        "/__down" => Reply::Zeros(query("bytes").unwrap_or(0)),
        "/garbage.php" => Reply::Zeros(query("ckSize").unwrap_or(1) << 20),
        "/__up" | "/empty.php" => Reply::text(200, ""),
        _ => Reply::text(404, "not found"),
    }
}
