//! Syslog over TCP (RFC 6587), bounded: a peer on the LAN can send anything, so nothing it
//! sends can grow memory. Frames are octet-counted (`LEN SP MSG`, MSG may hold newlines and
//! need not end in one) or newline-terminated; a frame longer than [`MAX_LEN`] keeps its first
//! `MAX_LEN` bytes and the rest is skipped (and counted), invalid UTF-8 is decoded lossily
//! (never closes the connection), a connection idle for `[syslog] tcp_idle` (default 5 min) is
//! closed, and at most
//! [`MAX_CONNECTIONS`] are open at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::Ctx;
use super::syslog::{Events, MAX_LEN, handle};

/// Open connections at most; more are closed at once (a router needs one).
pub const MAX_CONNECTIONS: usize = 16;
/// Octet counts above this are not believed (the frame is read as newline-terminated).
const MAX_COUNT: usize = 1 << 20;

/// One message out of the stream, and whether it was cut to `MAX_LEN`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug, Default)]
enum State {
    /// At the start of a frame.
    #[default]
    Start,
    /// Reading a newline-terminated frame; `skip` once it is over MAX_LEN.
    Line { skip: bool },
    /// Reading an octet-counted frame with `left` bytes to go.
    Counted { left: usize },
}

/// The stream decoder. Holds at most `MAX_LEN` + a few bytes whatever it is fed.
#[derive(Debug, Default)]
pub struct Framer {
    state: State,
    /// The frame so far (at most MAX_LEN bytes), or the digits of a count being read.
    cur: Vec<u8>,
    truncated: bool,
    /// Frames cut since the last `take_cuts`: counted when the cut happens, so a line that
    /// never ends (or is still arriving when the agent stops) is counted too.
    cuts: u64,
}

impl Framer {
    /// Feed bytes; complete frames come out.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match self.state {
                State::Start => {
                    // Digits then a space: octet counting. Anything else: a line.
                    let b = data[0];
                    if b.is_ascii_digit() && self.cur.len() < 8 {
                        self.cur.push(b);
                        data = &data[1..];
                    } else if b == b' ' && !self.cur.is_empty() {
                        let n: usize = std::str::from_utf8(&self.cur).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        data = &data[1..];
                        if n > 0 && n <= MAX_COUNT {
                            self.cur.clear();
                            self.state = State::Counted { left: n };
                        } else {
                            // Not a believable count: the digits were the start of a line.
                            self.cur.push(b' ');
                            self.state = State::Line { skip: false };
                        }
                    } else if (b == b'\n' || b == b'\r') && self.cur.is_empty() {
                        data = &data[1..]; // blank line between frames
                    } else {
                        self.state = State::Line { skip: false };
                    }
                }
                State::Line { skip } => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        if !skip {
                            self.keep(&data[..i]);
                        }
                        data = &data[i + 1..];
                        out.push(self.take());
                    }
                    None => {
                        if !skip {
                            self.keep(data);
                        }
                        data = &[];
                        if self.truncated {
                            self.state = State::Line { skip: true };
                        }
                    }
                },
                State::Counted { left } => {
                    let n = left.min(data.len());
                    self.keep(&data[..n]);
                    data = &data[n..];
                    if n == left {
                        out.push(self.take());
                    } else {
                        self.state = State::Counted { left: left - n };
                    }
                }
            }
        }
        out
    }

    /// Keep what fits in MAX_LEN; note that the rest was cut.
    fn keep(&mut self, b: &[u8]) {
        let room = MAX_LEN.saturating_sub(self.cur.len());
        if b.len() > room {
            self.cuts += u64::from(!self.truncated);
            self.truncated = true;
        }
        self.cur.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn take(&mut self) -> Frame {
        self.state = State::Start;
        let mut bytes = std::mem::take(&mut self.cur);
        while bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Frame { bytes, truncated: std::mem::take(&mut self.truncated) }
    }

    /// How many frames were cut since the last call.
    pub fn take_cuts(&mut self) -> u64 {
        std::mem::take(&mut self.cuts)
    }

    /// What is left when the peer hangs up: a last frame without its newline.
    pub fn finish(&mut self) -> Option<Frame> {
        let pending = !self.cur.is_empty() && !matches!(self.state, State::Start);
        pending.then(|| self.take())
    }
}

