//! Rate limiting with a digest: a flapping link sends its first message at once and then one
//! summary per interval, never a hundred pings to a phone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sample::WallMs;

/// What a note is about; notes of one kind are rate-limited together. Stored (the offline
/// queue) and sent (webhook, MQTT) by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Outage,
    Degraded,
    Degradation,
    Anomaly,
    Prediction,
    LevelShift,
    Gateway,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Outage => "outage",
            NoteKind::Degraded => "degraded",
            NoteKind::Degradation => "degradation",
            NoteKind::Anomaly => "anomaly",
            NoteKind::Prediction => "prediction",
            NoteKind::LevelShift => "level_shift",
            NoteKind::Gateway => "gateway",
        }
    }
}

impl std::fmt::Display for NoteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something worth telling the household; `kind` is what is rate-limited together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub kind: NoteKind,
    pub ts: WallMs,
    pub title: String,
    pub body: String,
    /// ntfy's 1 (min) to 5 (urgent).
    pub priority: u8,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slot {
    last_sent: Option<WallMs>,
    held: Vec<Note>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Limiter {
    slots: BTreeMap<NoteKind, Slot>,
}

/// Notes in a digest's body, most recent last; the rest are counted.
const DIGEST_LINES: usize = 8;

impl Limiter {
    /// Pass `note` on now if its kind has been quiet for `interval`, else hold it for the digest.
    pub fn offer(&mut self, note: Note, now: WallMs, interval: i64) -> Option<Note> {
        let slot = self.slots.entry(note.kind).or_default();
        if slot.held.is_empty() && slot.last_sent.is_none_or(|t| now - t >= interval || now < t) {
            slot.last_sent = Some(now);
            return Some(note);
        }
        slot.held.push(note);
        None
    }

    /// Digests for kinds whose interval is over and that held something back.
    pub fn due(&mut self, now: WallMs, interval: i64) -> Vec<Note> {
        let mut out = Vec::new();
        for (kind, slot) in &mut self.slots {
            // `now < t`: the clock went back (boot without RTC); do not wait for it to catch up.
            if slot.held.is_empty() || slot.last_sent.is_some_and(|t| now - t < interval && now >= t) {
                continue;
            }
            let held = std::mem::take(&mut slot.held);
            slot.last_sent = Some(now);
            out.push(if held.len() == 1 { held.into_iter().next().expect("one") } else { digest(*kind, held) });
        }
        out
    }
}

fn digest(kind: NoteKind, held: Vec<Note>) -> Note {
    let n = held.len();
    let first = held.first().map_or(0, |h| h.ts);
    let mut body: Vec<String> =
        held.iter().rev().take(DIGEST_LINES).rev().map(|h| format!("- {}: {}", h.title, h.body)).collect();
    if n > DIGEST_LINES {
        body.insert(0, format!("({} earlier not shown)", n - DIGEST_LINES));
    }
    let last = held.last().expect("a digest has notes");
    Note {
        kind,
        ts: last.ts,
        title: format!(
            "{n} {kind} messages since {}: latest \"{}\"",
            crate::calendar::format_local_clock(first, false),
            last.title
        ),
        body: body.join("\n"),
        priority: held.iter().map(|h| h.priority).max().unwrap_or(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(kind: NoteKind, ts: WallMs, title: &str) -> Note {
        Note { kind, ts, title: title.into(), body: "b".into(), priority: 3 }
    }

    #[test]
    fn a_flapping_link_sends_one_message_then_one_digest_per_interval() {
        let mut l = Limiter::default();
        let interval = 600_000;
        let mut sent = Vec::new();
        // 100 outages, one every 20 s, for 33 minutes; the limiter is asked every 5 s.
        for t in (0..2000).map(|i| i * 1000) {
            if t % 20_000 == 0 {
                sent.extend(l.offer(note(NoteKind::Outage, t, &format!("down {t}")), t, interval));
            }
            if t % 5000 == 0 {
                sent.extend(l.due(t, interval));
            }
        }
        sent.extend(l.due(3_000_000, interval));
        assert_eq!(sent[0].title, "down 0");
        assert!(sent.len() <= 5, "{} messages", sent.len());
        assert!(sent[1].title.starts_with("30 outage messages since"), "{}", sent[1].title);
        // Nothing is lost: every outage is in a message.
        let covered: usize = sent
            .iter()
            .map(|m| {
                m.title
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|_| m.title.contains("messages since"))
                    .unwrap_or(1)
            })
            .sum();
        assert_eq!(covered, 100);
    }

    #[test]
    fn kinds_are_limited_separately_and_a_quiet_kind_goes_at_once() {
        let mut l = Limiter::default();
        assert!(l.offer(note(NoteKind::Outage, 0, "a"), 0, 600_000).is_some());
        assert!(l.offer(note(NoteKind::Prediction, 1000, "p"), 1000, 600_000).is_some());
        assert!(l.offer(note(NoteKind::Outage, 2000, "b"), 2000, 600_000).is_none());
        assert!(l.due(300_000, 600_000).is_empty());
        let d = l.due(600_000, 600_000);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].title, "b", "one held note goes as itself, not a digest of one");
        assert!(l.offer(note(NoteKind::Outage, 1_300_000, "c"), 1_300_000, 600_000).is_some());
    }

    #[test]
    fn a_clock_that_jumps_back_does_not_silence_messages() {
        let mut l = Limiter::default();
        let boot = 1_000_000_000; // a stale clock before NTP
        assert!(l.offer(note(NoteKind::Outage, boot, "a"), boot, 600_000).is_some());
        assert!(l.offer(note(NoteKind::Outage, 5000, "b"), 5000, 600_000).is_some());
    }

    #[test]
    fn note_kinds_keep_their_names_in_the_saved_queue_and_on_the_wire() {
        use NoteKind::*;
        for k in [Outage, Degraded, Degradation, Anomaly, Prediction, LevelShift, Gateway] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        let old: Note =
            serde_json::from_str(r#"{"kind":"outage","ts":1,"title":"t","body":"b","priority":3}"#).unwrap();
        assert_eq!(old.kind, Outage, "a queue saved by an older agent reads back");
    }
}
