//! The `wanwatch` command: parse the command line, build the configuration, dispatch.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use wanwatch::config::{self, Overrides, file::parse_duration};
use wanwatch::store::Store;
use wanwatch::store::export::{self, ExportError, Format, Table};
use wanwatch::{agent, clock, status, timefmt};

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
        /// With --format sqlite: the file to write.
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
    /// Print the configuration in effect (after the file and the command line).
    Config {
        #[command(flatten)]
        common: Common,
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WANWATCH_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(io::stderr)
        .init();
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
            let cfg =
                common.load(Overrides { db: None, targets, gateway, interval, timeout, flush_interval, probes })?;
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
            let result = rt.block_on(agent::run(cfg, run_for));
            // Do not wait for a blocking probe call (a speed test) that was abandoned at stop.
            rt.shutdown_timeout(Duration::from_secs(1));
            result?;
            Ok(())
        }
        Command::Status { common } => {
            let store = Store::open_read_only(&common.db()?)?;
            let text = status::render(&store, clock::system_wall_ms())?;
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
            let Some(table) = table else { bail!("--table is required: samples, minutes, outages or events") };
            let now = clock::system_wall_ms();
            let parse = |flag: &str, v: &Option<String>, default| -> anyhow::Result<i64> {
                v.as_deref()
                    .map_or(Ok(default), |s| timefmt::parse_time(s, now).map_err(|m| anyhow::anyhow!("{flag}: {m}")))
            };
            let since = parse("--since", &since, i64::MIN)?;
            let until = parse("--until", &until, i64::MAX)?;
            export::write_table(&store, table, format, since, until, io::stdout().lock())?;
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
        Command::Config { common } => {
            let cfg = common.load(Overrides::default())?;
            println!("# source: {}", cfg.source);
            println!("db = {:?}", cfg.db.display().to_string());
            for t in &cfg.targets {
                println!(
                    "target {} role={} interval={} timeout={}",
                    t.target,
                    t.target.role.as_str(),
                    humantime::format_duration(t.interval),
                    humantime::format_duration(t.timeout)
                );
            }
            println!("{:?}", cfg.state);
            println!("{:?}", cfg.store);
            Ok(())
        }
    }
}
