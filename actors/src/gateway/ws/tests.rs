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
async fn a_slow_client_is_told_how_many_messages_it_lost() {
    let h = harness();
    let (gateway, addr) = start_gateway(&h);
    let mut client = connect(addr).await;
    eventually("the subscription", || {
        (h.deps.broadcaster.clients() == 1).then_some(())
    })
    .await;

    // Far more than the ring holds, and far more than socket buffers
    // take, published while the client reads nothing.
    let padding = "p".repeat(1024);
    let published = crate::gateway::broadcast::CLIENT_QUEUE_CAPACITY * 5;
    for n in 0..published {
        h.deps
            .broadcaster
            .publish(&ServerMessage::Log(crate::gateway::protocol::LogMessage {
                message: format!("{n} {padding}"),
                kind: "info".into(),
                timestamp: String::new(),
            }));
    }

    let mut received = 0;
    let warning = loop {
        let message = next_json(&mut client).await;
        assert_eq!(message["type"], "log");
        if message["data"]["type"] == "warn" {
            break message["data"]["message"].as_str().unwrap().to_owned();
        }
        received += 1;
        assert!(
            received < published,
            "every message arrived; nothing was dropped"
        );
    };
    assert!(
        warning.contains("messages were dropped because this client was too slow"),
        "{warning}"
    );
    assert!(warning.contains("/ohlcv"), "{warning}");
    // The session goes on: the newest messages still arrive.
    let next = next_json(&mut client).await;
    assert_eq!(next["type"], "log");
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

#[test]
fn lag_notices_are_coalesced_to_one_per_interval() {
    let mut lag = super::LagNotices::default();
    assert!(
        lag.notice_due().is_none(),
        "nothing dropped, nothing to say"
    );
    lag.dropped += 5;
    let first =
        serde_json::to_value(lag.notice_due().expect("the first notice is immediate")).unwrap();
    assert!(first["data"]["message"]
        .as_str()
        .unwrap()
        .starts_with("5 messages were dropped"));
    lag.dropped += 3;
    lag.dropped += 4;
    assert!(
        lag.notice_due().is_none(),
        "a second notice within the interval waits"
    );
    lag.last_notice = Some(tokio::time::Instant::now() - super::LAG_NOTICE_INTERVAL);
    let second = serde_json::to_value(lag.notice_due().expect("due again")).unwrap();
    assert!(
        second["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("7 messages were dropped"),
        "the total since the last notice: {second}"
    );
}
