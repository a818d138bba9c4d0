//! WebSocket tests: a real server on a free loopback port, a real client.

use std::net::SocketAddr;

use actix::prelude::*;
use awc::error::WsProtocolError;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::gateway::logs::LogForwardLayer;
use crate::gateway::protocol::{CandleMessage, ServerMessage};
use crate::gateway::test_support::{candle, eventually, harness, queued, within, Harness};
use crate::gateway::{bind_server, Gateway, StopGateway};
use crate::lifecycle::{ChildId, ExitReason, HeartbeatSink, LifeGuard};

/// The client side of a connection, boxed so the tests need not name
/// awc's socket and codec types.
type Frames = std::pin::Pin<Box<dyn WsClient>>;

/// What the tests need of a client connection: frames in, messages out.
trait WsClient:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError>
{
}

impl<T> WsClient for T where
    T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError>
{
}

/// Emits `lines` through the log forwarding layer, so they land in the
/// history as real log events do.
fn log_lines(h: &Harness, lines: &[&str]) {
    let subscriber = tracing_subscriber::registry().with(LogForwardLayer::new(
        h.deps.broadcaster.clone(),
        h.deps.logs.clone(),
    ));
    tracing::subscriber::with_default(subscriber, || {
        for line in lines {
            tracing::info!("{line}");
        }
    });
}

/// Binds a server on a free port and starts its gateway.
fn start_gateway(h: &Harness) -> (Addr<Gateway>, SocketAddr) {
    let server = bind_server(h.deps.clone(), "127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let addr = server.addr();
    let gateway = Gateway::new(
        server,
        h.deps.broadcaster.clone(),
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Gateway, 1, h.exit_sink.clone()),
    )
    .start();
    (gateway, addr)
}

async fn connect(addr: SocketAddr) -> Frames {
    connect_with(addr, "/ws", None).await
}

