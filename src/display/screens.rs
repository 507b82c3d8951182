//! The OLED's pages, drawn on any `DrawTarget<Color = BinaryColor>` of 128x64.
//!
//! The main page is for a glance from across the room: the state in large type, then RTT, loss
//! and time since the last outage. The other pages rotate: latency sparkline, last speed test,
//! 5G signal (when known), the current anomaly or prediction, and the address to ssh to.

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::{FONT_5X8, FONT_6X10, FONT_10X20};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};

use super::snapshot::Snapshot;
use crate::calendar::format_span;
use crate::sample::{EventKind, LinkState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Main,
    Sparkline,
    Speed,
    Signal,
    Notice,
    Address,
    Placement,
    BestTimes,
}

impl Page {
    pub fn name(self) -> &'static str {
        match self {
            Page::Main => "main",
            Page::Sparkline => "sparkline",
            Page::Speed => "speed",
            Page::Signal => "signal",
            Page::Notice => "notice",
            Page::Address => "address",
            Page::Placement => "placement",
            Page::BestTimes => "best_times",
        }
    }
}

/// The pages worth showing for this snapshot, in rotation order. The main page comes back
/// between every other page, so a glance is never more than one page away from it.
pub fn rotation(s: &Snapshot) -> Vec<Page> {
    // Placement mode: the household is moving the gateway and watching this page only.
    if s.placement.is_some() {
        return vec![Page::Placement];
    }
    let mut others = vec![Page::Sparkline];
    if s.speed.is_some() {
        others.push(Page::Speed);
    }
    if s.signal.is_some() {
        others.push(Page::Signal);
    }
    others.push(Page::Notice);
    if s.best_download.is_some() {
        others.push(Page::BestTimes);
    }
    if s.ip.is_some() {
        others.push(Page::Address);
    }
    others.into_iter().flat_map(|p| [Page::Main, p]).collect()
}

fn small() -> MonoTextStyle<'static, BinaryColor> {
    MonoTextStyle::new(&FONT_6X10, BinaryColor::On)
}

fn big() -> MonoTextStyle<'static, BinaryColor> {
    MonoTextStyle::new(&FONT_10X20, BinaryColor::On)
}

fn text<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str, x: i32, y: i32) -> Result<(), D::Error> {
    Text::with_baseline(s, Point::new(x, y), small(), Baseline::Top).draw(d)?;
    Ok(())
}

fn title<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &str) -> Result<(), D::Error> {
    text(d, s, 0, 0)?;
    Line::new(Point::new(0, 11), Point::new(127, 11))
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(d)?;
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.1}ms"),
        Some(v) => format!("{v:.0}ms"),
        None => "--".into(),
    }
}

/// Draw `page` of `s` (the target should be cleared first).
pub fn draw<D: DrawTarget<Color = BinaryColor>>(d: &mut D, page: Page, s: &Snapshot) -> Result<(), D::Error> {
    match page {
        Page::Main => main(d, s),
        Page::Sparkline => sparkline(d, s),
        Page::Speed => speed(d, s),
        Page::Signal => signal(d, s),
        Page::Notice => notice(d, s),
        Page::Address => address(d, s),
        Page::Placement => placement(d, s),
        Page::BestTimes => best_times(d, s),
    }
}

