//! The OLED, headless: every page rendered and compared with its golden PNG (tests/golden/,
//! shown in the README), and the SSD1306 byte stream decoded by a fake I2C bus to prove the
//! panel would show exactly that picture.
//!
//! After an intended change of a screen: `WANWATCH_UPDATE_GOLDEN=1 cargo test --test display`,
//! then look at the PNGs before committing them.

use std::path::PathBuf;

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use wanwatch::display::frame::{Frame, HEIGHT, WIDTH};
use wanwatch::display::oled::Oled;
use wanwatch::display::screens::{self, Page};
use wanwatch::display::snapshot::{Signal, Snapshot, Speed};
use wanwatch::sample::LinkState;

const NOW: i64 = 1_795_600_000_000;
const SCALE: usize = 2;

fn snapshot() -> Snapshot {
    Snapshot {
        now: NOW,
        state: LinkState::Up,
        state_since: Some(NOW - (2 * 3600 + 5 * 60) * 1000),
        rtt_ms: Some(31.4),
        loss_pct: Some(0.3),
        last_outage_end: Some(NOW - 26 * 3600 * 1000),
        outage_ongoing: false,
        sparkline: (0..60)
            .map(|i| if i == 41 { None } else { Some(28.0 + ((i * 7) % 11) as f64 + if i > 45 { 25.0 } else { 0.0 }) })
            .collect(),
        speed: Some(Speed {
            down_mbps: Some(212.4),
            up_mbps: Some(31.0),
            bloat_ms: Some(38.0),
            at: NOW - 3 * 3600 * 1000,
        }),
        signal: Some(Signal {
            radio: "5G".into(),
            sinr_db: Some(19.0),
            rsrp_dbm: Some(-84.0),
            band: Some("n41".into()),
        }),
        notice: Some((
            wanwatch::sample::EventKind::Prediction,
            "p95 latency to 1.1.1.1 likely 3x usual in the next 20 min (Sunday 18:00 pattern)".into(),
        )),
        ip: Some("192.168.12.20".into()),
        setup_pin: Some("042917".into()),
        best_download: Some("03:00-06:00 tomorrow".into()),
        placement: None,
    }
}

fn render(page: Page, s: &Snapshot) -> Frame {
    let mut f = Frame::default();
    screens::draw(&mut f, page, s).unwrap();
    f
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.png"))
}

fn write_png(path: &PathBuf, f: &Frame) {
    let (w, h) = (WIDTH * SCALE, HEIGHT * SCALE);
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            data.push(if f.get(x / SCALE, y / SCALE) { 0xff } else { 0x10 });
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

fn read_png(path: &PathBuf) -> Frame {
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width as usize, info.height as usize), (WIDTH * SCALE, HEIGHT * SCALE));
    let mut f = Frame::default();
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            f.set(x, y, buf[(y * SCALE) * WIDTH * SCALE + x * SCALE] > 0x80);
        }
    }
    f
}

fn check_golden(name: &str, f: &Frame) {
    let path = golden_path(name);
    if std::env::var_os("WANWATCH_UPDATE_GOLDEN").is_some() {
        write_png(&path, f);
        return;
    }
    let golden = read_png(&path);
    assert_eq!(&golden, f, "screen {name} differs from {} (left: golden, right: now)", path.display());
}

#[test]
fn every_page_matches_its_golden_image() {
    let s = snapshot();
    for page in [Page::Main, Page::Sparkline, Page::Speed, Page::Signal, Page::Notice, Page::Address, Page::BestTimes] {
        let f = render(page, &s);
        assert!(f.lit() > 40, "{} page is (nearly) blank", page.name());
        check_golden(page.name(), &f);
    }
    let down = Snapshot {
        state: LinkState::WanDown,
        outage_ongoing: true,
        rtt_ms: None,
        loss_pct: Some(100.0),
        state_since: Some(NOW - 95_000),
        ..s.clone()
    };
    check_golden("main_down", &render(Page::Main, &down));
    let degraded = Snapshot { state: LinkState::Degraded, rtt_ms: Some(187.0), loss_pct: Some(6.2), ..s };
    check_golden("main_degraded", &render(Page::Main, &degraded));
}

#[test]
fn rotation_skips_what_is_unknown_and_returns_to_main() {
    let s = snapshot();
    assert_eq!(
        screens::rotation(&s),
        [
            Page::Main,
            Page::Sparkline,
            Page::Main,
            Page::Speed,
            Page::Main,
            Page::Signal,
            Page::Main,
            Page::Notice,
            Page::Main,
            Page::BestTimes,
            Page::Main,
            Page::Address
        ]
    );
    let bare = Snapshot { speed: None, signal: None, ip: None, best_download: None, ..s };
    assert_eq!(screens::rotation(&bare), [Page::Main, Page::Sparkline, Page::Main, Page::Notice]);
}