/// Connects to `path` (which may carry `?token=`), with
/// `Authorization: Bearer <bearer>` on the upgrade request if given.
async fn connect_with(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Frames {
    let mut request = awc::Client::new().ws(format!("ws://{addr}{path}"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let (_, framed) = within("the websocket handshake", request.connect())
        .await
        .expect("websocket handshake");
    Box::pin(framed)
}

/// The next frame that is not a server ping.
async fn next_frame(client: &mut Frames) -> Frame {
    loop {
        let frame = within("a frame", client.next())
            .await
            .expect("connection open")
            .expect("valid frame");
        if !matches!(frame, Frame::Ping(_)) {
            return frame;
        }
    }
}

/// The next text frame, as JSON.
async fn next_json(client: &mut Frames) -> Value {
    match next_frame(client).await {
        Frame::Text(bytes) => serde_json::from_slice(&bytes).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn command(client: &mut Frames, name: &str) -> Value {
    let text = json!({"type": "command", "data": name}).to_string();
    client.send(Message::Text(text.into())).await.unwrap();
    next_json(client).await
}

#[actix_web::test]
async fn a_client_gets_history_live_messages_and_command_results() {
    let h = harness();
    log_lines(&h, &["first line", "second line"]);
    h.deps.storage.try_submit(candle("BTCUSDT", 0)).unwrap();
    queued(&h.deps, 1).await;
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;

    // History first, oldest first.
    for expected in ["first line", "second line"] {
        let log = next_json(&mut client).await;
        assert_eq!(log["type"], "log");
        assert_eq!(log["data"]["message"], expected);
        assert_eq!(log["data"]["type"], "info");
    }

    // Live broadcasts.
    assert_eq!(h.deps.broadcaster.clients(), 1);
    h.deps
        .broadcaster
        .publish(&ServerMessage::Candle(CandleMessage::from(&candle(
            "BTCUSDT", 1,
        ))));
    let live = next_json(&mut client).await;
    assert_eq!(live["type"], "candle");
    assert_eq!(live["data"]["symbol"], "BTCUSDT");
    assert_eq!(live["data"]["t"], candle("BTCUSDT", 1).open_time);

    // Commands.
    let help = command(&mut client, "help").await;
    assert_eq!(help["type"], "command_result");
    assert_eq!(help["data"]["command"], "help");
    assert_eq!(help["data"]["ok"], true);
    for name in ["status", "list", "reload", "clear", "help"] {
        assert!(help["data"]["result"][name].is_string(), "{help}");
    }

    let status = command(&mut client, "status").await;
    assert_eq!(status["data"]["command"], "status");
    assert_eq!(status["data"]["ok"], true);
    assert_eq!(status["data"]["result"]["uptime_s"], 42);

    let list = command(&mut client, " list ").await;
    assert_eq!(list["data"]["command"], "list");
    assert_eq!(list["data"]["result"][0]["symbol"], "BTCUSDT");
    assert_eq!(list["data"]["result"][0]["count"], 1);

    let reload = command(&mut client, "reload").await;
    assert_eq!(
        reload["data"]["result"],
        json!({"restarted": true, "applied": {
        "started": [], "stopped": [], "reloaded": ["simulated"], "pending_restart": []}})
    );

    let clear = command(&mut client, "clear").await;
    assert_eq!(
        clear["data"],
        json!({"command": "clear", "ok": true, "result": {"cleared": true}})
    );
    assert!(h.deps.logs.snapshot().is_empty());

    let unknown = command(&mut client, "rm -rf").await;
    assert_eq!(unknown["type"], "command_result");
    assert_eq!(unknown["data"]["command"], "rm -rf");
    assert_eq!(unknown["data"]["ok"], false);
    assert_eq!(unknown["data"]["result"]["code"], "unknown_command");
    let message = unknown["data"]["result"]["message"].as_str().unwrap();
    assert!(
        message.ends_with("valid commands: status, list, reload, clear, help"),
        "{message}"
    );

    // A failing command answers ok:false with the error body.
    h.control
        .fail_with(Some(crate::control::ControlError::Unavailable(
            "restarting".into(),
        )));
    let failed = command(&mut client, "status").await;
    assert_eq!(failed["data"]["ok"], false);
    assert_eq!(
        failed["data"]["result"],
        json!({"code": "unavailable", "message": "restarting"})
    );
    h.control.fail_with(None);

    // Frames that are not commands.
    for garbage in [
        "not json",
        r#"{"type":"subscribe","data":"x"}"#,
        r#"{"type":"command","data":5}"#,
    ] {
        client.send(Message::Text(garbage.into())).await.unwrap();
        let error = next_json(&mut client).await;
        assert_eq!(error["type"], "error", "{garbage}");
        assert_eq!(error["data"]["code"], "bad_message");
    }
    client
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["data"]["code"], "bad_message");

    // Pings are answered.
    client
        .send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut client).await,
        Frame::Pong("are you there".into())
    );

    // A client Close is echoed and the session ends.
    client
        .send(Message::Close(Some(CloseCode::Normal.into())))
        .await
        .unwrap();
    match next_frame(&mut client).await {
        Frame::Close(Some(reason)) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    eventually("the session to end", || {
        (h.deps.broadcaster.clients() == 0).then_some(())
    })
    .await;
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn oversized_frames_close_the_session() {
    let h = harness();
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    let huge = "x".repeat(super::MAX_CLIENT_FRAME + 1);
    client.send(Message::Text(huge.into())).await.unwrap();
    match next_frame(&mut client).await {
        Frame::Close(Some(reason)) => assert_eq!(reason.code, CloseCode::Size),
        other => panic!("expected a close, got {other:?}"),
    }
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_client_too_slow_is_closed_with_1013_and_its_queue_let_go() {
    let h = harness();
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    eventually("the registration", || {
        (h.deps.broadcaster.clients() == 1).then_some(())
    })
    .await;

    // Far more than the outbox holds, and far more than socket buffers
    // take, published while the client reads nothing.
    let padding = "p".repeat(32 * 1024);
    let published = 3 * crate::gateway::outbox::MAX_QUEUED_BYTES / padding.len();
    for n in 0..published {
        h.deps
            .broadcaster
            .publish(&ServerMessage::Log(crate::gateway::protocol::LogMessage {
                message: format!("{n} {padding}"),
                kind: "info".into(),
                timestamp: String::new(),
            }));
    }

    // What the socket held arrives, then the close with its reason.
    let mut received = 0;
    let reason = loop {
        match next_frame(&mut client).await {
            Frame::Text(_) => received += 1,
            Frame::Close(Some(reason)) => break reason,
            other => panic!("expected logs then a close, got {other:?}"),
        }
    };
    assert_eq!(reason.code, CloseCode::Again, "{reason:?}");
    let description = reason.description.unwrap_or_default();
    assert!(description.contains("too slow"), "{description}");
    assert!(received < published, "every message arrived");
    eventually("the session to end", || {
        (h.deps.broadcaster.clients() == 0).then_some(())
    })
    .await;
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn stopping_the_gateway_closes_clients_and_does_not_wait_for_them() {
    let h = harness();
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    eventually("the subscription", || {
        (h.deps.broadcaster.clients() == 1).then_some(())
    })
    .await;

    let started = std::time::Instant::now();
    let stop = gateway.send(StopGateway);
    match next_frame(&mut client).await {
        Frame::Close(Some(reason)) => assert_eq!(reason.code, CloseCode::Away),
        other => panic!("expected a close, got {other:?}"),
    }
    // Answer the close, as a browser does.
    let _ = client.send(Message::Close(None)).await;
    within("the gateway to stop", stop).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(crate::gateway::SHUTDOWN_TIMEOUT_S),
        "the stop waited for the shutdown timeout: {:?}",
        started.elapsed()
    );

    // Stopped on request: the guard reports a plain stop.
    let exits = eventually("the exit report", || {
        let exits = h.exits.lock().unwrap();
        exits
            .iter()
            .find(|e| e.child == ChildId::Gateway)
            .map(|e| e.reason.clone())
    })
    .await;
    assert_eq!(exits, ExitReason::Stopped);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is released"
    );
}

#[actix_web::test]
async fn reload_needs_the_token_once_one_is_set() {
    const TOKEN: &str = "ws-test-token-0123456789";
    let h = harness();
    h.control.set_token(Some(TOKEN));
    let (gateway, addr) = start_gateway(&h);

    // No token: `reload` is refused, the read-only commands still work.
    let mut anonymous = connect(addr).await;
    let refused = command(&mut anonymous, "reload").await;
    assert_eq!(refused["type"], "command_result");
    assert_eq!(refused["data"]["command"], "reload");
    assert_eq!(refused["data"]["ok"], false);
    assert_eq!(
        refused["data"]["result"]["code"], "unauthorized",
        "{refused}"
    );
    let message = refused["data"]["result"]["message"].as_str().unwrap();
    assert!(
        message.contains("Authorization: Bearer") && message.contains("/ws?token="),
        "{message}"
    );
    for name in ["status", "list", "help"] {
        assert_eq!(
            command(&mut anonymous, name).await["data"]["ok"],
            true,
            "{name}"
        );
    }

    // A wrong token, in either form: forbidden.
    let mut wrong_query = connect_with(addr, "/ws?token=not-the-token-at-all", None).await;
    let mut wrong_header = connect_with(addr, "/ws", Some("not-the-token-at-all")).await;
    for client in [&mut wrong_query, &mut wrong_header] {
        let refused = command(client, "reload").await;
        assert_eq!(refused["data"]["ok"], false);
        assert_eq!(refused["data"]["result"]["code"], "forbidden", "{refused}");
    }
    // An empty query token is no token.
    let mut empty = connect_with(addr, "/ws?token=", None).await;
    let refused = command(&mut empty, "reload").await;
    assert_eq!(
        refused["data"]["result"]["code"], "unauthorized",
        "{refused}"
    );
    assert!(!h.control.calls().contains(&"restart".to_owned()));

    // The token, in either form: `reload` runs. Other parameters are
    // ignored; the header wins over the query.
    let mut by_query = connect_with(addr, &format!("/ws?v=2&token={TOKEN}"), None).await;
    let mut by_header = connect_with(addr, "/ws?token=wrong", Some(TOKEN)).await;
    for client in [&mut by_query, &mut by_header] {
        let reload = command(client, "reload").await;
        assert_eq!(reload["data"]["ok"], true, "{reload}");
        assert_eq!(reload["data"]["result"]["restarted"], true);
    }
    let restarts = |h: &Harness| h.control.calls().iter().filter(|c| *c == "restart").count();
    assert_eq!(restarts(&h), 2);

    // Sessions follow the running token: a new one locks out the old...
    h.control.set_token(Some("rotated-token-0123456789"));
    let refused = command(&mut by_header, "reload").await;
    assert_eq!(refused["data"]["result"]["code"], "forbidden", "{refused}");
    // ...and without one, anyone may reload.
    h.control.set_token(None);
    assert_eq!(command(&mut anonymous, "reload").await["data"]["ok"], true);
    assert_eq!(restarts(&h), 3);

    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

/// Connects with room for the largest answer frame (awc's own limit is
/// 64 KiB; browsers have none).
async fn connect_large(addr: SocketAddr, path: &str) -> Frames {
    let request = awc::Client::new()
        .ws(format!("ws://{addr}{path}"))
        .max_frame_size(4 * 1024 * 1024);
    let (_, framed) = within("the websocket handshake", request.connect())
        .await
        .expect("websocket handshake");
    Box::pin(framed)
}

async fn send_json(client: &mut Frames, message: Value) {
    client
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next message that is not a `log` line (the history, or lines the
/// tests' own events add).
async fn next_non_log(client: &mut Frames) -> Value {
    loop {
        let message = next_json(client).await;
        if message["type"] != "log" {
            return message;
        }
    }
}

fn update(symbol: &str, minute: i64, close: f64) -> ServerMessage {
    let mut message = CandleMessage::from(&candle(symbol, minute));
    message.c = close;
    message.closed = false;
    ServerMessage::Candle(message)
}

#[actix_web::test]
async fn a_subscriber_gets_its_topics_only_and_answers_carry_its_ids() {
    let h = harness();
    for minute in 0..3 {
        h.deps
            .storage
            .try_submit(candle("BTCUSDT", minute))
            .unwrap();
    }
    queued(&h.deps, 3).await;
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;

    send_json(
        &mut client,
        json!({"type":"subscribe","id":1,"topics":["candles:simulated:BTCUSDT:*","system_info"]}),
    )
    .await;
    let ack = next_non_log(&mut client).await;
    assert_eq!(
        ack,
        json!({"type":"response","id":1,"data":{"topics":["candles:simulated:BTCUSDT:*","system_info"]}})
    );
    send_json(
        &mut client,
        json!({"type":"subscribe","id":"two","topics":["system_info","candles:simulated:BTC/USDT:1m"]}),
    )
    .await;
    let refused = next_non_log(&mut client).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "two");
    assert_eq!(refused["error"]["code"], "unknown_topic");
    assert_eq!(refused["error"]["status"], 400);

    // Only the subscribed series and kinds arrive.
    let broadcaster = &h.deps.broadcaster;
    broadcaster.publish(&update("ETHUSDT", 5, 1.0));
    broadcaster.publish(&ServerMessage::WorkerMetrics(Default::default()));
    broadcaster.publish(&ServerMessage::SystemInfo(json!({"cpus": 2})));
    broadcaster.publish(&update("BTCUSDT", 5, 2.0));
    let info = next_non_log(&mut client).await;
    assert_eq!(info, json!({"type":"system_info","data":{"cpus":2}}));
    let live = next_non_log(&mut client).await;
    let candles: Vec<Value> = match live["type"].as_str() {
        Some("candle") => vec![live["data"].clone()],
        Some("candles") => live["data"].as_array().unwrap().clone(),
        _ => panic!("expected a candle update, got {live}"),
    };
    assert_eq!(candles.len(), 1, "{live}");
    assert_eq!(candles[0]["symbol"], "BTCUSDT");
    assert_eq!(candles[0]["c"], 2.0);

    // Requests answer with their id, as HTTP would.
    send_json(
        &mut client,
        json!({"type":"request","id":3,"method":"ohlcv",
               "params":{"exchange":"simulated","symbol":"BTCUSDT","interval":"1m","limit":2}}),
    )
    .await;
    let rows = next_non_log(&mut client).await;
    assert_eq!(rows["type"], "response", "{rows}");
    assert_eq!(rows["id"], 3);
    let times: Vec<i64> = rows["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            candle("BTCUSDT", 1).open_time,
            candle("BTCUSDT", 2).open_time
        ]
    );
    for (request, code, status) in [
        (
            json!({"type":"request","id":4,"method":"ohlcv","params":{"exchange":"simulated","symbol":"BTCUSDT","interval":"1m","limit":0}}),
            "bad_limit",
            400,
        ),
        (
            json!({"type":"request","id":5,"method":"dropTables"}),
            "unknown_method",
            400,
        ),
        (
            json!({"type":"request","id":6,"method":"status","params":{"verbose":true}}),
            "bad_request",
            400,
        ),
        (
            json!({"type":"request","id":7,"method":"exchangeSymbols","params":{"exchange":"nasdaq"}}),
            "unknown_exchange",
            400,
        ),
        (json!({"type":"request","id":8}), "bad_message", 400),
    ] {
        send_json(&mut client, request.clone()).await;
        let error = next_non_log(&mut client).await;
        assert_eq!(error["type"], "error", "{request}: {error}");
        assert_eq!(error["id"], request["id"], "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert_eq!(error["error"]["status"], status, "{error}");
    }
    send_json(
        &mut client,
        json!({"type":"request","id":9,"method":"toggleExchange","params":{"exchange":"simulated","enabled":false}}),
    )
    .await;
    let toggled = next_non_log(&mut client).await;
    assert_eq!(toggled["id"], 9, "{toggled}");
    assert_eq!(toggled["data"]["exchange"], "simulated", "{toggled}");
    assert!(
        h.control.calls().iter().any(|c| c.contains("toggle")),
        "{:?}",
        h.control.calls()
    );

    // Unsubscribing stops the series; nothing else comes back.
    send_json(
        &mut client,
        json!({"type":"unsubscribe","id":10,"topics":["candles:simulated:BTCUSDT:*"]}),
    )
    .await;
    assert_eq!(
        next_non_log(&mut client).await,
        json!({"type":"response","id":10,"data":{"topics":["system_info"]}})
    );
    broadcaster.publish(&update("BTCUSDT", 6, 3.0));
    broadcaster.publish(&ServerMessage::SystemInfo(json!({"cpus": 3})));
    assert_eq!(next_non_log(&mut client).await["data"], json!({"cpus": 3}));

    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn updates_under_load_coalesce_to_the_latest_of_each_candle_in_order() {
    let h = harness();
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    send_json(
        &mut client,
        json!({"type":"subscribe","id":1,"topics":["candles:*:*:*"]}),
    )
    .await;
    assert_eq!(next_non_log(&mut client).await["id"], 1);

    // Three candles of two series, each updated many times in a burst.
    let updates = 300;
    for n in 0..updates {
        for (symbol, minute) in [("BTCUSDT", 0), ("BTCUSDT", 1), ("ETHUSDT", 0)] {
            h.deps
                .broadcaster
                .publish(&update(symbol, minute, f64::from(n)));
        }
    }
    let mut latest: std::collections::HashMap<(String, i64), f64> = Default::default();
    let mut frames = 0;
    let last = f64::from(updates - 1);
    while latest.len() < 3 || latest.values().any(|c| *c != last) {
        let message = next_non_log(&mut client).await;
        frames += 1;
        let batch: Vec<Value> = match message["type"].as_str() {
            Some("candle") => vec![message["data"].clone()],
            Some("candles") => message["data"].as_array().unwrap().clone(),
            _ => panic!("expected candle updates, got {message}"),
        };
        for candle in batch {
            let key = (
                candle["symbol"].as_str().unwrap().to_owned(),
                candle["t"].as_i64().unwrap(),
            );
            let close = candle["c"].as_f64().unwrap();
            let before = latest.insert(key, close).unwrap_or(-1.0);
            assert!(
                close > before,
                "an update went back in time: {close} after {before}"
            );
        }
    }
    assert!(
        frames < 3 * updates,
        "{frames} frames for {} updates: nothing was coalesced",
        3 * updates
    );
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

/// The next binary frame, as MessagePack, skipping log lines other than
/// the test's own.
async fn next_packed(client: &mut Frames) -> Value {
    loop {
        match next_frame(client).await {
            Frame::Binary(bytes) => {
                let value: Value = rmp_serde::from_slice(&bytes).unwrap();
                if value["type"] != "log" || value["data"]["message"] == "hello in binary" {
                    return value;
                }
            }
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_messagepack_client_gets_the_same_messages_in_binary_frames_and_long_answers_in_chunks() {
    let h = harness();
    log_lines(&h, &["hello in binary"]);
    // One batch: the channel's bound counts batches, not candles.
    h.deps
        .storage
        .try_submit_batch((0..2500).map(|minute| candle("BTCUSDT", minute)).collect())
        .unwrap();
    queued(&h.deps, 2500).await;
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect_large(addr, "/ws?format=msgpack").await;

    let history = next_packed(&mut client).await;
    assert_eq!(history["data"]["message"], "hello in binary");

    // A MessagePack request, and its answer in three parts.
    let request = json!({"type":"request","id":1,"method":"ohlcv",
        "params":{"exchange":"simulated","symbol":"BTCUSDT","interval":"1m","limit":2500}});
    client
        .send(Message::Binary(
            rmp_serde::to_vec_named(&request).unwrap().into(),
        ))
        .await
        .unwrap();
    let mut rows = Vec::new();
    for chunk in 0..3 {
        let part = next_packed(&mut client).await;
        assert_eq!(part["type"], "response", "{part}");
        assert_eq!(part["id"], 1);
        assert_eq!(part["chunk"], chunk);
        assert_eq!(part["last"], chunk == 2);
        rows.extend(part["data"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[2499]["timestamp"], candle("BTCUSDT", 2499).open_time);
    assert!(rows
        .windows(2)
        .all(|w| w[0]["timestamp"].as_i64() < w[1]["timestamp"].as_i64()));

    // Live messages come packed too, with the seed's shapes.
    h.deps.broadcaster.publish(&update("ETHUSDT", 1, 9.5));
    let live = next_packed(&mut client).await;
    assert_eq!(live["type"], "candle");
    assert_eq!(live["data"]["symbol"], "ETHUSDT");
    assert_eq!(live["data"]["c"], 9.5);
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn clients_beyond_max_clients_are_answered_503_until_one_leaves() {
    let mut h = harness();
    h.deps.settings = std::sync::Arc::new(crate::gateway::security::GatewaySettings {
        max_clients: 1,
        ..Default::default()
    });
    let (gateway, addr) = start_gateway(&h);
    let first = connect(addr).await;
    let refused = awc::Client::new()
        .ws(format!("ws://{addr}/ws"))
        .connect()
        .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("expected a 503, got {:?}", other.map(|(r, _)| r.status())),
    }
    drop(first);
    eventually("the first client to leave", || {
        (h.deps.broadcaster.clients() == 0).then_some(())
    })
    .await;
    let _second = connect(addr).await;
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}

#[actix_web::test]
async fn requests_over_the_websocket_count_against_the_address_rate_limit() {
    let mut h = harness();
    h.deps.settings = std::sync::Arc::new(crate::gateway::security::GatewaySettings {
        rate_limit: 1, // bursts of 2: the upgrade and one request
        ..Default::default()
    });
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    for id in 1..=3 {
        send_json(
            &mut client,
            json!({"type":"request","id":id,"method":"status"}),
        )
        .await;
    }
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let answer = next_non_log(&mut client).await;
        answers.insert(answer["id"].as_i64().unwrap(), answer);
    }
    assert_eq!(answers[&1]["type"], "response", "{}", answers[&1]);
    for id in [2, 3] {
        assert_eq!(
            answers[&id]["error"]["code"], "rate_limited",
            "{}",
            answers[&id]
        );
        assert_eq!(answers[&id]["error"]["status"], 429);
    }
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}
