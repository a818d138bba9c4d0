//! Test harness: runs the real `ohlcv-collector` binary on a temp config and
//! a free port, and talks to it over HTTP and WebSocket like a UI client.

#![allow(dead_code)]

pub mod simulator;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Generous bound for anything the collector should do "within seconds";
/// CI machines are shared and slow, and a passing test never waits it out.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`. The poll interval is short; this waits on a condition, it
/// does not sleep for synchronisation.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A config document for the simulated exchange, with test-friendly
/// values; `tweak` edits it before it is written.
pub fn simulated_config(tweak: impl FnOnce(&mut Value)) -> Value {
    let mut config = serde_json::json!({
        "exchanges": {
            "simulated": {
                "enabled": true,
                "symbols": ["BTCUSDT", "ETHUSDT"],
                "simulation": { "seed": 7, "updates_per_second": 20 }
            },
            // Disabled, and pointed at a closed loopback port: a test
            // never reaches the real exchange.
            "binance_futures": {
                "enabled": false,
                "symbols": ["BTCUSDT"],
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1"
            }
        },
        "intervals": ["1m"],
        "database_path": "./data/ohlcv.db",
        "batch_interval": 500,
        "max_records": 100000,
        "bootstrap_load": 120,
        "port": 0
    });
    tweak(&mut config);
    config
}

/// A running collector process.
pub struct Collector {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// The temp directory with its config and database.
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// Path of the collector binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ohlcv-collector")
}

impl Collector {
    /// Writes `config` to a temp dir and starts the collector on it.
    pub fn start(config: &Value) -> Collector {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string_pretty(config).unwrap(),
        )
        .unwrap();
        Collector::start_in(dir)
    }

    /// Writes `config` to a temp dir and starts the collector on it with
    /// extra environment variables (`SSL_CERT_FILE`, say).
    pub fn start_with_env(config: &Value, env: &[(&str, &Path)]) -> Collector {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string_pretty(config).unwrap(),
        )
        .unwrap();
        Collector::start_in_with_env(dir, env)
    }

    /// Starts the collector on the `config.json` already in `dir`.
    pub fn start_in(dir: tempfile::TempDir) -> Collector {
        Collector::start_in_with_env(dir, &[])
    }

    /// [`Collector::start_in`] with extra environment variables.
    pub fn start_in_with_env(dir: tempfile::TempDir, env: &[(&str, &Path)]) -> Collector {
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(dir.path().join("config.json"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("collector starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "collector did not start; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        Collector {
            child,
            addr,
            dir,
            stderr,
            agent,
        }
    }

    /// The process id, for signals and resource limits.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the collector wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("data/ohlcv.db")
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut response = self.agent.get(&self.url(path)).call().expect("GET");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// GET `path`: status and body as text, whatever its type (the
    /// dashboard's pages and scripts).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let mut response = self.agent.get(&self.url(path)).call().expect("GET");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().expect("a text body"),
        )
    }

    /// POST `body` as JSON to `path`: status and JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&self.url(path))
            .send_json(body)
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// POST `body` as JSON to `path` with `Authorization: Bearer <token>`,
    /// as a client of a collector with an `api_token` does.
    pub fn post_with_token(&self, path: &str, body: &Value, token: &str) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&self.url(path))
            .header("authorization", &format!("Bearer {token}"))
            .send_json(body)
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// POST raw bytes with a JSON content type.
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(body)
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// Candles from `/ohlcv` (array of rows).
    pub fn candles(&self, exchange: &str, symbol: &str, interval: &str, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/ohlcv/{exchange}/{symbol}/{interval}{query}"));
        assert_eq!(status, 200, "{body}");
        body.as_array().expect("array of candles").clone()
    }

    /// The status entry of child `name`.
    pub fn child_status(&self, name: &str) -> Option<Value> {
        let (_, status) = self.get("/status");
        status["children"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    /// A WebSocket client on `/ws`.
    pub fn ws(&self) -> WsClient {
        self.ws_at("/ws")
    }

    /// A WebSocket client on `path` (`/ws?format=msgpack`, …). The
    /// handshake may take its time; reads after it time out quickly, so a
    /// test polls.
    pub fn ws_at(&self, path: &str) -> WsClient {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let (socket, _) = tungstenite::client(
            format!("ws://{}{path}", self.addr),
            MaybeTlsStream::Plain(stream),
        )
        .expect("websocket handshake");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        WsClient { socket }
    }

    /// Kills the process with SIGKILL (no shutdown at all) and hands back
    /// its directory, for a restart on the same database.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String, tempfile::TempDir) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = wait_for("the collector to exit", PATIENCE, || {
            self.child.try_wait().unwrap()
        });
        // Let the reader thread collect the last lines.
        let deadline = Instant::now() + PATIENCE;
        let stderr = loop {
            let text = self.stderr.lock().unwrap().clone();
            if text.contains("exiting") {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "no exit logged ({exit:?}): {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (exit, stderr, dir)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UI client on the WebSocket.
pub struct WsClient {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens `ws://{addr}/ws` with `headers` on the upgrade request (an
    /// `Origin`, say); the handshake's error if the server refuses it.
    pub fn connect(
        addr: SocketAddr,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest;
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        match tungstenite::client(request, MaybeTlsStream::Plain(stream)) {
            Ok((socket, _)) => Ok(WsClient { socket }),
            Err(tungstenite::HandshakeError::Failure(error)) => Err(error),
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                panic!("a blocking handshake was interrupted")
            }
        }
    }

    /// Sends a JSON text frame.
    pub fn send(&mut self, value: &Value) {
        self.socket
            .send(Message::text(value.to_string()))
            .expect("send");
    }

    /// Sends a raw text frame.
    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    /// Sends `value` as a MessagePack binary frame.
    pub fn send_packed(&mut self, value: &Value) {
        let packed = rmp_serde::to_vec_named(value).expect("MessagePack");
        self.socket.send(Message::binary(packed)).expect("send");
    }

    /// The next message (JSON text, or MessagePack binary), if one arrives
    /// within the read timeout.
    pub fn next(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => {
                Some(serde_json::from_str(text.as_str()).expect("JSON message"))
            }
            Ok(Message::Binary(bytes)) => {
                Some(rmp_serde::from_slice(&bytes).expect("MessagePack message"))
            }
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("websocket error: {e}"),
        }
    }

    /// Reads messages until one satisfies `pred`, within `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        wait_for(what, timeout, || self.next().filter(|m| pred(m)))
    }
}

/// The metrics in a `/status` child entry, as the struct of its kind;
/// `None` before the child's first heartbeat (`{}`). Metrics that do not
/// decode as `M` fail the test, naming the entry.
pub fn metrics<M: serde::de::DeserializeOwned>(child: &Value) -> Option<M> {
    let metrics = &child["metrics"];
    if metrics.as_object().is_some_and(|m| m.is_empty()) {
        return None;
    }
    Some(serde_json::from_value(metrics.clone()).unwrap_or_else(|error| panic!("{error}: {child}")))
}

/// Reads the whole file, for before/after comparisons.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}
