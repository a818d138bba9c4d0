//! End-to-end tests of the gateway's defences against hostile web pages and
//! remote peers: the real binary, raw HTTP requests shaped as a browser (or
//! an attacker) would send them, and WebSocket clients.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};

use common::{simulated_config, wait_for, Collector, WsClient, PATIENCE};
use serde_json::{json, Value};

/// A page the user visits that is not the collector's.
const EVIL: &str = "http://evil.example";
/// The UI's development server, listed in `allowed_origins`.
const UI: &str = "http://localhost:5173";

/// One answer to [`raw`]: status, headers (names lower case) and the body
/// as JSON (`null` if empty).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        self.body["error"]["message"].as_str().unwrap().to_owned()
    }
}

/// Sends one HTTP/1.1 request to `addr` exactly as written: `Host` and
/// every other header are the caller's, as a browser page's (or an
/// attacker's) would be. A `Host` is added only if `headers` has none.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the answer");
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn json_type() -> (&'static str, &'static str) {
    ("Content-Type", "application/json")
}

#[test]
fn a_hostile_page_can_neither_post_nor_open_the_websocket() {
    let collector = Collector::start(&simulated_config(|c| {
        c["allowed_origins"] = json!([UI]);
    }));
    let addr = collector.addr;
    let own_origin = format!("http://{addr}");

    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let message = raw(
        addr,
        "POST",
        "/deleteDatabase",
        &[("Host", "evil.example:3000")],
        "",
    )
    .error(421, "misdirected_request");
    assert!(message.contains("allowed_hosts"), "{message}");
    // A plain HTML form, posted cross-site.
    let form = [
        ("Origin", EVIL),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    raw(addr, "POST", "/restart", &form, "a=1").error(403, "forbidden_origin");
    let message = raw(addr, "POST", "/deleteDatabase", &[("Origin", EVIL)], "")
        .error(403, "forbidden_origin");
    assert!(message.contains("allowed_origins"), "{message}");
    // Form bodies are refused even without an Origin (an old browser, a
    // privacy extension stripping it).
    for content_type in ["text/plain", "multipart/form-data; boundary=x"] {
        raw(
            addr,
            "POST",
            "/restart",
            &[("Content-Type", content_type)],
            "{}",
        )
        .error(415, "unsupported_media_type");
    }
    // The WebSocket from another page.
    match WsClient::connect(addr, &[("Origin", EVIL)]) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        Err(other) => panic!("expected a 403 answer, got {other}"),
        Ok(_) => panic!("the upgrade from {EVIL} was accepted"),
    }
    // Nothing of that reached the supervisor.
    let simulated = collector.child_status("simulated").unwrap();
    assert_eq!(simulated["restarts"], 0, "{simulated}");

    // The gateway's own pages, the allowed origin and non-browser clients
    // may.
    for origin in [own_origin.as_str(), UI] {
        let answer = raw(
            addr,
            "POST",
            "/restart",
            &[("Origin", origin), json_type()],
            "{}",
        );
        assert_eq!(answer.status, 200, "{origin}: {}", answer.body);
        assert_eq!(answer.body["restarted"], true);
    }
    assert!(WsClient::connect(addr, &[("Origin", own_origin.as_str())]).is_ok());
    assert!(WsClient::connect(addr, &[("Origin", UI)]).is_ok());

    // CORS for the allowed origin only.
    let preflight = [
        ("Origin", UI),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ),
    ];
    let answer = raw(addr, "OPTIONS", "/config", &preflight, "");
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("access-control-allow-origin"), Some(UI));
    assert_eq!(answer.header("vary"), Some("Origin"));
    let allowed = answer.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("Authorization") && allowed.contains("Content-Type"));
    let answer = raw(addr, "GET", "/health", &[("Origin", EVIL)], "");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .headers
            .iter()
            .all(|(name, _)| !name.starts_with("access-control-")),
        "{:?}",
        answer.headers
    );
    let answer = raw(addr, "GET", "/health", &[("Origin", UI)], "");
    assert_eq!(answer.header("access-control-allow-origin"), Some(UI));
}

