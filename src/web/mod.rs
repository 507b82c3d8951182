//! The read-only LAN web server: the dashboard (`/`), Prometheus (`/metrics`), the report
//! (`/report.html`, `/report.md`, `?days=N`) and the state as JSON (`/api/status.json`).
//!
//! Every request opens the database read-only and renders from it, so the page always agrees
//! with `wanwatch status` and the server holds no state of its own. Only addresses a home
//! network can have (private, link-local, loopback, ULA) are answered: the Pi may sit in a
//! DMZ or behind a port forward someone set up years ago.

//!
//! Bounded, because anyone on the LAN can connect: the source address is checked before a byte
//! of the request is read; a request head is at most [`MAX_HEAD`] bytes and must arrive within
//! [`HEAD_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections are open (more are closed at
//! once); running out of file descriptors backs off and recovers; and at most one report is
//! built at a time (others get 503), so `/metrics` and `/` answer whatever reports are asked for.

pub mod dashboard;
pub mod metrics;
pub mod setup;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};

use crate::calendar::DAY_MS;
use crate::report::Plan;
use crate::sample::WallMs;
use crate::store::Store;

/// The largest request head read (hyper's buffer; the smallest it allows is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;
/// A request head must be complete within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection lives at most this long (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Open connections at most; a household has a few browsers and one Prometheus.
pub const MAX_CONNECTIONS: usize = 64;
/// Threads for database reads; one of them at most builds a report.
const BLOCKING_THREADS: usize = 4;

/// A running server; stopped, its thread ends within a second.
pub struct Web {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
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

/// Connections the server closed without serving, since the agent started: (from outside
/// the LAN, over the connection cap, accept failures). Counted so nothing is dropped unsaid.
pub static REFUSED: [std::sync::atomic::AtomicU64; 3] =
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)];
pub const REFUSED_REASONS: [&str; 3] = ["not_lan", "too_many", "accept_failed"];

fn refused(reason: usize) {
    REFUSED[reason].fetch_add(1, Ordering::Relaxed);
}

/// What every request needs.
struct Shared {
    db: PathBuf,
    plan: Plan,
    now: crate::clock::WallClock,
    /// One report build at a time.
    reports: Arc<Semaphore>,
    /// The set-up page, when the agent runs from a file it may rewrite.
    setup: Option<Arc<setup::Setup>>,
    /// Community sharing, when the household opted in (`/community` asks its engine).
    community: Option<crate::config::outputs::CommunityConfig>,
}

