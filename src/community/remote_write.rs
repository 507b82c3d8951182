//! Prometheus remote-write 1.0: a `WriteRequest` protobuf, snappy block-compressed, POSTed with
//! the protocol's headers. The messages are the four of `prompb/types.proto` and
//! `prompb/remote.proto` that 1.0 needs, declared with prost's derive (no build script).

use std::time::Duration;

use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl TimeSeries {
    /// One series with one sample; labels sorted by name, as the protocol requires.
    pub fn one(name: &str, labels: &[(&str, &str)], value: f64, ts: i64) -> TimeSeries {
        let mut l: Vec<Label> = std::iter::once(("__name__", name))
            .chain(labels.iter().copied())
            .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
            .collect();
        l.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries { labels: l, samples: vec![Sample { value, timestamp: ts }] }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }
}

/// The body: protobuf, then snappy's block format (not the framed one).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy compresses any input")
}

/// Read a body back (tests, and a receiver written in Rust).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// Why a push did not land.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Worth trying again later: the server is down, busy or unreachable.
    #[error("the receiver is unreachable or busy ({0}); kept for the next push")]
    Retry(String),
    /// The server refused the data itself (4xx other than 429): retrying will not help.
    #[error("the receiver refused the samples: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// POST one request to `url` (the token, if any, as a bearer token).
pub fn send(url: &str, token: Option<&str>, req: &WriteRequest, timeout: Duration) -> Result<(), PushError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("wanwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = r.send(&encode(req)[..]).map_err(|e| PushError::Retry(e.to_string()))?;
    let status = resp.status().as_u16();
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(PushError::Retry(format!("HTTP {status}"))),
        _ => {
            let body = resp.body_mut().with_config().limit(512).read_to_string().unwrap_or_default();
            Err(PushError::Refused { status, body: body.trim().to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_labels_are_sorted() {
        let ts = TimeSeries::one(
            "wanwatch_community_pings_sent",
            &[("region", "981"), ("hour", "19")],
            14400.0,
            1_795_600_800_000,
        );
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "hour", "region"]);
        let req = WriteRequest { timeseries: vec![ts] };
        let body = encode(&req);
        assert_eq!(decode(&body).unwrap(), req);
        // Field numbers as in prompb: a hand-decoded prefix (field 1, wire type 2: a TimeSeries).
        let raw = req.encode_to_vec();
        assert_eq!(raw[0], 0x0a);
    }
}
