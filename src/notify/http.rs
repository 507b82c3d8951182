//! ntfy and a generic JSON webhook, over HTTP(S) with ureq.

use std::time::Duration;

use super::limit::{Note, NoteKind};
use crate::config::outputs::{NtfyConfig, WebhookConfig};

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Ok,
    /// Worth retrying: no route, timeout, 5xx, 429.
    Retry(String),
    /// The destination refuses this message (bad token, bad topic): retrying will not help.
    Refused(String),
}

fn agent() -> ureq::Agent {
    crate::probe::http::agent(Duration::from_secs(10))
}

fn outcome(r: Result<u16, ureq::Error>) -> Sent {
    match r {
        Ok(s) if (200..300).contains(&s) => Sent::Ok,
        Ok(s) if s == 408 || s == 429 || s >= 500 => Sent::Retry(format!("http {s}")),
        Ok(s) => Sent::Refused(format!("http {s}")),
        Err(e) => Sent::Retry(crate::probe::ProbeError::from(&e).to_string()),
    }
}

/// ntfy's publish-as-PUT/POST API: the body is the message, the title and priority are headers.
pub fn ntfy(cfg: &NtfyConfig, note: &Note) -> Sent {
    let mut req = agent()
        .post(&cfg.url)
        .header("Title", &ascii(&note.title))
        .header("Priority", note.priority.clamp(1, 5).to_string())
        .header("Tags", tag(note.kind));
    if let Some(token) = &cfg.token {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    outcome(req.send(note.body.as_bytes()).map(|r| r.status().as_u16()))
}

/// One JSON object per message.
pub fn webhook(cfg: &WebhookConfig, note: &Note) -> Sent {
    let body = serde_json::json!({
        "source": "wanwatch",
        "kind": note.kind,
        "title": note.title,
        "message": note.body,
        "priority": note.priority,
        "ts": note.ts,
        "time": crate::calendar::format_time(note.ts) + "Z",
    });
    outcome(
        agent()
            .post(&cfg.url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map(|r| r.status().as_u16()),
    )
}

/// HTTP headers are ASCII; a title is ours, but an event detail may carry a non-ASCII name.
fn ascii(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect()
}

/// ntfy shows tags that name an emoji as that emoji.
fn tag(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Outage => "rotating_light",
        NoteKind::Degraded => "warning",
        NoteKind::Prediction => "crystal_ball",
        NoteKind::Anomaly => "mag",
        _ => "information_source",
    }
}
