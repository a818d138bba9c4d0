//! The metrics each supervised worker reports in its heartbeat: one struct
//! per kind of worker, all sharing [`CommonMetrics`], and [`WorkerMetrics`],
//! the one type heartbeats, `/status` and the `worker_metrics` WebSocket
//! message carry.
//!
//! Keys are camelCase, as the seed's `worker_metrics` (`cpuUser`,
//! `heapUsed`, `timestamp`), so a client written against the seed finds
//! them under the seed's names. The README's "Worker metrics" section lists
//! every key; a test holds it and these structs to the same list.
//!
//! ```json
//! {"cpuUser":"15.20","heapUsed":52428800,"timestamp":1704277020000,
//!  "clients":2,"published":8123,"address":"127.0.0.1:3000"}
//! ```

use serde::{Deserialize, Serialize};

use crate::lifecycle::process_rss_bytes;
use crate::storage::StorageStats;

/// What every worker reports, whatever its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonMetrics {
    /// CPU used since the previous heartbeat, in percent of one core with
    /// two decimals. A string because the seed sends one (`"15.20"`).
    pub cpu_user: String,
    /// Resident memory of the whole process, in bytes: workers are threads
    /// of one process and share one heap, so every worker reports the same
    /// figure (0 where the platform does not tell).
    pub heap_used: u64,
    /// When the worker took these figures, UTC ms.
    pub timestamp: i64,
}

impl CommonMetrics {
    /// The figures of this moment, given the worker's CPU percentage (from
    /// its [`CpuMeter`](crate::lifecycle::CpuMeter)): the one place the
    /// seed's formats are produced.
    pub fn now(cpu_percent: f64) -> Self {
        CommonMetrics {
            cpu_user: format!("{cpu_percent:.2}"),
            heap_used: process_rss_bytes().unwrap_or(0),
            timestamp: ohlcv_domain::time::now_ms(),
        }
    }
}

/// What the datasource of one exchange reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceMetrics {
    /// CPU, memory and time.
    #[serde(flatten)]
    pub common: CommonMetrics,
    /// `connecting`, `syncing`, `streaming` or `reconnecting`.
    pub state: String,
    /// Series subscribed (symbols × intervals).
    pub series: usize,
    /// Live updates accepted since the datasource started.
    pub updates: u64,
    /// Live updates that closed a candle.
    pub candles_closed: u64,
    /// Candles of REST history handed to storage.
    pub history_candles: u64,
    /// Reconnects of the live stream.
    pub reconnects: u64,
    /// Gaps in the live stream filled over REST.
    pub gap_fills: u64,
    /// Candles and messages refused as invalid or stale.
    pub rejected: u64,
    /// Updates waiting in the datasource for room in the storage channel.
    pub storage_pending: usize,
    /// When this incarnation started, UTC ms.
    pub started_at: i64,
    /// Milliseconds since the stream last said anything.
    pub last_message_ago_ms: u64,
    /// The last connection or exchange error, if any.
    pub last_error: Option<String>,
}

/// What the storage thread reports: its counters and those every worker
/// reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageMetrics {
    /// CPU, memory and time.
    #[serde(flatten)]
    pub common: CommonMetrics,
    /// The thread's counters, which `StorageHandle::stats` also answers.
    #[serde(flatten)]
    pub stats: StorageStats,
}

/// What the gateway (HTTP and WebSocket server) reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayMetrics {
    /// CPU of the server's worker threads, memory and time.
    #[serde(flatten)]
    pub common: CommonMetrics,
    /// WebSocket clients connected.
    pub clients: usize,
    /// Messages published to WebSocket clients since start.
    pub published: u64,
    /// The address the server listens on.
    pub address: String,
}

/// What the monitor reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorMetrics {
    /// CPU, memory and time.
    #[serde(flatten)]
    pub common: CommonMetrics,
    /// Workers whose heartbeats the monitor expects.
    pub watched: usize,
    /// WebSocket clients receiving `worker_metrics`.
    pub clients: usize,
}

