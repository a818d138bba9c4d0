//! The real binary against fake Binance, Bybit and OKX servers on
//! 127.0.0.1 that speak the documented wire formats (crate
//! `ohlcv-fake-exchanges`): history over many pages, live klines, forced
//! disconnects, stalls, quiet streams, `kill -9` across a whole candle,
//! rate limits, refused subscriptions, garbage frames and TLS. After each
//! ordeal the database must hold exactly the fake exchange's candles: no
//! gap, no duplicate, identical values.
//!
//! Only the tests that must wait for real minute boundaries do, and they
//! run the three exchanges side by side in one test, so the suite waits
//! once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{wait_for, Collector, PATIENCE};
use ohlcv_domain::time::now_ms;
use ohlcv_domain::Interval;
use ohlcv_fake_exchanges::{FakeExchange, FakeOptions, LiveMode, Venue};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
/// Long enough for a minute boundary to pass and its candle to be fetched.
const BOUNDARY_PATIENCE: Duration = Duration::from_secs(150);

/// The exchange id the collector uses for `venue`.
fn exchange_id(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => "binance_futures",
        Venue::Bybit => "bybit_futures",
        Venue::Okx => "okx_futures",
    }
}

/// A config collecting BTCUSDT and ETHUSDT 1m from `fake` only.
fn config(venue: Venue, fake: &FakeExchange, bootstrap_load: u64) -> Value {
    let mut exchanges = json!({"simulated": {"enabled": false, "symbols": []}});
    exchanges[exchange_id(venue)] = json!({
        "enabled": true,
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "rest_url": fake.rest_url(),
        "ws_url": fake.ws_url(),
    });
    json!({
        "exchanges": exchanges,
        "intervals": ["1m"],
        "database_path": "./data/ohlcv.db",
        "batch_interval": 300,
        "max_records": 1_000_000,
        "bootstrap_load": bootstrap_load,
        "port": 0
    })
}

/// One stored row: open time, the five values, closed.
type Row = (i64, [f64; 5], bool);

/// The stored 1m candles of `symbol` on `venue`, oldest first, read from
/// the database file with the seed's query on the `ohlcv` view.
fn stored(database: &Path, venue: Venue, symbol: &str) -> Vec<Row> {
    let Ok(connection) =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut query) = connection.prepare(
        "SELECT timestamp, open, high, low, close, volume, closed FROM ohlcv \
         WHERE exchange=? AND symbol=? AND interval='1m' ORDER BY timestamp",
    ) else {
        return Vec::new();
    };
    query
        .query_map(rusqlite::params![exchange_id(venue), symbol], |row| {
            Ok((
                row.get(0)?,
                [
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ],
                row.get::<_, i64>(6)? == 1,
            ))
        })
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Whether every closed candle through open time `through` is stored.
fn closed_through(database: &Path, venue: Venue, symbol: &str, through: i64) -> bool {
    stored(database, venue, symbol)
        .iter()
        .any(|(t, _, closed)| *t == through && *closed)
}

/// The open time of the newest candle that has closed now.
fn last_closed_open_time() -> i64 {
    Interval::M1.align(now_ms()) - MINUTE
}

/// Asserts that the stored closed candles of `symbol` are exactly the fake
/// market's from the first stored through `through`: contiguous, each
/// with the exchange's values.
fn assert_exact(database: &Path, fake: &FakeExchange, venue: Venue, symbol: &str, through: i64) {
    let rows = stored(database, venue, symbol);
    let first = rows.first().expect("candles stored").0;
    let closed: Vec<&Row> = rows.iter().filter(|r| r.2 && r.0 <= through).collect();
    let truth = fake
        .market()
        .closed_candles(symbol, Interval::M1, first, through);
    assert_eq!(
        closed.len(),
        truth.len(),
        "{venue:?} {symbol}: {} closed candles stored from {first} through {through}, the \
         exchange has {}",
        closed.len(),
        truth.len()
    );
    for (row, candle) in closed.iter().zip(&truth) {
        let (o, h, l, c, v) = candle.values();
        assert_eq!(
            row.0, candle.open_time,
            "{venue:?} {symbol}: gap or disorder"
        );
        assert_eq!(
            row.1,
            [o, h, l, c, v],
            "{venue:?} {symbol} at {}: values differ",
            row.0
        );
    }
    // Open candles only at the end: nothing before `through` is unfinished.
    assert!(
        rows.iter().all(|r| r.2 || r.0 > through),
        "{venue:?} {symbol}: an open candle before {through}"
    );
}