/// A fake I2C bus with an SSD1306 behind it: decodes the command and data stream into the
/// panel's memory, as the chip would.
#[derive(Default)]
struct FakeSsd1306 {
    ram: Vec<u8>,
    col: (u8, u8),
    page: (u8, u8),
    ptr: (u8, u8),
    display_on: bool,
    contrast: Option<u8>,
    address_seen: Option<u8>,
    absent: bool,
}

impl FakeSsd1306 {
    fn new() -> Self {
        FakeSsd1306 { ram: vec![0; WIDTH * HEIGHT / 8], col: (0, 127), page: (0, 7), ..Default::default() }
    }

    fn command(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let args = match c {
                0x20 | 0x81 | 0xA8 | 0xD3 | 0xD5 | 0xD9 | 0xDA | 0xDB | 0x8D => 1,
                0x21 | 0x22 | 0xA3 => 2,
                0x26 | 0x27 => 6,
                0x29 | 0x2A => 5,
                _ => 0,
            };
            let a = &bytes[i + 1..(i + 1 + args).min(bytes.len())];
            match c {
                0x21 => {
                    self.col = (a[0], a[1]);
                    self.ptr.0 = a[0];
                }
                0x22 => {
                    self.page = (a[0], a[1]);
                    self.ptr.1 = a[0];
                }
                0x81 => self.contrast = Some(a[0]),
                0xAE => self.display_on = false,
                0xAF => self.display_on = true,
                _ => {}
            }
            i += 1 + args;
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        // Horizontal addressing: column by column, then the next page, within the window.
        for &b in bytes {
            let (c, p) = self.ptr;
            self.ram[p as usize * WIDTH + c as usize] = b;
            if c >= self.col.1 {
                self.ptr.0 = self.col.0;
                self.ptr.1 = if p >= self.page.1 { self.page.0 } else { p + 1 };
            } else {
                self.ptr.0 = c + 1;
            }
        }
    }
}

impl ErrorType for FakeSsd1306 {
    type Error = ErrorKind;
}

impl I2c for FakeSsd1306 {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        if self.absent {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        self.address_seen = Some(address);
        for op in operations {
            if let Operation::Write(bytes) = op {
                match bytes.first() {
                    Some(0x00) => self.command(&bytes[1..]),
                    Some(0x40) => self.data(&bytes[1..]),
                    other => panic!("unexpected control byte {other:?}"),
                }
            }
        }
        Ok(())
    }
}

#[test]
fn the_bytes_on_the_bus_draw_the_golden_picture() {
    let s = snapshot();
    let mut oled = Oled::new(FakeSsd1306::new(), 0x3C).unwrap();
    for page in [Page::Main, Page::Speed, Page::Signal] {
        let f = render(page, &s);
        oled.show(&f).unwrap();
        let bus = oled.release();
        assert_eq!(bus.address_seen, Some(0x3C));
        assert!(bus.display_on, "the panel was never switched on");
        assert_eq!(Frame::from_gddram(&bus.ram), f, "{}: what the panel holds differs from the render", page.name());
        oled = Oled::new(bus, 0x3C).unwrap();
    }
    // Night: off; dimming lowers the contrast.
    oled.set_dim(true).unwrap();
    oled.set_on(false).unwrap();
    let bus = oled.release();
    assert!(!bus.display_on);
    assert!(bus.contrast.is_some_and(|c| c < 0x20), "dim contrast {:?}", bus.contrast);
}

#[test]
fn a_missing_oled_is_an_error_not_a_panic() {
    let bus = FakeSsd1306 { absent: true, ..FakeSsd1306::new() };
    assert!(Oled::new(bus, 0x3C).is_err());
}

#[test]
fn shifted_frames_move_the_picture() {
    let f = render(Page::Main, &snapshot());
    let g = f.shifted(2, 1);
    assert_eq!(g.get(2 + 5, 1 + 5), f.get(5, 5));
    assert!(g.lit() <= f.lit());
}

#[test]
fn the_placement_page_shows_the_signal_large() {
    let s = Snapshot {
        placement: Some(wanwatch::placement::Spot {
            rank: 1,
            spot: "kitchen-window".into(),
            radio: "5g".into(),
            sinr_db_median: Some(21.0),
            sinr_db_p25: None,
            sinr_db_p75: None,
            rsrp_dbm_median: Some(-88.0),
            rsrp_dbm_p25: None,
            rsrp_dbm_p75: None,
            samples: 34,
            bands: "n41".into(),
            first_ts: NOW - 34_000,
            last_ts: NOW,
        }),
        ..snapshot()
    };
    assert_eq!(screens::rotation(&s), [Page::Placement]);
    let f = render(Page::Placement, &s);
    check_golden("placement", &f);
}
