//! "Your area vs others", asked of the engine itself: every number here is the answer to a
//! PromQL query over its HTTP API (`/api/v1/query`), never computed from raw data on the Pi. A
//! region is compared only when at least `min_homes` installs share in it (k-anonymity on the
//! reading side: the query for a smaller region's distribution is not even sent).

use std::time::Duration;

use serde::Serialize;

use crate::config::outputs::CommunityConfig;

/// The household's evenings, local time, as the `hour` label carries them.
pub const EVENING: &str = "19|20|21|22";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    /// This home's value.
    pub mine: f64,
    /// Share of the region's homes at or below this home's value, 0-100 (higher is worse).
    pub percentile: f64,
    pub region_median: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub region: String,
    pub days: u32,
    /// Installs that pushed in the region over the window.
    pub homes: usize,
    pub min_homes: u32,
    /// Shown only when `homes >= min_homes`.
    pub evening_loss_pct: Option<Standing>,
    pub outage_minutes: Option<Standing>,
    /// The region's worst local hours by loss: (hour, loss %).
    pub worst_hours: Vec<(u32, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the community server at {url} did not answer ({why})")]
    Unreachable { url: String, why: String },
    #[error("the community server refused a query: {0}")]
    Refused(String),
}

/// A Prometheus-compatible query API.
pub struct Engine {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// One element of an instant vector: its labels and value.
pub type Element = (serde_json::Map<String, serde_json::Value>, f64);

impl Engine {
    pub fn new(base: &str, token: Option<String>) -> Engine {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .build()
            .into();
        Engine { base: base.trim_end_matches('/').to_string(), token, agent }
    }

    /// An instant query; a scalar comes back as one element without labels.
    pub fn query(&self, promql: &str) -> Result<Vec<Element>, QueryError> {
        let url = format!("{}/api/v1/query", self.base);
        let mut req = self.agent.get(&url).query("query", promql);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| QueryError::Unreachable { url: url.clone(), why: e.to_string() })?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(8 << 20).read_to_string().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|_| QueryError::Unreachable { url: url.clone(), why: format!("HTTP {status}, not JSON") })?;
        if v["status"] != "success" {
            return Err(QueryError::Refused(format!(
                "{} ({promql})",
                v["error"].as_str().unwrap_or("no reason given")
            )));
        }
        let value = |x: &serde_json::Value| x.get(1).and_then(|s| s.as_str()).and_then(|s| s.parse::<f64>().ok());
        let data = &v["data"];
        Ok(match data["resultType"].as_str() {
            Some("scalar") => value(&data["result"]).map(|x| vec![(Default::default(), x)]).unwrap_or_default(),
            _ => data["result"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| {
                            Some((e["metric"].as_object().cloned().unwrap_or_default(), value(&e["value"])?))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn one(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        Ok(self.query(promql)?.first().map(|e| e.1).filter(|x| x.is_finite()))
    }
}

/// PromQL label matcher value, escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where this home (`install`) stands in its region over the last `days` days.
pub fn compare(engine: &Engine, cfg: &CommunityConfig, install: &str, days: u32) -> Result<Comparison, QueryError> {
    let (r, i, w) = (quoted(&cfg.region), quoted(install), format!("{days}d"));
    let homes = engine
        .one(&format!(
            "count(count by (install) (count_over_time(wanwatch_community_measured_minutes{{region={r}}}[{w}])))"
        ))?
        .unwrap_or(0.0) as usize;
    let mut c = Comparison {
        region: cfg.region.clone(),
        days,
        homes,
        min_homes: cfg.min_homes,
        evening_loss_pct: None,
        outage_minutes: None,
        worst_hours: Vec::new(),
    };
    if homes < cfg.min_homes as usize {
        return Ok(c);
    }
    let ratio = |filter: &str, by: &str| {
        format!(
            "100 * sum by ({by}) (sum_over_time(wanwatch_community_pings_lost{{{filter}}}[{w}])) \
             / sum by ({by}) (sum_over_time(wanwatch_community_pings_sent{{{filter}}}[{w}]))"
        )
    };
    let standing = |per_home: &str, mine: &str| -> Result<Option<Standing>, QueryError> {
        let Some(m) = engine.one(&format!("sum({mine})"))? else { return Ok(None) };
        let below = engine.one(&format!("count(({per_home}) <= scalar({mine}))"))?.unwrap_or(0.0);
        let all = engine.one(&format!("count({per_home})"))?.unwrap_or(0.0);
        let median = engine.one(&format!("quantile(0.5, {per_home})"))?.unwrap_or(f64::NAN);
        Ok((all > 0.0).then(|| Standing { mine: m, percentile: 100.0 * below / all, region_median: median }))
    };
    let evening = format!("region={r},hour=~\"{EVENING}\"");
    c.evening_loss_pct = standing(&ratio(&evening, "install"), &ratio(&format!("{evening},install={i}"), "install"))?;
    let outages = |filter: String| {
        format!("sum by (install) (sum_over_time(wanwatch_community_outage_minutes{{{filter}}}[{w}]))")
    };
    c.outage_minutes = standing(&outages(format!("region={r}")), &outages(format!("region={r},install={i}")))?;
    let mut worst: Vec<(u32, f64)> = engine
        .query(&format!("topk(3, {})", ratio(&format!("region={r}"), "hour")))?
        .into_iter()
        .filter_map(|(m, v)| Some((m.get("hour")?.as_str()?.parse().ok()?, v)))
        .collect();
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    c.worst_hours = worst;
    Ok(c)
}

/// The comparison in words.
pub fn text(c: &Comparison) -> String {
    let mut out = format!("Region {}: {} homes sharing over the last {} days.\n", c.region, c.homes, c.days);
    if c.homes < c.min_homes as usize {
        out.push_str(&format!(
            "Too few to compare: a region is shown only with at least {} homes (k-anonymity).\n",
            c.min_homes
        ));
        return out;
    }
    let line = |what: &str, s: &Option<Standing>, unit: &str, digits: usize| match s {
        Some(s) => format!(
            "{what}: yours {:.digits$}{unit}, the region's median {:.digits$}{unit}; {:.0}% of homes here are at or below yours (higher is worse).\n",
            s.mine, s.region_median, s.percentile
        ),
        None => format!("{what}: no data from this home yet.\n"),
    };
    out.push_str(&line("Evening loss (19:00-23:00)", &c.evening_loss_pct, "%", 2));
    out.push_str(&line("Outage minutes", &c.outage_minutes, " min", 0));
    if !c.worst_hours.is_empty() {
        let hours: Vec<String> = c.worst_hours.iter().map(|(h, l)| format!("{h:02}:00 ({l:.2}% loss)")).collect();
        out.push_str(&format!("The region's worst hours: {}.\n", hours.join(", ")));
    }
    out
}
