//! WebSocket self-tests: subscribe answers, pushes, keep-alive rules, live
//! modes and controls, over plain and TLS sockets.

mod support;

use std::time::Duration;

use ohlcv_domain::Interval;
use ohlcv_fake_exchanges::{FakeExchange, FakeOptions, LiveMode, Venue};
use serde_json::Value;
use support::{now_ms, wait_for, Frame, Ws};

const T: Duration = Duration::from_secs(5);

fn fast() -> FakeOptions {
    FakeOptions {
        update_period: Duration::from_millis(50),
        keepalive_timeout: Duration::from_millis(400),
        binance_ping_period: Duration::from_millis(100),
        ..FakeOptions::default()
    }
}

fn json(t: &str) -> Value {
    serde_json::from_str(t).unwrap()
}

#[tokio::test]
async fn binance_subscribes_pushes_combined_klines_and_refuses() {
    let fake = FakeExchange::start(Venue::Binance, fast());
    fake.refuse_symbol("ETHUSDT");
    let mut ws = Ws::connect(
        &fake.ws_url(),
        "/market/stream?streams=btcusdt@kline_1m",
        None,
    )
    .await;
    ws.send(r#"{"method":"SUBSCRIBE","params":["solusdt@kline_5m"],"id":1}"#)
        .await;
    let ack = ws.text_where(T, |t| t.contains("\"id\"")).await;
    assert_eq!(ack, r#"{"result":null,"id":1}"#);
    ws.send(r#"{"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":2}"#)
        .await;
    let err = json(&ws.text_where(T, |t| t.contains("\"id\":2")).await);
    assert_eq!(
        (err["code"].as_i64(), err["id"].as_u64()),
        (Some(2), Some(2))
    );
    for stream in ["btcusdt@kline_1m", "solusdt@kline_5m"] {
        let t = ws
            .text_where(T, |t| t.contains(&format!("\"stream\":\"{stream}\"")))
            .await;
        assert!(
            t.starts_with(&format!(
                "{{\"stream\":\"{stream}\",\"data\":{{\"e\":\"kline\",\"E\":"
            )),
            "{t}"
        );
        let k = &json(&t)["data"]["k"];
        let open_time = k["t"].as_i64().unwrap();
        let iv: Interval = k["i"].as_str().unwrap().parse().unwrap();
        assert_eq!(k["T"].as_i64().unwrap(), open_time + iv.duration_ms() - 1);
        assert!(k["o"].is_string() && k["v"].is_string() && k["n"].is_i64() && k["x"] == false);
        let c = fake
            .market()
            .candle(k["s"].as_str().unwrap(), iv, open_time, now_ms())
            .unwrap();
        assert_eq!(k["o"].as_str().unwrap(), c.open);
    }
    let conns = fake.connections();
    assert_eq!(
        conns[0].subscriptions,
        vec!["btcusdt@kline_1m", "solusdt@kline_5m"]
    );
    assert_eq!(fake.client_messages().len(), 2);
    assert!(fake.frames_sent() >= 2);
}

#[tokio::test]
async fn binance_legacy_path_carries_no_klines_and_pings_must_be_answered() {
    let fake = FakeExchange::start(Venue::Binance, fast());
    let mut legacy = Ws::connect(&fake.ws_url(), "/ws", None).await;
    legacy
        .send(r#"{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":7}"#)
        .await;
    assert_eq!(
        legacy.text_where(T, |_| true).await,
        r#"{"result":null,"id":7}"#
    );
    // Answer pings for a while: no kline arrives, the connection lives.
    let until = std::time::Instant::now() + Duration::from_millis(600);
    while std::time::Instant::now() < until {
        match legacy.next_within(Duration::from_millis(200)).await {
            Some(Frame::Ping(p)) => legacy.pong(&p).await,
            Some(Frame::Text(t)) => panic!("unexpected {t}"),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    assert!(fake.connections()[0].closed_at.is_none());
    // A client that never answers is dropped after the timeout.
    let mut mute = Ws::connect(&fake.ws_url(), "/market/stream", None).await;
    let deadline = std::time::Instant::now() + T;
    loop {
        assert!(std::time::Instant::now() < deadline);
        match mute.next().await {
            Frame::Close | Frame::Eof => break,
            _ => {}
        }
    }
    wait_for(T, || {
        fake.connections()[1].close_reason.as_deref() == Some("keepalive timeout")
    })
    .await;
}

#[tokio::test]
async fn binance_closes_a_connection_sending_too_fast() {
    let fake = FakeExchange::start(Venue::Binance, FakeOptions::default());
    let mut ws = Ws::connect(&fake.ws_url(), "/market/stream", None).await;
    for id in 0..11 {
        ws.send(&format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#))
            .await;
    }
    wait_for(T, || {
        fake.connections()[0].close_reason.as_deref() == Some("too many messages per second")
    })
    .await;
}

#[tokio::test]
async fn bybit_acks_refuses_pongs_and_drops_clients_without_ping() {
    let fake = FakeExchange::start(Venue::Bybit, fast());
    let mut ws = Ws::connect(&fake.ws_url(), "/v5/public/linear", None).await;
    ws.send(r#"{"op":"subscribe","args":["kline.1.BTCUSDT"],"req_id":"a1"}"#)
        .await;
    let ack = ws.text_where(T, |t| t.contains("\"op\"")).await;
    assert!(
        ack.starts_with(r#"{"success":true,"ret_msg":"","conn_id":""#),
        "{ack}"
    );
    assert!(
        ack.ends_with(r#","req_id":"a1","op":"subscribe"}"#),
        "{ack}"
    );
    ws.send(r#"{"op":"subscribe","args":["kline.1.FOOUSDT"],"req_id":"a2"}"#)
        .await;
    let no = json(&ws.text_where(T, |t| t.contains("a2")).await);
    assert_eq!(no["success"], false);
    assert_eq!(
        no["ret_msg"],
        "error:handler not found,topic:kline.1.FOOUSDT"
    );
    ws.send(r#"{"op":"ping","req_id":"p"}"#).await;
    let pong = json(&ws.text_where(T, |t| t.contains("pong")).await);
    assert_eq!(
        (
            pong["op"].as_str(),
            pong["req_id"].as_str(),
            pong["success"].as_bool()
        ),
        (Some("ping"), Some("p"), Some(true))
    );
    let push = ws.text_where(T, |t| t.starts_with("{\"topic\"")).await;
    assert!(
        push.starts_with(r#"{"topic":"kline.1.BTCUSDT","data":[{"start":"#),
        "{push}"
    );
    assert!(push.contains(r#""type":"snapshot""#));
    let item = &json(&push)["data"][0];
    assert!(item["open"].is_string() && item["confirm"].is_boolean() && item["end"].is_i64());
    // No more pings: dropped after the timeout.
    loop {
        match ws.next_within(T).await.expect("dropped in time") {
            Frame::Close | Frame::Eof => break,
            _ => {}
        }
    }
    wait_for(T, || {
        fake.connections()[0].close_reason.as_deref() == Some("keepalive timeout")
    })
    .await;
}

#[tokio::test]
async fn okx_acks_errors_pongs_and_the_live_modes() {
    let fake = FakeExchange::start(Venue::Okx, fast());
    let mut ws = Ws::connect(&fake.ws_url(), "/ws/v5/business", None).await;
    ws.send(r#"{"id":"9","op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"},{"channel":"candle1m","instId":"FOO-USDT-SWAP"}]}"#).await;
    let ok = ws.text_where(T, |t| t.contains("\"event\"")).await;
    assert!(ok.starts_with(r#"{"id":"9","event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"connId":""#), "{ok}");
    let err = json(&ws.text_where(T, |t| t.contains("\"event\"")).await);
    assert_eq!(
        (err["event"].as_str(), err["code"].as_str()),
        (Some("error"), Some("60018"))
    );
    let push = json(&ws.text_where(T, |t| t.starts_with("{\"arg\"")).await);
    let row = push["data"][0].as_array().unwrap();
    assert_eq!(row.len(), 9);
    assert!(row.iter().all(Value::is_string));
    ws.send("ping").await;
    ws.text_where(T, |t| t == "pong").await;

    // Quiet: pong answered, no data.
    fake.set_live_mode(LiveMode::Quiet);
    ws.send("ping").await;
    ws.text_where(T, |t| t == "pong").await;
    let quiet_until = std::time::Instant::now() + Duration::from_millis(300);
    while let Some(f) = ws
        .next_within(quiet_until.saturating_duration_since(std::time::Instant::now()))
        .await
    {
        match f {
            Frame::Text(t) if t == "pong" => {}
            Frame::Text(t) => assert!(
                !t.starts_with("{\"arg\"") || fake.connections().is_empty(),
                "data while quiet: {t}"
            ),
            other => panic!("{other:?}"),
        }
        ws.send("ping").await;
    }
    // Stalled: nothing at all, not even a pong.
    fake.set_live_mode(LiveMode::Stalled);
    tokio::time::sleep(Duration::from_millis(60)).await; // let a pending push go
    while ws.next_within(Duration::from_millis(100)).await.is_some() {}
    ws.send("ping").await;
    assert_eq!(ws.next_within(Duration::from_millis(600)).await, None);
    fake.set_live_mode(LiveMode::Normal);
    ws.text_where(T, |t| t.starts_with("{\"arg\"")).await;

    // Candles are not on the public endpoint.
    let mut public = Ws::connect(&fake.ws_url(), "/ws/v5/public", None).await;
    public
        .send(r#"{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}"#)
        .await;
    assert!(public.text_where(T, |_| true).await.contains("60018"));
}

#[tokio::test]
async fn okx_drops_idle_connections_and_sends_the_notice() {
    let fake = FakeExchange::start(Venue::Okx, fast());
    let mut idle = Ws::connect(&fake.ws_url(), "/ws/v5/business", None).await;
    assert!(matches!(
        idle.next_within(T).await,
        Some(Frame::Close | Frame::Eof)
    ));
    let mut ws = Ws::connect(&fake.ws_url(), "/ws/v5/business", None).await;
    ws.send(r#"{"op":"subscribe","args":[{"channel":"candle1m","instId":"SOL-USDT-SWAP"}]}"#)
        .await;
    ws.text_where(T, |t| t.contains("\"subscribe\"")).await;
    fake.send_notice();
    let n = json(&ws.text_where(T, |t| t.contains("notice")).await);
    assert_eq!(n["code"], "64008");
}

#[tokio::test]
async fn controls_garbage_flood_and_disconnect() {
    let fake = FakeExchange::start(
        Venue::Bybit,
        FakeOptions {
            keepalive_timeout: Duration::from_secs(30),
            ..fast()
        },
    );
    let mut ws = Ws::connect(&fake.ws_url(), "/v5/public/linear", None).await;
    ws.send(r#"{"op":"subscribe","args":["kline.1.BTCUSDT"]}"#)
        .await;
    ws.text_where(T, |t| t.contains("\"op\":\"subscribe\""))
        .await;
    wait_for(T, || fake.connections()[0].subscriptions.len() == 1).await;
    fake.send_garbage();
    let mut malformed = 0;
    let mut absurd = 0;
    loop {
        match ws.next_within(T).await.unwrap() {
            Frame::Binary(_) => break,
            Frame::Text(t) => match serde_json::from_str::<Value>(&t) {
                Err(_) => malformed += 1,
                Ok(v) => {
                    let d = &v["data"][0];
                    if d["close"].is_null() && v["topic"] == "kline.1.BTCUSDT" {
                        absurd += 1;
                    } else if let (Some(h), Some(l), Some(c)) =
                        (d["high"].as_str(), d["low"].as_str(), d["close"].as_str())
                    {
                        let (h, l, c): (f64, f64, f64) =
                            (h.parse().unwrap(), l.parse().unwrap(), c.parse().unwrap());
                        if h < l || c < 0.0 {
                            absurd += 1;
                        }
                    }
                }
            },
            _ => {}
        }
    }
    assert_eq!((malformed, absurd), (1, 3));
    let before = fake.frames_sent();
    fake.flood(500);
    let mut got = 0;
    while got < 500 {
        if let Frame::Text(t) = ws.next_within(T).await.unwrap() {
            if t.starts_with("{\"topic\":\"kline") {
                got += 1;
            }
        }
    }
    wait_for(T, || fake.frames_sent() >= before + 500).await;
    fake.disconnect_all();
    loop {
        match ws.next_within(T).await.unwrap() {
            Frame::Eof => break,
            Frame::Close => panic!("a close frame: disconnect_all must be abrupt"),
            _ => {}
        }
    }
    wait_for(T, || {
        fake.connections()[0].close_reason.as_deref() == Some("disconnect_all")
    })
    .await;
}

#[tokio::test]
async fn tls_serves_rest_and_ws_with_the_generated_certificate() {
    let fake = FakeExchange::start(
        Venue::Binance,
        FakeOptions {
            tls: true,
            ..fast()
        },
    );
    assert!(fake.rest_url().starts_with("https://localhost:"));
    assert!(fake.ws_url().starts_with("wss://localhost:"));
    let ca = fake.ca_cert_path().unwrap();
    let r = support::get(&fake.rest_url(), "/fapi/v1/time", Some(&ca)).await;
    assert_eq!(r.status, 200);
    let mut ws = Ws::connect(
        &fake.ws_url(),
        "/market/stream?streams=btcusdt@kline_1m",
        Some(&ca),
    )
    .await;
    ws.text_where(T, |t| t.contains("\"e\":\"kline\"")).await;
    // And through tokio-tungstenite with rustls, as the collector connects.
    let tcp = tokio::net::TcpStream::connect((
        "127.0.0.1",
        fake.ws_url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
    ))
    .await
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let url = format!("{}/market/stream?streams=ethusdt@kline_1m", fake.ws_url());
    let (mut client, _) = tokio_tungstenite::client_async_tls_with_config(
        url,
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
            config,
        ))),
    )
    .await
    .unwrap();
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(T, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(msg.to_text().unwrap().contains("ethusdt@kline_1m"));
    drop(fake);
}

#[tokio::test]
async fn closed_update_follows_the_boundary() {
    // A 1m candle closes within a minute; instead of waiting, check that the
    // market's partial state converges and the stream's values agree.
    let fake = FakeExchange::start(Venue::Okx, fast());
    let m = fake.market();
    let now = now_ms();
    let open = Interval::M1.align(now);
    let fin = m
        .candle("BTCUSDT", Interval::M1, open, open + 60_000)
        .unwrap();
    assert!(fin.closed);
    let mut last_vol = -1.0;
    for k in 0..=60 {
        let c = m
            .candle("BTCUSDT", Interval::M1, open, open + k * 1000)
            .unwrap();
        let (o, h, l, cl, v) = c.values();
        let (fo, fh, fl, _, fv) = fin.values();
        assert_eq!(o, fo);
        assert!(h <= fh && l >= fl && h >= o.max(cl) && l <= o.min(cl) && v <= fv && v >= last_vol);
        last_vol = v;
        assert_eq!(c.closed, k == 60);
    }
    assert_eq!(
        m.candle("BTCUSDT", Interval::M1, open, open + 60_000),
        Some(fin)
    );
    assert_eq!(m.candle("BTCUSDT", Interval::M1, open + 1, now), None);
}