/// Accept connections until stopped; each is read through a [`Framer`].
pub(super) async fn serve(l: TcpListener, idle: Duration, ctx: Ctx, events: Arc<tokio::sync::Mutex<Events>>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let mut stop = ctx.stop.clone();
        let (mut stream, from) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or the like: back off instead of spinning,
                    // and try again; the listener is never given up.
                    tracing::warn!("syslog: accept failed ({e}); retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let refused = { events.lock().await.refuse_connection(from.ip(), open.load(Ordering::Relaxed)) };
        if refused {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (ctx, events, open) = (ctx.clone(), events.clone(), open.clone());
        tokio::spawn(async move {
            let mut framer = Framer::default();
            let mut buf = vec![0u8; 8192];
            let source = from.ip().to_string();
            loop {
                let n = match tokio::time::timeout(idle, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break, // closed, failed or idle
                };
                let frames = framer.push(&buf[..n]);
                let cuts = framer.take_cuts();
                if cuts > 0 {
                    events.lock().await.count_truncated(cuts);
                }
                for f in frames {
                    deliver(&ctx, &events, &source, from.ip(), f).await;
                }
            }
            if let Some(f) = framer.finish() {
                deliver(&ctx, &events, &source, from.ip(), f).await;
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A frame to the common syslog path (its cut, if any, was counted when it happened).
async fn deliver(ctx: &Ctx, events: &tokio::sync::Mutex<Events>, source: &str, ip: std::net::IpAddr, f: Frame) {
    let text = String::from_utf8_lossy(&f.bytes);
    handle(ctx, events, source, Some(ip), &text).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: Vec<Frame>) -> Vec<String> {
        frames.into_iter().map(|f| String::from_utf8_lossy(&f.bytes).into_owned()).collect()
    }

    #[test]
    fn newline_frames_and_a_last_one_without_newline() {
        let mut f = Framer::default();
        assert_eq!(texts(f.push(b"<30>one\n<30>two\r\n<30>thr")), ["<30>one", "<30>two"]);
        assert_eq!(texts(f.push(b"ee\n")), ["<30>three"]);
        assert!(f.push(b"<30>tail").is_empty());
        assert_eq!(f.finish().map(|f| f.bytes), Some(b"<30>tail".to_vec()));
    }

    #[test]
    fn octet_counted_frames_are_not_merged_and_may_hold_newlines() {
        let mut f = Framer::default();
        // Two counted frames back to back, no newline between them (RFC 6587 3.4.1).
        let a = "<14>first\nline";
        let b = "<14>second";
        let stream = format!("{} {a}{} {b}", a.len(), b.len());
        assert_eq!(texts(f.push(stream.as_bytes())), [a, b]);
        // Split anywhere.
        let mut f = Framer::default();
        let mut got = Vec::new();
        for chunk in stream.as_bytes().chunks(3) {
            got.extend(texts(f.push(chunk)));
        }
        assert_eq!(got, [a, b]);
    }

    #[test]
    fn an_endless_line_stays_bounded_and_the_next_line_survives() {
        let mut f = Framer::default();
        let mut frames = Vec::new();
        for _ in 0..10_000 {
            frames.extend(f.push(&[b'x'; 1000]));
            assert!(f.cur.len() <= MAX_LEN, "the framer holds {} bytes", f.cur.len());
        }
        assert!(frames.is_empty());
        // counted as soon as it is cut, once, before its newline ever comes
        assert_eq!(f.take_cuts(), 1);
        assert_eq!(f.take_cuts(), 0);
        let done = f.push(b"\n<30>next\n");
        assert_eq!(done.len(), 2);
        assert_eq!(f.take_cuts(), 0, "the cut line was counted already");
        assert!(done[0].truncated && done[0].bytes.len() == MAX_LEN);
        assert_eq!(done[1], Frame { bytes: b"<30>next".to_vec(), truncated: false });
        // A huge count is cut the same way and the stream stays in step.
        let mut f = Framer::default();
        let big = vec![b'y'; 100_000];
        let mut stream = format!("{} ", big.len()).into_bytes();
        stream.extend(&big);
        stream.extend(b"5 <1>ok");
        let frames = f.push(&stream);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].truncated);
        assert_eq!(frames[1].bytes, b"<1>ok");
    }

    #[test]
    fn invalid_utf8_is_a_frame_like_any_other() {
        let mut f = Framer::default();
        let frames = f.push(b"<30>bad \xff\xfe bytes\n<30>good\n");
        assert_eq!(frames.len(), 2);
        assert_eq!(String::from_utf8_lossy(&frames[0].bytes), "<30>bad \u{fffd}\u{fffd} bytes");
    }
}