/// The metrics of any worker, serialised as the worker's own struct
/// (untagged): the key of `worker_metrics` and the `name` in `/status`
/// already say which worker it is.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WorkerMetrics {
    /// From a datasource.
    Datasource(DatasourceMetrics),
    /// From the storage thread.
    Storage(StorageMetrics),
    /// From the gateway.
    Gateway(GatewayMetrics),
    /// From the monitor.
    Monitor(MonitorMetrics),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;

    fn common() -> CommonMetrics {
        CommonMetrics {
            cpu_user: "1.50".into(),
            heap_used: 52_428_800,
            timestamp: 1_704_277_020_000,
        }
    }

    /// One example of each kind, as the README names it.
    fn examples() -> Vec<(&'static str, WorkerMetrics)> {
        vec![
            (
                "datasource",
                WorkerMetrics::Datasource(DatasourceMetrics {
                    common: common(),
                    state: "streaming".into(),
                    series: 2,
                    updates: 10,
                    candles_closed: 1,
                    history_candles: 240,
                    reconnects: 0,
                    gap_fills: 0,
                    rejected: 0,
                    storage_pending: 0,
                    started_at: 1_704_277_000_000,
                    last_message_ago_ms: 12,
                    last_error: None,
                }),
            ),
            (
                "storage",
                WorkerMetrics::Storage(StorageMetrics {
                    common: common(),
                    stats: StorageStats::default(),
                }),
            ),
            (
                "gateway",
                WorkerMetrics::Gateway(GatewayMetrics {
                    common: common(),
                    clients: 1,
                    published: 99,
                    address: "127.0.0.1:3000".into(),
                }),
            ),
            (
                "monitor",
                WorkerMetrics::Monitor(MonitorMetrics {
                    common: common(),
                    watched: 3,
                    clients: 1,
                }),
            ),
        ]
    }

    fn keys(value: &Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The keys the README's "Worker metrics" section lists, by the kind
    /// named in bold before each table (`**Datasource**` …), `common` for
    /// the table every worker shares.
    fn documented_keys() -> BTreeMap<String, Vec<String>> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Worker metrics\n")
            .nth(1)
            .expect("README has a Worker metrics section");
        let section = section.split("\n## ").next().unwrap();
        let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut kind = None;
        for line in section.lines() {
            if let Some(bold) = line.strip_prefix("**") {
                let name = bold.split("**").next().unwrap();
                kind = Some(name.to_lowercase());
            } else if let Some(row) = line.strip_prefix("| `") {
                let key = row.split('`').next().unwrap().to_owned();
                let kind = kind.clone().expect("a table after a **Kind** line");
                documented.entry(kind).or_default().push(key);
            }
        }
        for keys in documented.values_mut() {
            keys.sort();
        }
        documented
    }

    #[test]
    fn every_kind_sends_exactly_the_keys_the_readme_lists() {
        let documented = documented_keys();
        let common = &documented["every worker"];
        assert_eq!(*common, ["cpuUser", "heapUsed", "timestamp"]);
        for (kind, metrics) in examples() {
            let value = serde_json::to_value(&metrics).unwrap();
            let mut expected: Vec<String> = documented
                .get(kind)
                .unwrap_or_else(|| panic!("README has no **{kind}** table"))
                .iter()
                .chain(common)
                .cloned()
                .collect();
            expected.sort();
            assert_eq!(keys(&value), expected, "{kind}: {value}");
        }
        assert_eq!(documented.len(), examples().len() + 1, "{documented:?}");
    }

    #[test]
    fn keys_are_camel_case_and_the_common_ones_are_at_the_top_level() {
        for (kind, metrics) in examples() {
            let value = serde_json::to_value(&metrics).unwrap();
            for key in keys(&value) {
                assert!(
                    key.chars().next().unwrap().is_ascii_lowercase()
                        && key.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{kind}: {key}"
                );
            }
            assert_eq!(value["cpuUser"], "1.50", "{kind}");
            assert_eq!(value["heapUsed"], 52_428_800, "{kind}");
            assert_eq!(value["timestamp"], 1_704_277_020_000_i64, "{kind}");
        }
    }

    #[test]
    fn each_kind_reads_back_from_what_it_sends() {
        for (kind, metrics) in examples() {
            let value = serde_json::to_value(&metrics).unwrap();
            let back = match &metrics {
                WorkerMetrics::Datasource(_) => {
                    WorkerMetrics::Datasource(serde_json::from_value(value).unwrap())
                }
                WorkerMetrics::Storage(_) => {
                    WorkerMetrics::Storage(serde_json::from_value(value).unwrap())
                }
                WorkerMetrics::Gateway(_) => {
                    WorkerMetrics::Gateway(serde_json::from_value(value).unwrap())
                }
                WorkerMetrics::Monitor(_) => {
                    WorkerMetrics::Monitor(serde_json::from_value(value).unwrap())
                }
            };
            assert_eq!(back, metrics, "{kind}");
        }
    }

    #[test]
    fn the_cpu_percentage_is_a_string_with_two_decimals_as_in_the_seed() {
        let now = CommonMetrics::now(15.2);
        assert_eq!(now.cpu_user, "15.20");
        assert!(now.timestamp > 0);
        if cfg!(target_os = "linux") {
            assert!(now.heap_used > 0);
        }
    }
}