fn main<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let (word, sub) = match s.state {
        LinkState::Up => ("UP", ""),
        LinkState::Degraded => ("DEGRADED", ""),
        LinkState::WanDown => ("DOWN", "internet"),
        LinkState::LanDown => ("DOWN", "router/LAN"),
        LinkState::Unknown => ("WAIT", "starting"),
        LinkState::Ipv4Down => ("NO IPv4", "IPv6 up"),
        LinkState::Ipv6Down => ("NO IPv6", "IPv4 up"),
    };
    // A down link is shown inverted: white box, black letters, readable across the room.
    let down = matches!(s.state, LinkState::WanDown | LinkState::LanDown);
    if down {
        Rectangle::new(Point::zero(), Size::new(128, 22))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(d)?;
    }
    let style = MonoTextStyle::new(&FONT_10X20, if down { BinaryColor::Off } else { BinaryColor::On });
    Text::with_baseline(word, Point::new(2, 1), style, Baseline::Top).draw(d)?;
    let right = TextStyleBuilder::new().alignment(Alignment::Right).baseline(Baseline::Top).build();
    let since = s.state_since.map(|t| format_span(s.now - t).replace(' ', "")).unwrap_or_default();
    let corner = MonoTextStyle::new(&FONT_6X10, if down { BinaryColor::Off } else { BinaryColor::On });
    Text::with_text_style(&since, Point::new(126, 1), corner, right).draw(d)?;
    if !sub.is_empty() {
        Text::with_text_style(sub, Point::new(126, 11), corner, right).draw(d)?;
    }
    let loss = s.loss_pct.map_or("--".into(), |l| if l < 10.0 { format!("{l:.1}%") } else { format!("{l:.0}%") });
    text(d, &format!("RTT  {}", ms(s.rtt_ms)), 0, 27)?;
    text(d, &format!("loss {loss}"), 72, 27)?;
    let outage = match (s.outage_ongoing, s.last_outage_end) {
        (true, _) => "outage now".to_string(),
        (false, Some(end)) => format!("last outage {} ago", format_span(s.now - end).replace(' ', "")),
        (false, None) => "no outage recorded".to_string(),
    };
    text(d, &outage, 0, 40)?;
    // The bottom line: the radio at a glance when known, else where to ssh.
    let bottom = match (&s.signal, &s.ip) {
        (Some(sig), _) => format!(
            "{} {} SINR {}",
            sig.radio,
            sig.band.as_deref().unwrap_or(""),
            sig.sinr_db.map_or("--".into(), |v| format!("{v:.0}dB"))
        ),
        (None, Some(ip)) => ip.clone(),
        (None, None) => String::new(),
    };
    text(d, &bottom, 0, 53)?;
    Ok(())
}

fn sparkline<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let vals: Vec<f64> = s.sparkline.iter().flatten().copied().collect();
    let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let range = if vals.is_empty() { "--".into() } else { format!("{:.0}-{:.0}ms", lo, hi) };
    title(d, &format!("RTT 1h  {range}"))?;
    if vals.is_empty() {
        return text(d, "no data yet", 0, 30);
    }
    // 60 minutes over 120 px, y from 62 (lo) to 16 (hi).
    let span = (hi - lo).max(1.0);
    let y = |v: f64| 62 - ((v - lo) / span * 46.0).round() as i32;
    let stroke = PrimitiveStyle::with_stroke(BinaryColor::On, 1);
    let mut prev: Option<Point> = None;
    for (i, v) in s.sparkline.iter().enumerate() {
        let x = 4 + i as i32 * 2;
        match v {
            Some(v) => {
                let p = Point::new(x, y(*v));
                match prev {
                    Some(q) => Line::new(q, p).into_styled(stroke).draw(d)?,
                    None => Pixel(p, BinaryColor::On).draw(d)?,
                }
                prev = Some(p);
            }
            None => {
                // A minute without answers: a tick at the bottom, a gap in the line.
                Line::new(Point::new(x, 63), Point::new(x, 61)).into_styled(stroke).draw(d)?;
                prev = None;
            }
        }
    }
    Ok(())
}

fn speed<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let Some(sp) = &s.speed else { return title(d, "Speed test: none yet") };
    title(d, &format!("Speed test  {} ago", format_span(s.now - sp.at).replace(' ', "")))?;
    let mbps =
        |v: Option<f64>| v.map_or("--".into(), |v| if v < 100.0 { format!("{v:.1}") } else { format!("{v:.0}") });
    Text::with_baseline(&format!("D {}", mbps(sp.down_mbps)), Point::new(0, 14), big(), Baseline::Top).draw(d)?;
    Text::with_baseline(&format!("U {}", mbps(sp.up_mbps)), Point::new(0, 34), big(), Baseline::Top).draw(d)?;
    text(d, "Mbit/s", 92, 20)?;
    text(d, "Mbit/s", 92, 40)?;
    if let Some(b) = sp.bloat_ms {
        text(d, &format!("bufferbloat +{b:.0}ms"), 0, 54)?;
    }
    Ok(())
}

fn signal<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let Some(sig) = &s.signal else { return title(d, "Signal: unknown") };
    title(d, &format!("{} signal  {}", sig.radio, sig.band.as_deref().unwrap_or("")))?;
    let db = |v: Option<f64>| v.map_or("--".into(), |v| format!("{v:.0}"));
    Text::with_baseline(&format!("SINR {}", db(sig.sinr_db)), Point::new(0, 14), big(), Baseline::Top).draw(d)?;
    text(d, "dB", 114, 22)?;
    text(d, &format!("RSRP {} dBm", db(sig.rsrp_dbm)), 0, 38)?;
    // Bars from SINR: <0 poor, 0-10 fair, 10-20 good, >20 excellent.
    let bars = match sig.sinr_db {
        Some(v) if v >= 20.0 => 4,
        Some(v) if v >= 10.0 => 3,
        Some(v) if v >= 0.0 => 2,
        Some(_) => 1,
        None => 0,
    };
    for i in 0..4 {
        let h = 4 + i * 3;
        let r = Rectangle::new(Point::new(100 + i * 7, 63 - h), Size::new(5, h as u32));
        let style = if i < bars {
            PrimitiveStyle::with_fill(BinaryColor::On)
        } else {
            PrimitiveStyle::with_stroke(BinaryColor::On, 1)
        };
        r.into_styled(style).draw(d)?;
    }
    Ok(())
}