#[test]
fn faults_and_oversized_bodies_are_refused_through_the_api() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let (_, mut config) = collector.get("/config");
    config["exchanges"]["simulated"]["simulation"]["faults"] =
        json!({"panic_after_updates": 5, "repeat": true});
    let (status, body) = collector.post("/config", &config);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "faults_not_settable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config file"),
        "{body}"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(collector.config_path()).unwrap()).unwrap();
    assert!(
        saved["exchanges"]["simulated"]["simulation"]["faults"].is_null(),
        "{saved}"
    );

    let huge = json!({"exchanges": {}, "padding": "x".repeat(100 * 1024)});
    let (status, body) = collector.post("/config", &huge);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
}

#[test]
fn each_client_is_rate_limited() {
    let collector = Collector::start(&simulated_config(|c| c["rate_limit"] = json!(1)));
    // A burst of twice the rate passes; the third request must wait.
    for _ in 0..2 {
        assert_eq!(raw(collector.addr, "GET", "/health", &[], "").status, 200);
    }
    let answer = raw(collector.addr, "GET", "/health", &[], "");
    answer.error(429, "rate_limited");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
}

/// An address of this machine other than loopback, as another machine on
/// the network would reach it: the source address the kernel picks for a
/// datagram to elsewhere (a UDP `connect` sends nothing), or else the
/// first address `hostname -I` lists.
fn non_loopback_address() -> Option<IpAddr> {
    let usable = |ip: &IpAddr| !ip.is_loopback() && !ip.is_unspecified();
    for target in ["192.0.2.1:9", "10.255.255.255:9", "8.8.8.8:53"] {
        let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        if socket.connect(target).is_ok() {
            if let Ok(local) = socket.local_addr() {
                if usable(&local.ip()) {
                    return Some(local.ip());
                }
            }
        }
    }
    let output = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && usable(ip))
}

#[test]
fn without_a_token_remote_peers_cannot_change_anything() {
    let ip = non_loopback_address().expect(
        "this test needs an address of this machine other than loopback, to connect as a \
         remote peer would; none was found (the same rule is unit-tested in \
         actors gateway::security with a fake peer address)",
    );
    let collector = Collector::start(&simulated_config(|c| c["bind"] = json!("0.0.0.0")));
    let remote = SocketAddr::new(ip, collector.addr.port());
    let local = SocketAddr::from(([127, 0, 0, 1], collector.addr.port()));

    for path in ["/restart", "/deleteDatabase"] {
        let message = raw(remote, "POST", path, &[json_type()], "{}").error(403, "forbidden");
        assert!(
            message.contains(&ip.to_string()) && message.contains("set api_token"),
            "{message}"
        );
    }
    let toggle = r#"{"exchange":"simulated","enabled":false}"#;
    raw(remote, "POST", "/toggleExchange", &[json_type()], toggle).error(403, "forbidden");
    // Reads stay open to the network.
    let answer = raw(remote, "GET", "/status", &[], "");
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The WebSocket's reload, from the same remote peer.
    let mut ws = WsClient::connect(remote, &[]).expect("a remote client may connect");
    ws.send(&json!({"type": "command", "data": "reload"}));
    let result = ws.wait_for("the reload's result", PATIENCE, |m| {
        m["type"] == "command_result" && m["data"]["command"] == "reload"
    });
    assert_eq!(result["data"]["ok"], false, "{result}");
    assert_eq!(result["data"]["result"]["code"], "forbidden", "{result}");

    // Nothing was restarted; from loopback, the same requests work.
    let simulated = collector.child_status("simulated").unwrap();
    assert_eq!(simulated["restarts"], 0, "{simulated}");
    let answer = raw(local, "POST", "/restart", &[json_type()], "{}");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut ws = WsClient::connect(local, &[]).expect("a local client connects");
    ws.send(&json!({"type": "command", "data": "reload"}));
    let result = ws.wait_for("the reload's result", PATIENCE, |m| {
        m["type"] == "command_result" && m["data"]["command"] == "reload"
    });
    assert_eq!(result["data"]["ok"], true, "{result}");
    wait_for("the datasource to run again", PATIENCE, || {
        let child = collector.child_status("simulated")?;
        (child["state"] == "running").then_some(())
    });
}
