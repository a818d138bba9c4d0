//! HTTP helpers: the collector's routes as the harness uses them.

use std::net::SocketAddr;
use std::time::Duration;

use ohlcv_actors::metrics::{DatasourceMetrics, StorageMetrics};
use serde_json::Value;

use crate::HarnessError;

/// Timeout of one request. Generous: on a shared machine under a flood a
/// request may be slow, and a slow answer is not what the harness checks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A client of one collector's HTTP API.
///
/// It keeps no idle connection: every request opens its own and closes it,
/// so that between requests the collector holds no socket of the harness
/// and its open-file count is not blurred by the harness's own pool.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// A client of the collector listening on `addr`.
    pub fn new(addr: SocketAddr) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Api {
            base: format!("http://{addr}"),
            agent,
        }
    }

    /// `GET path`, expecting 200 and a JSON body.
    ///
    /// # Errors
    /// [`HarnessError::Http`] when the request fails or the status is not 200.
    pub fn get(&self, path: &str) -> Result<Value, HarnessError> {
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        read(response, "GET", path)
    }

    /// `POST path` with `body` as JSON, expecting 200 and a JSON body.
    ///
    /// # Errors
    /// [`HarnessError::Http`] when the request fails or the status is not 200.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, HarnessError> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .send_json(body);
        read(response, "POST", path)
    }

    /// `GET /status`.
    ///
    /// # Errors
    /// As [`Api::get`].
    pub fn status(&self) -> Result<Status, HarnessError> {
        self.get("/status").map(Status)
    }

    /// `POST /restart`: the collector re-reads its config file and
    /// restarts every datasource with it. Faults can only be switched this
    /// way (`POST /config` refuses to change them), so the harness writes
    /// the config file first. Answers the `applied` report.
    ///
    /// # Errors
    /// As [`Api::post`] (a file that does not validate is a 400).
    pub fn restart(&self) -> Result<Value, HarnessError> {
        self.post("/restart", &Value::Object(serde_json::Map::new()))
            .map(|body| body["applied"].clone())
    }
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    method: &str,
    path: &str,
) -> Result<Value, HarnessError> {
    let mut response = response.map_err(|e| HarnessError::Http(format!("{method} {path}: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| HarnessError::Http(format!("{method} {path}: reading the body: {e}")))?;
    if status != 200 {
        return Err(HarnessError::Http(format!(
            "{method} {path}: status {status}: {body}"
        )));
    }
    serde_json::from_str(&body)
        .map_err(|e| HarnessError::Http(format!("{method} {path}: not JSON ({e}): {body}")))
}

/// A `/status` answer.
#[derive(Debug, Clone)]
pub struct Status(pub Value);

impl Status {
    /// The entry of child `name` (`storage`, `monitor`, `gateway`,
    /// `simulated`), or `Null`.
    pub fn child(&self, name: &str) -> &Value {
        self.0["children"]
            .as_array()
            .and_then(|children| children.iter().find(|c| c["name"] == name))
            .unwrap_or(&Value::Null)
    }

    /// Whether every child is `running`.
    pub fn all_running(&self) -> bool {
        self.0["children"]
            .as_array()
            .is_some_and(|children| children.iter().all(|c| c["state"] == "running"))
    }

    /// The storage thread's last metrics; `None` before its first heartbeat.
    pub fn storage(&self) -> Option<StorageMetrics> {
        serde_json::from_value(self.child("storage")["metrics"].clone()).ok()
    }

    /// The last metrics of datasource `name`; `None` before its first
    /// heartbeat.
    pub fn datasource(&self, name: &str) -> Option<DatasourceMetrics> {
        serde_json::from_value(self.child(name)["metrics"].clone()).ok()
    }

    /// Restarts of child `name` since the process started.
    pub fn restarts(&self, name: &str) -> u64 {
        self.child(name)["restarts"].as_u64().unwrap_or(0)
    }
}
