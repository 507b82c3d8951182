//! The read-only LAN web server: the dashboard (`/`), Prometheus (`/metrics`), the report
//! (`/report.html`, `/report.md`, `?days=N`) and the state as JSON (`/api/status.json`).
//!
//! Every request opens the database read-only and renders from it, so the page always agrees
//! with `wanwatch status` and the server holds no state of its own. Only addresses a home
//! network can have (private, link-local, loopback, ULA) are answered: the Pi may sit in a
//! DMZ or behind a port forward someone set up years ago.

pub mod dashboard;
pub mod metrics;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Request, Response, Server};

use crate::report::Plan;
use crate::sample::WallMs;
use crate::store::Store;

/// A running server; dropped or stopped, its threads end within a second.
pub struct Web {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("web server: cannot listen on {addr}: {why}")]
pub struct BindError {
    pub addr: String,
    pub why: String,
}

/// True for addresses a LAN client can have.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local(IpAddr::V4(v4)),
            None => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
        },
    }
}

impl Web {
    /// Listen on `listen` and answer from `db` on two threads (a slow report does not block a
    /// Prometheus scrape).
    pub fn spawn(listen: &str, db: PathBuf, plan: Plan, now: crate::clock::WallFn) -> Result<Web, BindError> {
        let server = Server::http(listen).map_err(|e| BindError { addr: listen.to_string(), why: e.to_string() })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| BindError { addr: listen.into(), why: "not an IP socket".into() })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let (server, stop, db, now) = (server.clone(), stop.clone(), db.clone(), now.clone());
                std::thread::Builder::new()
                    .name("web".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match server.recv_timeout(Duration::from_millis(500)) {
                                Ok(Some(req)) => handle(req, &db, plan, now()),
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "web server: accept failed");
                                    std::thread::sleep(Duration::from_millis(200));
                                }
                            }
                        }
                    })
                    .expect("spawning a thread")
            })
            .collect();
        tracing::info!("dashboard on http://{addr}/ (metrics at /metrics)");
        Ok(Web { addr, stop, threads })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    url.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn handle(req: Request, db: &std::path::Path, plan: Plan, now: WallMs) {
    let remote = req.remote_addr().map(|a| a.ip());
    let (status, ctype, body) = if !remote.is_some_and(is_local) {
        (403, "text/plain; charset=utf-8", "wanwatch answers the home network only\n".to_string())
    } else if req.method() != &tiny_http::Method::Get && req.method() != &tiny_http::Method::Head {
        (405, "text/plain; charset=utf-8", "read-only: GET only\n".to_string())
    } else {
        route(req.url(), db, plan, now)
    };
    let mut resp = Response::from_string(body).with_status_code(status).with_header(header("Content-Type", ctype));
    resp.add_header(header("Cache-Control", "no-store"));
    if let Err(e) = req.respond(resp) {
        tracing::debug!(error = %e, "web client went away");
    }
}

fn route(url: &str, db: &std::path::Path, plan: Plan, now: WallMs) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or("/");
    let store = match Store::open_read_only(db) {
        Ok(s) => s,
        Err(e) => return (503, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let days = query_param(url, "days").and_then(|d| d.parse::<i64>().ok()).unwrap_or(7).clamp(1, 366);
    let result = match path {
        "/" => dashboard::render(&store, now).map(|b| ("text/html; charset=utf-8", b)),
        "/metrics" => metrics::render(&store, now).map_err(|e| e.to_string()).map(|b| (metrics::CONTENT_TYPE, b)),
        "/api/status.json" => dashboard::status_json(&store, now).map(|b| ("application/json", b)),
        "/report.html" | "/report.md" => crate::report::build(&store, now - days * 86_400_000, now, plan, &|_| {})
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if path.ends_with(".md") {
                    crate::report::render::markdown(&r, &|_| {}).map(|b| ("text/markdown; charset=utf-8", b))
                } else {
                    crate::report::render::html(&r, &|_| {}).map(|b| ("text/html; charset=utf-8", b))
                }
            }),
        _ => return (404, "text/plain; charset=utf-8", format!("no page {path}; try / or /metrics\n")),
    };
    match result {
        Ok((ctype, body)) => (200, ctype, body),
        Err(e) => (500, "text/plain; charset=utf-8", format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_home_addresses_are_local() {
        for ip in [
            "192.168.1.20",
            "10.0.0.5",
            "172.16.3.4",
            "127.0.0.1",
            "169.254.1.1",
            "::1",
            "fd00::5",
            "fe80::1",
            "::ffff:192.168.1.2",
        ] {
            assert!(is_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "100.64.0.1", "2001:4860::8888", "::ffff:8.8.8.8"] {
            assert!(!is_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("/report.html?days=30", "days"), Some("30"));
        assert_eq!(query_param("/report.html?x=1&days=2", "days"), Some("2"));
        assert_eq!(query_param("/report.html", "days"), None);
    }
}