/// Waits until both series are stored closed through the newest candle
/// that has closed, with at least `min_rows` rows each, and answers that
/// open time. The row count matters for a history sync: the live close of
/// the newest candle can be written in a batch before the older pages of
/// history arrive.
fn wait_caught_up(collector: &Collector, venue: Venue, what: &str, min_rows: usize) -> i64 {
    let database = collector.database_path();
    wait_for(what, BOUNDARY_PATIENCE, || {
        let through = last_closed_open_time();
        ["BTCUSDT", "ETHUSDT"]
            .iter()
            .all(|s| {
                closed_through(&database, venue, s, through)
                    && stored(&database, venue, s).len() >= min_rows
            })
            .then_some(through)
    })
}

/// Forced disconnect, stall, then `kill -9` across a whole candle, on one
/// exchange; the database is checked after each.
fn survives_disconnect_stall_and_kill(venue: Venue) {
    let fake = FakeExchange::start(venue, keepalive_enforced());
    // 2,000 candles: two Binance pages, two Bybit pages, twenty OKX pages
    // reaching into history-candles.
    let collector = Collector::start(&config(venue, &fake, 2_000));
    // The whole bootstrap, not only the newest close (the wait's timeout
    // is what fails a short bootstrap).
    let through = wait_caught_up(&collector, venue, "the history sync", 2_000);
    let database = collector.database_path();
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact(&database, &fake, venue, symbol, through);
    }
    let kline_requests = fake
        .rest_requests()
        .iter()
        .filter(|r| r.path.contains("andle") || r.path.contains("kline"))
        .count();
    assert!(kline_requests >= 4, "{venue:?}: {kline_requests} pages");

    // A forced disconnect: the connection is reopened.
    wait_for("live data", PATIENCE, || {
        fake.frames_sent().gt(&0).then_some(())
    });
    fake.disconnect_all();
    wait_for("a reconnect after the disconnect", PATIENCE, || {
        (fake
            .connections()
            .iter()
            .filter(|c| c.closed_at.is_none())
            .count()
            >= 1
            && fake.connections().len() >= 2)
            .then_some(())
    });

    // A stall (socket open, nothing sent): detected, reconnected, and the
    // candles closing meanwhile are fetched over REST.
    fake.set_live_mode(LiveMode::Stalled);
    let before = fake.connections().len();
    wait_for("a reconnect after the stall", BOUNDARY_PATIENCE, || {
        (fake.connections().len() > before).then_some(())
    });
    fake.set_live_mode(LiveMode::Normal);
    let through = wait_caught_up(&collector, venue, "catching up after the stall", 0);
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact(&database, &fake, venue, symbol, through);
    }

    // kill -9, down while a whole candle opens and closes, restart.
    let dir = collector.kill9();
    let killed_at = now_ms();
    let whole_candle_closed = Interval::M1.align(killed_at) + 2 * MINUTE;
    wait_for("a whole candle to pass", BOUNDARY_PATIENCE, || {
        (now_ms() >= whole_candle_closed).then_some(())
    });
    let collector = Collector::start_in(dir);
    let through = wait_caught_up(&collector, venue, "catching up after kill -9", 0);
    assert!(through >= whole_candle_closed - MINUTE);
    let database = collector.database_path();
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact(&database, &fake, venue, symbol, through);
    }
    let (exit, stderr, _) = collector.terminate();
    assert!(exit.success(), "{venue:?}: {exit:?}\n{stderr}");
    assert_kept_alive(&fake, venue);
}

/// Fake options that drop a client which does not keep alive well within
/// the test: Binance pings every 5 s and wants a pong within 20 s, Bybit
/// wants a ping within 25 s (ours come every 20 s), OKX closes after 30 s
/// without traffic.
fn keepalive_enforced() -> FakeOptions {
    FakeOptions {
        binance_ping_period: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(25),
        ..FakeOptions::default()
    }
}

