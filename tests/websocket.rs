//! The WebSocket as UI windows use it, against the real binary on the
//! simulated exchange: topic subscriptions, correlated requests,
//! MessagePack, and clients that never read.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use common::{wait_for, Collector, WsClient, PATIENCE};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn send(socket: &mut Socket, message: &Value) {
    socket
        .send(Message::text(message.to_string()))
        .expect("send");
}

/// The candle updates in a `candle` or `candles` message.
fn updates(message: &Value) -> Vec<Value> {
    match message["type"].as_str() {
        Some("candle") => vec![message["data"].clone()],
        Some("candles") => message["data"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[test]
fn a_window_gets_its_series_only_and_reads_its_history_by_request() {
    let collector = Collector::start(&common::simulated_config(|_| {}));
    let mut window = collector.ws();
    window.send(
        &json!({"type":"subscribe","id":"chart-1","topics":["candles:simulated:ETHUSDT:1m"]}),
    );
    let ack = window.wait_for("the subscription's answer", PATIENCE, |m| {
        m["type"] == "response"
    });
    assert_eq!(ack["id"], "chart-1");
    assert_eq!(
        ack["data"]["topics"],
        json!(["candles:simulated:ETHUSDT:1m"])
    );

    window.send(&json!({"type":"request","id":2,"method":"ohlcv",
            "params":{"exchange":"simulated","symbol":"ETHUSDT","interval":"1m","limit":50}}));
    let history = window.wait_for("the history", PATIENCE, |m| m["id"] == 2);
    assert_eq!(history["type"], "response", "{history}");
    let rows = history["data"].as_array().unwrap();
    assert_eq!(rows.len(), 50, "bootstrap_load is 120");
    let stored = collector.candles("simulated", "ETHUSDT", "1m", "?limit=50");
    assert_eq!(
        rows.iter().map(|r| &r["timestamp"]).collect::<Vec<_>>()[..49],
        stored.iter().map(|r| &r["timestamp"]).collect::<Vec<_>>()[..49],
        "the same candles as GET /ohlcv (the newest may have moved on)"
    );

    // Live updates of ETHUSDT only, though BTCUSDT moves as fast.
    let mut seen = 0;
    while seen < 20 {
        let message = window.wait_for("a live update", PATIENCE, |m| !updates(m).is_empty());
        for update in updates(&message) {
            assert_eq!(update["symbol"], "ETHUSDT", "{message}");
            seen += 1;
        }
    }

    // The same session in MessagePack, by query.
    let mut packed = collector.ws_at("/ws?format=msgpack");
    packed.send_packed(&json!({"type":"request","id":1,"method":"databaseSymbols"}));
    let series = packed.wait_for("the series list", PATIENCE, |m| m["id"] == 1);
    let symbols: Vec<&str> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["symbol"].as_str())
        .collect();
    assert!(
        symbols.contains(&"BTCUSDT") && symbols.contains(&"ETHUSDT"),
        "{series}"
    );
}

/// Shrinks a client socket's receive buffer, so that a client that never
/// reads is stuck after a few frames rather than after megabytes.
fn small_receive_buffer(socket: &TcpStream) {
    let size: libc::c_int = 4096;
    // SAFETY: a valid socket descriptor and a c_int option value of the
    // size given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_thousand_clients_that_never_read_hold_no_memory_and_a_reader_gets_every_latest_value() {
    const STUCK: usize = 1000;
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];
    let collector = Collector::start(&common::simulated_config(|config| {
        config["exchanges"]["simulated"]["symbols"] = json!(symbols);
        config["max_clients"] = json!(STUCK + 10);
        // A thousand upgrades from one address in a second: not a flood here.
        config["rate_limit"] = json!(0);
    }));

    let mut reader = collector.ws();
    reader.send(&json!({"type":"subscribe","id":1,"topics":["candles:simulated:*:1m"]}));
    reader.wait_for("the reader's subscription", PATIENCE, |m| m["id"] == 1);

    let before = rss_bytes(collector.pid());
    // The stuck clients connect from a thread while the reader reads: a
    // reader that stopped reading would itself be a stuck client.
    let addr = collector.addr;
    let connecting = std::thread::spawn(move || {
        let mut stuck: Vec<Socket> = Vec::with_capacity(STUCK);
        for n in 0..STUCK {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            small_receive_buffer(&stream);
            let (mut socket, _) =
                tungstenite::client(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
                    .unwrap_or_else(|e| panic!("handshake of client {n}: {e}"));
            // Half subscribe to everything, half stay on the firehose.
            if n % 2 == 0 {
                send(
                    &mut socket,
                    &json!({"type":"subscribe","id":1,"topics":["candles:*:*:*","logs","worker_metrics","system_info"]}),
                );
            }
            stuck.push(socket);
        }
        stuck
    });
    let started = std::time::Instant::now();
    wait_for("the stuck clients to connect", 4 * PATIENCE, || {
        while reader.next().is_some() {}
        connecting.is_finished().then_some(())
    });
    let stuck = connecting.join().expect("connecting thread");
    eprintln!("{STUCK} clients connected in {:?}", started.elapsed());

    // The reader keeps getting updates of every series meanwhile.
    let mut latest: HashMap<String, Value> = HashMap::new();
    let read_for = |reader: &mut WsClient, latest: &mut HashMap<String, Value>, what: &str| {
        let mut fresh: HashMap<String, i64> = HashMap::new();
        wait_for(what, PATIENCE, || {
            if let Some(message) = reader.next() {
                for update in updates(&message) {
                    let symbol = update["symbol"].as_str().unwrap().to_owned();
                    *fresh.entry(symbol.clone()).or_default() += 1;
                    latest.insert(symbol, update);
                }
            }
            (fresh.len() == symbols.len() && fresh.values().all(|n| *n >= 20)).then_some(())
        });
    };
    for round in 0..3 {
        read_for(
            &mut reader,
            &mut latest,
            &format!("round {round} of updates of every series"),
        );
    }
    let during = rss_bytes(collector.pid());
    let grown = during.saturating_sub(before);
    assert!(
        grown < 200 * 1024 * 1024,
        "{STUCK} clients that never read grew the collector by {} MiB",
        grown / (1024 * 1024)
    );

    // Stop the exchange: the reader's last update of each series is the
    // candle stored last.
    let (status, body) = collector.post(
        "/toggleExchange",
        &json!({"exchange":"simulated","enabled":false}),
    );
    assert_eq!(status, 200, "{body}");
    for symbol in symbols {
        let stored = wait_for("the last candle to be written", PATIENCE, || {
            let rows = collector.candles("simulated", symbol, "1m", "?limit=1");
            let row = rows.last()?.clone();
            // Drain what the reader has meanwhile.
            while let Some(message) = reader.next() {
                for update in updates(&message) {
                    latest.insert(update["symbol"].as_str().unwrap().to_owned(), update);
                }
            }
            let seen = latest.get(symbol)?;
            (seen["t"] == row["timestamp"] && seen["c"] == row["close"]).then_some(row)
        });
        let seen = &latest[symbol];
        for (ours, theirs) in [("o", "open"), ("h", "high"), ("l", "low"), ("v", "volume")] {
            assert_eq!(
                seen[ours], stored[theirs],
                "{symbol} {ours}: {seen} vs {stored}"
            );
        }
    }
    drop(stuck);
}