/// Wrap `s` into lines of at most `width` characters.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(String::new());
        }
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(&word.chars().take(width).collect::<String>());
    }
    lines
}

fn notice<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    match &s.notice {
        Some((kind, detail)) => {
            let t = match kind {
                EventKind::Prediction => "Heads up",
                EventKind::Degradation => "Degraded",
                EventKind::LevelShift => "Level shift",
                _ => "Anomaly",
            };
            title(d, t)?;
            for (i, line) in wrap(detail, 21).iter().take(5).enumerate() {
                text(d, line, 0, 14 + i as i32 * 10)?;
            }
        }
        None => {
            title(d, "Anomalies")?;
            text(d, "nothing unusual", 0, 20)?;
            text(d, "and none expected", 0, 32)?;
        }
    }
    Ok(())
}

fn address<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let ip = s.ip.as_deref().unwrap_or("(no address)");
    let Some(pin) = &s.setup_pin else {
        title(d, "ssh in")?;
        text(d, "ssh wanwatch.local", 0, 16)?;
        text(d, "or", 0, 28)?;
        text(d, ip, 0, 40)?;
        text(d, "then: wanwatch status", 0, 53)?;
        return Ok(());
    };
    // The set-up page's address and PIN, large enough to type from across the room; ssh below.
    title(d, "Set up in a browser")?;
    let url = format!("{ip}:9099/setup");
    if url.len() <= 21 {
        text(d, &url, 0, 15)?;
    } else {
        // 25 characters fit in the narrower font: any IPv4 address with the port and path.
        let narrow = MonoTextStyle::new(&FONT_5X8, BinaryColor::On);
        Text::with_baseline(&url, Point::new(0, 16), narrow, Baseline::Top).draw(d)?;
    }
    text(d, "PIN", 0, 32)?;
    let shown = match (pin.get(..3), pin.get(3..)) {
        (Some(a), Some(b)) => format!("{a} {b}"),
        _ => pin.clone(),
    };
    Text::with_baseline(&shown, Point::new(24, 26), big(), Baseline::Top).draw(d)?;
    text(d, &format!("ssh {ip}"), 0, 53)?;
    Ok(())
}

/// Placement mode: the signal large, for someone carrying the gateway round the room.
fn placement<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let Some(p) = &s.placement else { return Ok(()) };
    let head: String = format!("Spot: {}", p.spot).chars().take(21).collect();
    title(d, &head)?;
    let f = |x: Option<f64>| x.map_or("--".to_string(), |v| format!("{v:.0}"));
    text(d, "SINR", 0, 19)?;
    Text::with_baseline(&format!("{} dB", f(p.sinr_db_median)), Point::new(36, 14), big(), Baseline::Top).draw(d)?;
    text(d, "RSRP", 0, 39)?;
    Text::with_baseline(&f(p.rsrp_dbm_median), Point::new(36, 34), big(), Baseline::Top).draw(d)?;
    let foot = format!("{} {} n={}", p.radio.to_uppercase(), p.bands, p.samples);
    text(d, &foot.chars().take(21).collect::<String>(), 0, 54)?;
    Ok(())
}

/// When to start the big download: the quietest 3 hours of the coming day, by the last weeks.
fn best_times<D: DrawTarget<Color = BinaryColor>>(d: &mut D, s: &Snapshot) -> Result<(), D::Error> {
    let Some(label) = &s.best_download else { return Ok(()) };
    title(d, "Big downloads: best")?;
    let (hours, when) = match label.split_once(' ') {
        Some((h, w)) => (h, w),
        None => (label.as_str(), "today"),
    };
    Text::with_baseline(hours, Point::new(9, 20), big(), Baseline::Top).draw(d)?;
    text(d, when, 0, 44)?;
    text(d, "(quietest 3h, 4 wks)", 0, 54)?;
    Ok(())
}