/// No connection of `fake` was dropped for want of keep-alive.
fn assert_kept_alive(fake: &FakeExchange, venue: Venue) {
    let dropped: Vec<_> = fake
        .connections()
        .into_iter()
        .filter(|c| c.close_reason.as_deref() == Some("keepalive timeout"))
        .collect();
    assert!(
        dropped.is_empty(),
        "{venue:?}: dropped for keep-alive: {dropped:?}"
    );
}

#[test]
fn every_exchange_survives_a_disconnect_a_stall_and_kill_9_with_exact_candles() {
    let runs: Vec<_> = [Venue::Binance, Venue::Bybit, Venue::Okx]
        .into_iter()
        .map(|venue| {
            std::thread::Builder::new()
                .name(format!("{venue:?}"))
                .spawn(move || survives_disconnect_stall_and_kill(venue))
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = runs
        .into_iter()
        .filter_map(|run| run.join().err())
        .map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Runs `test` for each exchange side by side and reports every failure.
fn on_every_exchange(test: fn(Venue)) {
    let runs: Vec<_> = [Venue::Binance, Venue::Bybit, Venue::Okx]
        .into_iter()
        .map(|venue| {
            std::thread::Builder::new()
                .name(format!("{venue:?}"))
                .spawn(move || test(venue))
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = runs
        .into_iter()
        .filter_map(|run| run.join().err())
        .map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The datasource metrics of `venue` in `/status`, once it reported.
fn datasource(collector: &Collector, venue: Venue) -> Option<Value> {
    let child = collector.child_status(exchange_id(venue))?;
    child["metrics"]
        .get("updates")
        .is_some()
        .then(|| child["metrics"].clone())
}

/// A `status` answer with `Retry-After: 4` to the first REST request, then
/// no request at all to that exchange for 4 s, while live updates flow.
fn a_rate_limit_pauses_rest_while_live_data_flows(venue: Venue, status: u16) {
    let fake = FakeExchange::start(venue, FakeOptions::default());
    let pause = Duration::from_secs(4);
    fake.fail_rest(status, Some(pause), 1);
    let collector = Collector::start(&config(venue, &fake, 50));
    let limited = wait_for("the first REST request", PATIENCE, || {
        fake.rest_requests().first().cloned()
    });
    assert_eq!(limited.status, status);
    // Live updates arrive while REST waits out the pause.
    wait_for("live updates during the pause", PATIENCE, || {
        let updates = datasource(&collector, venue)?["updates"].as_u64()?;
        (updates > 0).then_some(())
    });
    let next = wait_for("the next REST request", PATIENCE, || {
        fake.rest_requests().get(1).cloned()
    });
    assert!(
        next.at.duration_since(limited.at) >= pause,
        "{venue:?}: a request {:?} after the {status}",
        next.at.duration_since(limited.at)
    );
    // And the history comes in after it, exactly.
    let through = wait_caught_up(&collector, venue, "the history after the pause", 0);
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact(&collector.database_path(), &fake, venue, symbol, through);
    }
}

#[test]
fn a_429_with_retry_after_pauses_every_request_to_that_exchange_and_not_the_live_stream() {
    on_every_exchange(|venue| a_rate_limit_pauses_rest_while_live_data_flows(venue, 429));
}

#[test]
fn a_binance_418_ban_is_waited_out() {
    a_rate_limit_pauses_rest_while_live_data_flows(Venue::Binance, 418);
}

#[test]
fn an_exchange_over_tls_is_trusted_through_ssl_cert_file_and_only_then() {
    on_every_exchange(|venue| {
        let fake = FakeExchange::start(
            venue,
            FakeOptions {
                tls: true,
                ..FakeOptions::default()
            },
        );
        assert!(fake.rest_url().starts_with("https://"));
        let ca = fake.ca_cert_path().expect("a CA file");
        let trusted =
            Collector::start_with_env(&config(venue, &fake, 20), &[("SSL_CERT_FILE", &ca)]);
        let through = wait_caught_up(&trusted, venue, "candles over TLS", 0);
        assert_exact(&trusted.database_path(), &fake, venue, "BTCUSDT", through);
        wait_for("live updates over wss", PATIENCE, || {
            (datasource(&trusted, venue)?["updates"].as_u64()? > 0).then_some(())
        });
        // Without the CA the certificate is refused, and says so.
        let untrusted = Collector::start(&config(venue, &fake, 20));
        wait_for("the certificate to be refused", PATIENCE, || {
            let error = datasource(&untrusted, venue)?["lastError"]
                .as_str()?
                .to_owned();
            error.contains("certificate").then_some(())
        });
        assert!(stored(&untrusted.database_path(), venue, "BTCUSDT").is_empty());
    });
}

#[test]
fn a_refused_symbol_is_reported_not_retried_in_a_loop_and_the_others_flow() {
    on_every_exchange(|venue| {
        let fake = FakeExchange::start(venue, FakeOptions::default());
        fake.refuse_symbol("ETHUSDT");
        let collector = Collector::start(&config(venue, &fake, 30));
        let through = wait_caught_up_one(&collector, venue, "BTCUSDT");
        assert_exact(&collector.database_path(), &fake, venue, "BTCUSDT", through);
        wait_for("the refusal reported", PATIENCE, || {
            let error = datasource(&collector, venue)?["lastError"]
                .as_str()?
                .to_owned();
            error.contains("ETHUSDT").then_some(())
        });
        // Asked a bounded number of times, not in a loop.
        let asked = |fake: &FakeExchange| {
            fake.rest_requests()
                .iter()
                .filter(|r| r.query.contains("ETH"))
                .count()
                + fake
                    .client_messages()
                    .iter()
                    .filter(|m| m.text.contains("ETH"))
                    .count()
        };
        let before = asked(&fake);
        let updates = datasource(&collector, venue).unwrap()["updates"]
            .as_u64()
            .unwrap();
        // Twenty more live updates (five seconds) later, still no new ask.
        wait_for("more live updates", PATIENCE, || {
            let now = datasource(&collector, venue)?["updates"].as_u64()?;
            (now >= updates + 20).then_some(())
        });
        assert!(before <= 4, "{venue:?}: asked {before} times");
        assert_eq!(asked(&fake), before, "{venue:?}: asked again");
        assert!(stored(&collector.database_path(), venue, "ETHUSDT").is_empty());
    });
}

/// Waits until one series is stored closed through the newest candle that
/// has closed.
fn wait_caught_up_one(collector: &Collector, venue: Venue, symbol: &str) -> i64 {
    let database = collector.database_path();
    wait_for("the history of one series", BOUNDARY_PATIENCE, || {
        let through = last_closed_open_time();
        closed_through(&database, venue, symbol, through).then_some(through)
    })
}

#[test]
fn garbage_frames_are_counted_and_logged_and_never_stored() {
    on_every_exchange(|venue| {
        let fake = FakeExchange::start(venue, FakeOptions::default());
        let collector = Collector::start(&config(venue, &fake, 30));
        let through = wait_caught_up(&collector, venue, "the history sync", 0);
        wait_for("live updates", PATIENCE, || {
            (datasource(&collector, venue)?["updates"].as_u64()? > 0).then_some(())
        });
        let rejected_before = datasource(&collector, venue).unwrap()["rejected"]
            .as_u64()
            .unwrap();
        for _ in 0..20 {
            fake.send_garbage();
        }
        wait_for("the bad frames counted", PATIENCE, || {
            let rejected = datasource(&collector, venue)?["rejected"].as_u64()?;
            (rejected >= rejected_before + 20 * 4).then_some(())
        });
        // Still streaming, nothing absurd stored, and the log not flooded.
        let updates = datasource(&collector, venue).unwrap()["updates"]
            .as_u64()
            .unwrap();
        wait_for("more live updates", PATIENCE, || {
            (datasource(&collector, venue)?["updates"].as_u64()? > updates).then_some(())
        });
        for symbol in ["BTCUSDT", "ETHUSDT"] {
            assert_exact(&collector.database_path(), &fake, venue, symbol, through);
            let rows = stored(&collector.database_path(), venue, symbol);
            assert!(rows
                .iter()
                .all(|(_, v, _)| v.iter().all(|x| *x >= 0.0) && v[1] >= v[2]));
        }
        let logged = collector.stderr().matches("stream message refused").count();
        assert!(
            (1..=10).contains(&logged),
            "{venue:?}: {logged} lines for 100 bad frames"
        );
    });
}

#[test]
fn a_quiet_stream_is_filled_over_rest_and_a_hole_the_exchange_has_is_recorded_once() {
    on_every_exchange(|venue| {
        // The exchange itself lacks two candles an hour ago.
        let hole_from = last_closed_open_time() - 60 * MINUTE;
        let fake = FakeExchange::start(
            venue,
            FakeOptions {
                missing: vec![(
                    "BTCUSDT".into(),
                    Interval::M1,
                    hole_from,
                    hole_from + MINUTE,
                )],
                ..FakeOptions::default()
            },
        );
        let collector = Collector::start(&config(venue, &fake, 120));
        wait_caught_up(&collector, venue, "the history sync", 0);
        // Pings answered, no data: the closes come over REST.
        fake.set_live_mode(LiveMode::Quiet);
        let quiet_since = last_closed_open_time();
        let through = wait_for(
            "a candle closed during the quiet",
            BOUNDARY_PATIENCE,
            || {
                let through = last_closed_open_time();
                (through > quiet_since
                    && ["BTCUSDT", "ETHUSDT"]
                        .iter()
                        .all(|s| closed_through(&collector.database_path(), venue, s, through)))
                .then_some(through)
            },
        );
        for symbol in ["BTCUSDT", "ETHUSDT"] {
            assert_exact(&collector.database_path(), &fake, venue, symbol, through);
        }
        // The exchange's own hole is known, and asked for at most once
        // more by the integrity check.
        let (status, completeness) = collector.get(&format!(
            "/completeness?exchange={}&symbol=BTCUSDT&interval=1m",
            exchange_id(venue)
        ));
        assert_eq!(status, 200, "{completeness}");
        let row = &completeness[0];
        assert_eq!(row["missing"], 0, "{row}");
        assert_eq!(row["exchange_hole_candles"], 2, "{row}");
        // Nothing was lost because of the quiet: no reconnect was needed.
        assert_eq!(fake.connections().len(), 1, "{venue:?}");
    });
}

#[test]
fn an_okx_notice_opens_the_replacement_before_the_old_connection_closes() {
    let venue = Venue::Okx;
    let fake = FakeExchange::start(venue, FakeOptions::default());
    let collector = Collector::start(&config(venue, &fake, 30));
    wait_caught_up(&collector, venue, "the history sync", 0);
    wait_for("live data", PATIENCE, || {
        fake.frames_sent().gt(&0).then_some(())
    });
    fake.send_notice();
    let connections = wait_for("the replacement connection", PATIENCE, || {
        let connections = fake.connections();
        (connections.len() == 2 && connections[0].closed_at.is_some()).then_some(connections)
    });
    let (old, new) = (&connections[0], &connections[1]);
    assert!(
        new.opened_at < old.closed_at.unwrap(),
        "the replacement opened after the old connection closed: {connections:?}"
    );
    assert_eq!(new.subscriptions.len(), 2, "{new:?}");
    let frames = fake.frames_sent();
    wait_for("data on the replacement", PATIENCE, || {
        (fake.frames_sent() > frames + 4).then_some(())
    });
    let through = wait_caught_up(&collector, venue, "the series after the notice", 0);
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact(&collector.database_path(), &fake, venue, symbol, through);
    }
}

#[test]
fn exchange_symbols_list_the_tradable_perpetuals_and_refuse_unlisted_ones() {
    on_every_exchange(|venue| {
        let fake = FakeExchange::start(venue, FakeOptions::default());
        let collector = Collector::start(&config(venue, &fake, 10));
        let id = exchange_id(venue);
        let (status, listed) = collector.get(&format!("/exchangeSymbols/{id}"));
        assert_eq!(status, 200, "{listed}");
        let listed: Vec<String> = serde_json::from_value(listed.clone())
            .or_else(|_| serde_json::from_value(listed["symbols"].clone()))
            .unwrap_or_else(|e| panic!("{e}: {listed}"));
        let mut expected = fake.market().symbols();
        expected.sort();
        assert_eq!(listed, expected, "{venue:?}");
        let (status, refused) = collector.post(
            "/exchangeSymbols",
            &json!({"exchange": id, "symbols": ["BTCUSDT", "NOSUCHUSDT"]}),
        );
        assert_eq!(status, 400, "{refused}");
        assert!(refused.to_string().contains("NOSUCHUSDT"), "{refused}");
        let (status, saved) = collector.post(
            "/exchangeSymbols",
            &json!({"exchange": id, "symbols": ["SOLUSDT"]}),
        );
        assert_eq!(status, 200, "{saved}");
    });
}
