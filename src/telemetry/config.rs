//! `[server]` and `[log]`: the telemetry listener, shutdown, and how logs are written.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LogFormat;
use crate::validate::{Field, Problems, choice, duration};

crate::validated!(RawServer => ServerConfig, ServerConfig::from_raw);
crate::validated!(RawLog => LogConfig, LogConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawServer {
    pub listen: Field<String>,
    pub shutdown_grace: Field<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLog {
    pub format: Field<String>,
    pub level: Field<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl ServerConfig {
    pub fn from_raw(raw: RawServer, p: &mut Problems) -> Self {
        let text = raw
            .listen
            .get("server.listen", p)
            .unwrap_or_else(|| "127.0.0.1:9464".into());
        let listen = text.parse().unwrap_or_else(|_| {
            p.push(
                "server.listen",
                format!("not an address like \"127.0.0.1:9464\": {text:?}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 9464))
        });
        let shutdown_grace = duration(
            p,
            "server.shutdown_grace",
            raw.shutdown_grace,
            "30s",
            (Duration::from_secs(1), Duration::from_secs(110)),
            " (keep it below systemd's TimeoutStopSec and ECS's stopTimeout of at most 120s)",
        );
        Self {
            listen,
            shutdown_grace,
        }
    }
}

impl LogConfig {
    pub fn from_raw(raw: RawLog, p: &mut Problems) -> Self {
        let format = choice(
            p,
            "log.format",
            raw.format,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            LogFormat::Text,
        );
        let level = raw.level.get("log.level", p).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            p.push(
                "log.level",
                format!("not a level or filter like \"info\" or \"trailguard=debug\": {level:?}"),
            );
        }
        Self { format, level }
    }
}