impl Web {
    /// Listen on `listen` and answer from `db` on a thread of its own.
    pub fn spawn(
        listen: &str,
        db: PathBuf,
        plan: Plan,
        now: crate::clock::WallClock,
        setup: Option<setup::Setup>,
        community: Option<crate::config::outputs::CommunityConfig>,
    ) -> Result<Web, BindError> {
        let bind_err = |why: String| BindError { addr: listen.to_string(), why };
        let listener = std::net::TcpListener::bind(listen).map_err(|e| bind_err(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| bind_err(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("web")
            .build()
            .map_err(|e| bind_err(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let setup = setup.map(Arc::new);
        let community = community.filter(|c| c.enabled);
        let shared = Arc::new(Shared { db, plan, now, reports: Arc::new(Semaphore::new(1)), setup, community });
        let thread = std::thread::Builder::new()
            .name("web".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, shared, stop_rx).await,
                        Err(e) => tracing::error!("web server: {e}"),
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .expect("spawning a thread");
        tracing::info!("dashboard on http://{addr}/ (metrics at /metrics)");
        Ok(Web { addr, stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

impl crate::service::Service for Web {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    fn stop(self: Box<Self>) {
        Web::stop(*self)
    }
}

async fn accept_loop(l: tokio::net::TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    refused(2);
                    // EMFILE/ENFILE and friends: wait for descriptors to come back, never die.
                    tracing::warn!(
                        "web server: accept failed ({e}) with {} connections open; retrying in 1 s",
                        open.load(Ordering::Relaxed)
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        if !is_local(peer.ip()) {
            refused(0);
            // Not one byte of the request is read.
            tokio::spawn(async move {
                let body = "wanwatch answers the home network only\n";
                let head = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        }
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            refused(1);
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (shared, open) = (shared.clone(), open.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(req, shared.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let ended = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            let left = open.fetch_sub(1, Ordering::Relaxed) - 1;
            tracing::debug!(?ended, left, "web connection closed");
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", ctype)
        .header("Cache-Control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let url = req.uri().to_string();
    let path = req.uri().path().to_string();
    if path == "/setup" {
        return Ok(setup_page(req, &shared).await);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only\n".into()));
    }
    let is_report = path.starts_with("/report.");
    // A report is the one expensive page: one at a time, and a second asker is told to wait
    // rather than queued (eight year-long reports must not hold up a Prometheus scrape).
    let permit = if is_report {
        match shared.reports.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "another report is being built; try again in a minute\n".into(),
                );
                r.headers_mut().insert("Retry-After", hyper::header::HeaderValue::from_static("30"));
                return Ok(r);
            }
        }
    } else {
        None
    };
    let s = shared.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if path == "/community" {
            return community_page(&url, &s);
        }
        route(&url, &s.db, s.plan, s.now.now())
    })
    .await;
    Ok(match rendered {
        Ok((status, ctype, body)) => {
            reply(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), ctype, body)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    })
}

/// `/setup`: the form (GET) and a save (POST), on a blocking thread (file and geocoder).
async fn setup_page(req: Request<hyper::body::Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let Some(setup) = shared.setup.clone() else {
        let why = "the set-up page is off: the agent runs without a configuration file (start it with --config FILE)\n";
        return text(StatusCode::NOT_FOUND, why.into());
    };
    let post = match *req.method() {
        Method::GET | Method::HEAD => None,
        Method::POST => {
            let limited = http_body_util::Limited::new(req.into_body(), setup::MAX_FORM);
            match limited.collect().await {
                Ok(b) => Some(b.to_bytes()),
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a form is at most {} bytes\n", setup::MAX_FORM),
                    );
                }
            }
        }
        _ => return text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n".into()),
    };
    let page = tokio::task::spawn_blocking(move || match post {
        Some(body) => setup.post(&body),
        None => setup.get(),
    })
    .await;
    match page {
        Ok((status, html)) => {
            let mut r = reply(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "text/html; charset=utf-8",
                html,
            );
            // Not to be framed by another page (clickjacking the Save button).
            r.headers_mut().insert("X-Frame-Options", hyper::header::HeaderValue::from_static("DENY"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `/community`: this home against its region, asked of the community engine (PromQL).
fn community_page(url: &str, s: &Shared) -> (u16, &'static str, String) {
    use crate::community::{push, query};
    let Some(cfg) = &s.community else {
        return (404, "text/plain; charset=utf-8", "community sharing is off ([community] enabled = false)\n".into());
    };
    let days = query_param(url, "days").and_then(|d| d.parse::<u32>().ok()).unwrap_or(7).clamp(1, 90);
    let install = push::load_state(&push::state_path(&s.db)).install;
    let token = match push::token(cfg) {
        Ok(t) => t,
        Err(e) => return (500, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let body = match query::compare(&query::Engine::new(&cfg.query_base(), token), cfg, &install, days) {
        Ok(c) => crate::report::render::esc(&query::text(&c)),
        Err(e) => crate::report::render::esc(&e.to_string()),
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>wanwatch: your area vs others</title>\
         <style>body{{font-family:sans-serif;max-width:50em;margin:1em auto;padding:0 1em}}</style></head><body>\
         <h1>Your area against others</h1><pre id=\"community\">{body}</pre>\
         <p><small>Asked of the community server's own query API; a region is shown only with at least {} homes. \
         <a href=\"/\">Dashboard</a></small></p></body></html>",
        cfg.min_homes
    );
    (200, "text/html; charset=utf-8", html)
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    url.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Why a page could not be made (the reply is a 500 saying so).
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Plot(#[from] crate::report::plot::PlotError),
}

fn route(url: &str, db: &std::path::Path, plan: Plan, now: WallMs) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or("/");
    let store = match Store::open_read_only(db) {
        Ok(s) => s,
        Err(e) => return (503, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let days = query_param(url, "days").and_then(|d| d.parse::<i64>().ok()).unwrap_or(7).clamp(1, 366);
    let report = |md: bool| -> Result<(&'static str, String), PageError> {
        let r = crate::report::build(&store, now - days * DAY_MS, now, plan, &|_| {})?;
        Ok(match md {
            true => ("text/markdown; charset=utf-8", crate::report::render::markdown(&r, &|_| {})?),
            false => ("text/html; charset=utf-8", crate::report::render::html(&r, &|_| {})?),
        })
    };
    let result = match path {
        "/" => dashboard::render(&store, now).map(|b| ("text/html; charset=utf-8", b)),
        "/metrics" => metrics::render(&store, now).map(|b| (metrics::CONTENT_TYPE, b)).map_err(PageError::from),
        "/api/status.json" => dashboard::status_json(&store, now).map(|b| ("application/json", b)),
        "/report.html" => report(false),
        "/report.md" => report(true),
        "/sla.html" => {
            let month = query_param(url, "month").map_or_else(|| crate::report::sla::last_month(now), str::to_string);
            match crate::report::sla::build(&store, &month, plan) {
                Ok(s) => Ok(("text/html; charset=utf-8", crate::report::sla::html(&s))),
                Err(crate::report::sla::SlaError::Month(e)) => {
                    return (400, "text/plain; charset=utf-8", format!("month {e}\n"));
                }
                Err(crate::report::sla::SlaError::Store(e)) => Err(PageError::from(e)),
            }
        }
        p if p.starts_with("/incident/") => {
            let id = p["/incident/".len()..].parse::<i64>().ok();
            match id.map(|id| crate::report::incident::render(&store, id, now, false)) {
                Some(Ok(Some(page))) => Ok(("text/html; charset=utf-8", page)),
                Some(Err(e)) => Err(PageError::from(e)),
                _ => return (404, "text/plain; charset=utf-8", format!("no outage {p}\n")),
            }
        }
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
