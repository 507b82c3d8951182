//! The `wanwatch` command: parse the command line, build the configuration, dispatch.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use wanwatch::config::{self, Overrides, duration::parse as parse_duration};
use wanwatch::detect::models::Source;
use wanwatch::store::Store;
use wanwatch::store::export::{self, ExportError, Format, Table};
use wanwatch::{agent, calendar, clock, replay, status};

#[derive(Parser)]
#[command(
    name = "wanwatch",
    version,
    about = "Home-internet watchdog: measures the link, records outages, explains them."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the link continuously and record everything in the database.
    Run {
        #[command(flatten)]
        common: Common,
        /// Ping this address as an internet anchor (repeat for more); replaces the configured anchors.
        #[arg(long = "target", value_name = "ADDR")]
        targets: Vec<IpAddr>,
        /// The gateway to ping: "auto" (default route), "none", or an address.
        #[arg(long, value_name = "auto|none|ADDR")]
        gateway: Option<String>,
        /// Ping interval for every target, e.g. "1s", "200ms".
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        interval: Option<Duration>,
        /// How long to wait for each reply.
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        timeout: Option<Duration>,
        /// How often buffered samples are written to the database.
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        flush_interval: Option<Duration>,
        /// Context probes to run, comma-separated (dns,http,bandwidth,gateway,weather,syslog,devices,system),
        /// or "none" for ICMP only. Default: every probe the configuration enables.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        probes: Option<Vec<String>>,
        /// Run this long, then flush and exit (default: until SIGINT/SIGTERM).
        #[arg(long = "for", value_parser = parse_duration, value_name = "DUR")]
        run_for: Option<Duration>,
    },
    /// Show the current state, per-target summaries and recent outages.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Print the PIN the set-up page (http://wanwatch.local:9099/setup) asks for, as the
    /// display's address page shows it; for a Pi without a display.
    SetupPin {
        #[command(flatten)]
        common: Common,
    },
    /// Export a table as CSV or JSON lines to stdout, or the whole database as SQLite.
    Export {
        #[command(flatten)]
        common: Common,
        /// Which table (not needed with --format sqlite).
        #[arg(long, value_enum)]
        table: Option<Table>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// From this time: "2h" (ago), "2026-11-25", "2026-11-25 18:00" (UTC), RFC 3339.
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Up to (not including) this time; same forms as --since.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// The file to write (default for csv/jsonl: standard output; required for sqlite). An
        /// existing file is not overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check what the agent needs (ICMP permission, database, OLED, LED, clock, gateway API).
    Doctor {
        #[command(flatten)]
        common: Common,
        /// Skip the check that contacts the gateway.
        #[arg(long)]
        offline: bool,
    },
    /// Keep the database's WAL index (<db>-shm) in RAM, off the SD card: run as root before the
    /// agent starts (the packaged unit does). Idempotent.
    ShmInRam {
        #[command(flatten)]
        common: Common,
    },
    /// Run the detection pipeline over CSV files at full speed and write the alarm times
    /// (JSON {series: [timestamps]}, the form scripts/score.py scores).
    Replay {
        /// CSV files with a header row.
        #[arg(required = true, value_name = "FILE.csv")]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "timestamp", value_name = "C")]
        timestamp_col: String,
        /// A column to watch (repeat for several channels).
        #[arg(long = "value-col", default_value = "value", value_name = "V")]
        value_cols: Vec<String>,
        /// Write the ensemble's alarms here.
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
        /// Write every detector's alarms here, one <detector>.json each (ensemble, forecast,
        /// autoencoder, forest, rules, predict, zscore, zweek).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Write the ensemble's events with their explanations here (JSON lines).
        #[arg(long, value_name = "FILE.jsonl")]
        events: Option<PathBuf>,
        /// Name each series by its path relative to this folder (NAB's labels use data/-relative names).
        #[arg(long, value_name = "DIR")]
        name_root: Option<PathBuf>,
        /// Target false-alarm rate on a healthy series.
        #[arg(long, default_value_t = 1.0, value_name = "N")]
        alarms_per_week: f64,
        /// Learning period before the forest is fitted.
        #[arg(long, value_parser = parse_duration, default_value = "24h", value_name = "DUR")]
        baseline: Duration,
        /// "builtin" or a folder holding forecaster.onnx, autoencoder.onnx, classifier.onnx.
        #[arg(long, default_value = "builtin", value_name = "builtin|DIR")]
        models: String,
        /// Write every step's detector scores (first file, first channel) to this CSV.
        #[arg(long, value_name = "FILE.csv")]
        trace: Option<PathBuf>,
        /// Leave members out of the agent's line-up, for ablations: a comma list of forecaster,
        /// autoencoder, forest, present (the outlook's view of the present).
        #[arg(long, default_value = "", value_parser = parse_members)]
        without: wanwatch::detect::pipeline::Members,
        /// Put members the agent leaves out back in (forecaster, forest), for ablations.
        #[arg(long, default_value = "", value_parser = parse_members)]
        with: wanwatch::detect::pipeline::Members,
        /// Score the outlook only from this time on (default: a week into each series).
        #[arg(long, value_name = "TIME")]
        outlook_from: Option<String>,
    },
    /// Write the evidence report for the ISP: one self-contained HTML file (plots inline), or
    /// Markdown for a support chat.
    Report {
        #[command(flatten)]
        common: Common,
        /// From this time: "7d" (ago, the default), "2026-11-01", "2026-11-25 18:00" (UTC), RFC 3339.
        #[arg(long, default_value = "7d", value_name = "T")]
        since: String,
        /// Up to (not including) this time; default now.
        #[arg(long, default_value = "now", value_name = "T")]
        until: String,
        /// The file to write (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "html")]
        format: ReportFormat,
    },
    /// Write one outage's evidence pack: a self-contained index.html (where it broke, the
    /// timeline, what the ICMP errors said, the radio, weather, router log, events) and the
    /// CSVs behind it, for the outage and 10 minutes either side.
    Incident {
        #[command(flatten)]
        common: Common,
        /// The outage's id (`export --table outages` shows it; the dashboard links each one).
        id: i64,
        /// The folder to write (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Placement mode: record the gateway's radio at a spot (once a second), or rank the spots
    /// tried, best first (5G SINR, then RSRP; LTE where there is no 5G).
    Placement {
        #[command(flatten)]
        common: Common,
        /// The name of the spot the gateway is at now ("kitchen-window").
        #[arg(long, value_name = "NAME", required_unless_present = "list")]
        spot: Option<String>,
        /// How long to record the spot.
        #[arg(long = "for", value_parser = parse_duration, value_name = "DUR", default_value = "60s")]
        record_for: Duration,
        /// Rank the spots recorded so far instead.
        #[arg(long, conflicts_with = "spot")]
        list: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Community comparison (opt-in, `[community]`): where this home stands in its region,
    /// asked of the community's engine with PromQL; or push the pending hours now; or take a new
    /// random install id.
    Community {
        #[command(flatten)]
        common: Common,
        /// Push the hours not yet sent, now (the agent does this every push_interval).
        #[arg(long, conflicts_with = "rotate_id")]
        push: bool,
        /// Use a new random install id from now on.
        #[arg(long)]
        rotate_id: bool,
        /// The window compared, in days.
        #[arg(long, default_value = "7")]
        days: u32,
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Print the configuration in effect (after the file and the command line).
    Config {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum ReportFormat {
    Html,
    Md,
}

#[derive(clap::Args)]
struct Common {
    /// Configuration file (default: /etc/wanwatch/wanwatch.toml if present, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database (default: from the config, else $STATE_DIRECTORY, /var/lib/wanwatch or ./wanwatch.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

impl Common {
    fn load(&self, mut over: Overrides) -> anyhow::Result<config::Config> {
        over.db = self.db.clone();
        Ok(config::load(self.config.as_deref(), &over)?)
    }

    /// The database to read: --db, else the config's, without validating probe settings.
    fn db(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(db) => Ok(db.clone()),
            None => Ok(self.load(Overrides::default())?.db),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    wanwatch::logging::init();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS, // `wanwatch export | head`
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<ExportError>().is_some_and(|x| match x {
                ExportError::Io(io) => io.kind() == io::ErrorKind::BrokenPipe,
                ExportError::Csv(c) => {
                    matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe)
                }
                _ => false,
            })
    })
}

fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run { common, targets, gateway, interval, timeout, flush_interval, probes, run_for } => {
            let over = Overrides { db: None, targets, gateway, interval, timeout, flush_interval, probes };
            let deadline = run_for.map(|d| std::time::Instant::now() + d);
            loop {
                // Read afresh each time round: the set-up page restarts the agent on a new file.
                let cfg = common.load(over.clone())?;
                let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the runtime")?;
                let result = rt.block_on(agent::run(cfg, left));
                // Do not wait for a blocking probe call (a speed test) that was abandoned at stop.
                rt.shutdown_timeout(Duration::from_secs(1));
                if !result?.restart {
                    return Ok(());
                }
            }
        }
        Command::SetupPin { common } => {
            let path = wanwatch::setup::pin::path_for(&common.db()?);
            match wanwatch::setup::pin::read(&path) {
                Some(pin) => {
                    println!("{pin}");
                    eprintln!("(the set-up page's PIN; it changes after every save and after 20 wrong tries)");
                    Ok(())
                }
                None if path.exists() => bail!("{} holds no PIN; restart the agent to make a new one", path.display()),
                None => bail!(
                    "no PIN yet at {}: the agent makes one when it starts with the dashboard on ([web] enabled)",
                    path.display()
                ),
            }
        }
        Command::Status { common } => {
            let store = Store::open_read_only(&common.db()?)?;
            let text = status::render(&store, clock::WallClock::system().now())?;
            io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Export { common, table, format, since, until, out } => {
            let db = common.db()?;
            let store = Store::open_read_only(&db)?;
            if format == Format::Sqlite {
                let Some(out) = out else { bail!("--format sqlite needs --out FILE") };
                if out.exists() {
                    bail!("{} already exists; choose a new file for the copy", out.display());
                }
                export::backup(&store, &out)?;
                eprintln!("copied {} to {}", db.display(), out.display());
                return Ok(());
            }
            let Some(table) = table else {
                let names: Vec<String> = Table::value_variants()
                    .iter()
                    .filter_map(|t| t.to_possible_value().map(|v| v.get_name().to_string()))
                    .collect();
                bail!("--table is required: one of {}", names.join(", "))
            };
            let now = clock::WallClock::system().now();
            let parse = |flag: &str, v: &Option<String>, default| -> anyhow::Result<i64> {
                v.as_deref()
                    .map_or(Ok(default), |s| calendar::parse_time(s, now).map_err(|m| anyhow::anyhow!("{flag}: {m}")))
            };
            let since = parse("--since", &since, i64::MIN)?;
            let until = parse("--until", &until, i64::MAX)?;
            if until <= since {
                bail!(
                    "--until ({}) must be after --since ({})",
                    calendar::format_time(until),
                    calendar::format_time(since)
                );
            }
            match out {
                None => {
                    export::write_table(&store, table, format, since, until, io::stdout().lock())?;
                }
                Some(path) => {
                    // Written beside, then renamed: a failed export leaves no partial file.
                    if path.exists() {
                        bail!("{} already exists; choose a new file", path.display());
                    }
                    let mut tmp = path.as_os_str().to_owned();
                    tmp.push(".partial");
                    let tmp = PathBuf::from(tmp);
                    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                    let mut w = io::BufWriter::new(file);
                    let written = export::write_table(&store, table, format, since, until, &mut w)
                        .map_err(anyhow::Error::from)
                        .and_then(|rows| {
                            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                            std::fs::rename(&tmp, &path)?;
                            Ok(rows)
                        });
                    match written {
                        Ok(rows) => eprintln!("wrote {rows} rows to {}", path.display()),
                        Err(e) => {
                            let _ = std::fs::remove_file(&tmp);
                            return Err(e.context(format!("exporting to {}", path.display())));
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Placement { common, spot, record_for, list, format } => {
            let cfg = common.load(Overrides::default())?;
            if list {
                let store = Store::open_read_only(&cfg.db)?;
                let spots = wanwatch::placement::rank(&store.placement_rows(0)?);
                let out = match format {
                    ListFormat::Json => serde_json::to_string_pretty(&spots)? + "\n",
                    ListFormat::Text => wanwatch::placement::text(&spots),
                };
                io::stdout().lock().write_all(out.as_bytes())?;
                return Ok(());
            }
            let spot = spot.expect("clap requires --spot without --list");
            let gw = &cfg.probes.gateway_api;
            let base = match gw.url.as_str() {
                "auto" => {
                    let addr = cfg.targets.iter().find(|t| t.target.role == wanwatch::sample::Role::Gateway);
                    let Some(addr) = addr.map(|t| t.target.addr) else {
                        return Err(wanwatch::placement::PlacementError::NoAddress.into());
                    };
                    format!("http://{addr}")
                }
                url => url.trim_end_matches('/').to_string(),
            };
            let store = Store::open(&cfg.db, cfg.store.journal_size_limit_bytes)?;
            let clock = clock::WallClock::system();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            eprintln!(
                "recording spot \"{spot}\" for {}; leave the gateway still",
                humantime::format_duration(record_for)
            );
            let mut progress = |rows: &[wanwatch::store::placement::Row]| {
                let shown: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1}"));
                        format!("{} SINR {} dB RSRP {} dBm", r.radio.to_uppercase(), f(r.sinr_db), f(r.rsrp_dbm))
                    })
                    .collect();
                eprintln!("  {}", shown.join("   "));
            };
            let n = rt.block_on(wanwatch::placement::record(
                &store,
                &wanwatch::placement::Gateway { base, kind: gw.kind, timeout: gw.timeout },
                &spot,
                record_for,
                &|| clock.now(),
                &mut progress,
            ))?;
            eprintln!("{n} readings kept for \"{spot}\"; compare the spots with: wanwatch placement --list");
            Ok(())
        }
        Command::Community { common, push, rotate_id, days, format } => {
            use wanwatch::community::{push as community_push, query};
            let cfg = common.load(Overrides::default())?;
            let state_path = community_push::state_path(&cfg.db);
            if rotate_id {
                let s = community_push::rotate_id(&state_path)?;
                println!("new install id: {}", s.install);
                return Ok(());
            }
            if !cfg.community.enabled {
                return Err(community_push::CommunityError::NotEnabled.into());
            }
            if push {
                let p = community_push::push_pending(&cfg.community, &cfg.db, clock::WallClock::system().now())?;
                println!("pushed {} hours ({} samples in {} series)", p.hours, p.samples, p.series);
                return Ok(());
            }
            let state = community_push::load_state(&state_path);
            let engine = query::Engine::new(&cfg.community.query_base(), community_push::token(&cfg.community)?);
            let c = query::compare(&engine, &cfg.community, &state.install, days)?;
            let out = match format {
                ListFormat::Json => serde_json::to_string_pretty(&c)? + "\n",
                ListFormat::Text => query::text(&c),
            };
            io::stdout().lock().write_all(out.as_bytes())?;
            Ok(())
        }
        Command::Doctor { common, offline } => {
            let cfg = common.load(Overrides::default())?;
            let checks = wanwatch::doctor::run(&cfg, offline);
            print!("{}", wanwatch::doctor::render(&checks));
            if checks.iter().any(|c| c.level == wanwatch::doctor::Level::Fail) {
                bail!("some checks failed; fix the FAIL lines above");
            }
            Ok(())
        }
        Command::ShmInRam { common } => {
            let db = common.db()?;
            match wanwatch::store::shm::keep_in_ram(&db, Path::new(wanwatch::store::shm::RAM_DIR))? {
                wanwatch::store::shm::Outcome::Already => println!("{}-shm: already in RAM", db.display()),
                wanwatch::store::shm::Outcome::Mounted(from) => {
                    println!("{}-shm: now in RAM ({})", db.display(), from.display())
                }
            }
            Ok(())
        }
        Command::Replay {
            files,
            timestamp_col,
            value_cols,
            out,
            out_dir,
            events,
            name_root,
            alarms_per_week,
            baseline,
            models,
            trace,
            without,
            with,
            outlook_from,
        } => {
            let without = wanwatch::detect::pipeline::Members::AGENT.change(without, false).change(with, true);
            let outlook_from = match outlook_from {
                Some(t) => Some(calendar::parse_time(&t, 0).map_err(|m| anyhow::anyhow!("--outlook-from: {m}"))?),
                None => None,
            };
            let opts = replay::Options {
                timestamp_col,
                value_cols,
                alarms_per_week,
                baseline_ms: baseline.as_millis() as i64,
                models: Source::parse(&models),
                trace,
                without,
                outlook_from,
            };
            run_replay(&files, &opts, name_root.as_ref(), out.as_deref(), out_dir.as_deref(), events.as_deref())
        }
        Command::Report { common, since, until, out, format } => {
            let cfg = common.load(Overrides::default())?;
            let now = clock::WallClock::system().now();
            let since = calendar::parse_time(&since, now).map_err(|m| anyhow::anyhow!("--since: {m}"))?;
            let until = calendar::parse_time(&until, now).map_err(|m| anyhow::anyhow!("--until: {m}"))?;
            if until <= since {
                bail!("--until must be after --since");
            }
            write_report(&cfg, since, until, out.as_deref(), format)
        }
        Command::Incident { common, id, out } => {
            let cfg = common.load(Overrides::default())?;
            let store = Store::open_read_only(&cfg.db)?;
            let now = clock::WallClock::system().now();
            let files = wanwatch::report::incident::write_pack(&store, id, now, &out)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Config { common } => {
            let cfg = common.load(Overrides::default())?;
            // Written, not println!'d: `wanwatch config | head` ends quietly.
            io::stdout().lock().write_all(cfg.to_toml().as_bytes())?;
            Ok(())
        }
    }
}

/// `wanwatch report`: build, render and write, with a progress bar on a terminal.
fn write_report(
    cfg: &config::Config,
    since: i64,
    until: i64,
    out: Option<&std::path::Path>,
    format: ReportFormat,
) -> anyhow::Result<()> {
    use wanwatch::report;
    let store = Store::open_read_only(&cfg.db)?;
    // indicatif draws nothing when stderr is not a terminal (cron, pipes, tests).
    let bar = indicatif::ProgressBar::new(report::STAGES);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |stage: &str| {
        bar.inc(1);
        bar.set_message(stage.to_string());
    };
    let plan = report::Plan::of(&cfg.report);
    let r = report::build(&store, since, until, plan, &progress)?;
    let text = match format {
        ReportFormat::Html => report::render::html(&r, &progress),
        ReportFormat::Md => report::render::markdown(&r, &progress),
    }?;
    bar.finish_and_clear();
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} minutes, {} outages, {} events)",
                path.display(),
                r.summary.measured_minutes,
                r.data.outages.len(),
                r.data.events.len()
            );
        }
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

fn parse_members(s: &str) -> Result<wanwatch::detect::pipeline::Members, wanwatch::input::BadInput> {
    wanwatch::detect::pipeline::Members::parse(s)
}

/// Replays files on every core, then writes the alarm files.
fn run_replay(
    files: &[PathBuf],
    opts: &replay::Options,
    root: Option<&PathBuf>,
    out: Option<&std::path::Path>,
    out_dir: Option<&std::path::Path>,
    events: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let started = std::time::Instant::now();
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("no panics hold this lock");
                        *n += 1;
                        *n - 1
                    };
                    let Some(path) = files.get(i) else { break };
                    let name = replay::series_name(path, root);
                    let r = replay::replay(path, &name, opts);
                    results.lock().expect("no panics hold this lock").push((i, name, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|r| r.0);
    let mut by_detector: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let mut all_events = Vec::new();
    let mut outlook = serde_json::Map::new();
    let mut steps = 0;
    for (_, name, r) in results {
        let r = r?;
        steps += r.steps;
        let counts: Vec<String> = r.alarms.iter().map(|(d, a)| format!("{d} {}", a.len())).collect();
        eprintln!("{name}: {} rows, step {}s, alarms: {}", r.rows, r.step_ms / 1000, counts.join(", "));
        for (d, a) in r.alarms {
            by_detector.entry(d).or_default().insert(name.clone(), a.into());
        }
        all_events.extend(r.events);
        outlook.insert(name.clone(), serde_json::to_value(&r.outlook)?);
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{} files, {steps} steps in {secs:.1} s ({:.0} steps/s)", files.len(), steps as f64 / secs);
    let write = |path: &std::path::Path, map: &serde_json::Map<String, serde_json::Value>| -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(map)?).with_context(|| format!("writing {}", path.display()))
    };
    if let Some(out) = out {
        write(out, by_detector.get("ensemble").unwrap_or(&serde_json::Map::new()))?;
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (d, map) in &by_detector {
            write(&dir.join(format!("{d}.json")), map)?;
        }
        // The outlook's Brier scores (and the climatology's) per series, after its first week.
        write(&dir.join("outlook.json"), &outlook)?;
    }
    if let Some(path) = events {
        let mut text = String::new();
        for e in &all_events {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
