//! OKX v5, SWAP instruments, as documented at
//! <https://www.okx.com/docs-v5/en>: `/api/v5/market/candles` (the latest
//! 1440 rows), `/api/v5/market/history-candles` (any age),
//! `/api/v5/public/instruments`, and the `/ws/v5/business` stream with its
//! text `ping`/`pong` keep-alive. Volumes: `vol` in contracts, `volCcy` in
//! the base currency, `vol = volCcy / ctVal` exactly.

use ohlcv_domain::Interval;
use serde_json::Value;

use crate::market::{instrument, trimmed, Bar, Instrument, RawCandle, INSTRUMENTS};
use crate::server::{Query, Resp};
use crate::ws::{Conn, Kind, Sub};
use crate::Shared;

const HK: i64 = 8 * 3_600_000;

/// Bars OKX serves that the market has: UTC-aligned ones, and the Hong
/// Kong-time `6H`/`12H`/`1D`/`1W`, aligned to UTC+8 (a client using them
/// for UTC candles gets different open times and is caught).
const BARS: [(&str, Interval, i64); 16] = [
    ("1m", Interval::M1, 0),
    ("3m", Interval::M3, 0),
    ("5m", Interval::M5, 0),
    ("15m", Interval::M15, 0),
    ("30m", Interval::M30, 0),
    ("1H", Interval::H1, 0),
    ("2H", Interval::H2, 0),
    ("4H", Interval::H4, 0),
    ("6Hutc", Interval::H6, 0),
    ("12Hutc", Interval::H12, 0),
    ("1Dutc", Interval::D1, 0),
    ("1Wutc", Interval::W1, 0),
    ("6H", Interval::H6, HK),
    ("12H", Interval::H12, HK),
    ("1D", Interval::D1, HK),
    ("1W", Interval::W1, HK),
];

/// Rows `/market/candles` serves: "the latest 1,440 data entries".
const RECENT_ROWS: i64 = 1440;
/// "The maximum is 300. The default is 100."
const MAX_LIMIT: usize = 300;
const DEFAULT_LIMIT: usize = 100;

fn bar(name: &str) -> Option<Bar> {
    BARS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, i, s)| Bar {
            interval: *i,
            shift_ms: *s,
        })
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn envelope(code: &str, msg: &str, data: &str) -> String {
    format!(
        "{{\"code\":\"{code}\",\"msg\":{},\"data\":{data}}}",
        json_str(msg)
    )
}

/// Bodies of injected failures: 50011 for rate limits, 50001 for 503 and
/// 50026 otherwise (<https://www.okx.com/docs-v5/en/#error-code>).
pub(crate) fn error_body(status: u16) -> String {
    match status {
        429 | 418 | 403 => envelope("50011", "Too Many Requests", "[]"),
        503 => envelope(
            "50001",
            "Service temporarily unavailable. Please try again later.",
            "[]",
        ),
        _ => envelope("50026", "System error. Try again later.", "[]"),
    }
}

pub(crate) fn not_found() -> Resp {
    Resp::json(404, envelope("404", "Not Found", "[]"))
}

/// The market instrument of a SWAP `instId` (`BTC-USDT-SWAP`).
fn market_inst(inst_id: &str) -> Option<&'static Instrument> {
    let base = inst_id.strip_suffix("-USDT-SWAP")?;
    instrument(&format!("{base}USDT"))
}

pub(crate) fn rest(shared: &Shared, path: &str, q: &Query, now: i64) -> Resp {
    match path {
        "/api/v5/market/candles" => candles(shared, q, now, true),
        "/api/v5/market/history-candles" => candles(shared, q, now, false),
        "/api/v5/public/instruments" => instruments(shared, q),
        "/api/v5/public/time" => {
            Resp::json(200, envelope("0", "", &format!("[{{\"ts\":\"{now}\"}}]")))
        }
        _ => not_found(),
    }
}

fn row(inst: &Instrument, c: &RawCandle) -> String {
    let contracts_milli = c.volume_milli as i128 * 1000 / inst.ct_val_milli as i128;
    format!(
        "[\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"]",
        c.open_time,
        c.open_s(),
        c.high_s(),
        c.low_s(),
        c.close_s(),
        trimmed(contracts_milli, 3),
        c.volume_s(),
        c.quote_s(),
        if c.closed { "1" } else { "0" }
    )
}

fn candles(shared: &Shared, q: &Query, now: i64, recent: bool) -> Resp {
    let Some(inst_id) = q.get("instId") else {
        return Resp::json(
            400,
            envelope("50014", "Parameter instId can not be empty.", "[]"),
        );
    };
    let Some(inst) = market_inst(inst_id).filter(|i| !shared.refused(i.symbol)) else {
        return Resp::json(200, envelope("51001", "Instrument ID does not exist", "[]"));
    };
    let Some(bar) = bar(q.get("bar").unwrap_or("1m")) else {
        return Resp::json(400, envelope("51000", "Parameter bar error", "[]"));
    };
    let limit = match q.get("limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(l)) if l >= 1 => l.min(MAX_LIMIT),
        _ => return Resp::json(400, envelope("51000", "Parameter limit error", "[]")),
    };
    let parse = |k: &str| q.get(k).map(str::parse::<i64>);
    let (after, before) = match (parse("after"), parse("before")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return Resp::json(400, envelope("51000", "Parameter after error", "[]"))
        }
        (a, b) => (a.map(|r| r.unwrap_or(0)), b.map(|r| r.unwrap_or(0))),
    };
    let d = bar.duration_ms();
    let mut lo = before.map(|b| b + 1).unwrap_or(i64::MIN / 4);
    let hi = after.map(|a| a - 1).unwrap_or(now);
    if recent {
        lo = lo.max(bar.align(now) - (RECENT_ROWS - 1) * d);
    }
    let market = &shared.market;
    let rows: Vec<String> = market
        .open_times(inst.symbol, bar, lo, hi, limit, true, now)
        .into_iter()
        .rev()
        .filter_map(|t| market.raw(inst.symbol, bar, t, now))
        .map(|c| row(inst, &c))
        .collect();
    Resp::json(200, envelope("0", "", &format!("[{}]", rows.join(","))))
}

struct Listing {
    inst_id: String,
    base: &'static str,
    quote: &'static str,
    settle: &'static str,
    ct_val: &'static str,
    ct_val_ccy: &'static str,
    ct_type: &'static str,
    state: &'static str,
    tick: String,
}

fn instruments(shared: &Shared, q: &Query) -> Resp {
    match q.get("instType") {
        None => {
            return Resp::json(
                400,
                envelope("50014", "Parameter instType can not be empty.", "[]"),
            )
        }
        Some("SWAP") => {}
        Some(_) => return Resp::json(200, envelope("0", "", "[]")),
    }
    let mut list: Vec<Listing> = INSTRUMENTS
        .iter()
        .map(|i| Listing {
            inst_id: format!("{}-USDT-SWAP", i.base),
            base: i.base,
            quote: "USDT",
            settle: "USDT",
            ct_val: i.ct_val,
            ct_val_ccy: i.base,
            ct_type: "linear",
            state: "live",
            tick: crate::market::fixed(1, i.price_decimals),
        })
        .collect();
    // An inverse swap and a suspended one: not markets to follow.
    list.insert(
        1,
        Listing {
            inst_id: "BTC-USD-SWAP".into(),
            base: "BTC",
            quote: "USD",
            settle: "BTC",
            ct_val: "100",
            ct_val_ccy: "USD",
            ct_type: "inverse",
            state: "live",
            tick: "0.1".into(),
        },
    );
    list.push(Listing {
        inst_id: "LUNA-USDT-SWAP".into(),
        base: "LUNA",
        quote: "USDT",
        settle: "USDT",
        ct_val: "1",
        ct_val_ccy: "LUNA",
        ct_type: "linear",
        state: "suspend",
        tick: "0.0001".into(),
    });
    if let Some(id) = q.get("instId") {
        list.retain(|l| l.inst_id == id);
    }
    let listed = shared.market.listed_since_ms();
    let items: Vec<String> = list
        .iter()
        .map(|l| {
            let family = format!("{}-{}", l.base, l.quote);
            format!(
                "{{\"alias\":\"\",\"auctionEndTime\":\"\",\"baseCcy\":\"\",\"category\":\"1\",\"ctMult\":\"1\",\"ctType\":\"{}\",\"ctVal\":\"{}\",\"ctValCcy\":\"{}\",\"contTdSwTime\":\"\",\"expTime\":\"\",\"futureSettlement\":false,\"groupId\":\"1\",\"instFamily\":\"{family}\",\"instId\":\"{}\",\"instType\":\"SWAP\",\"lever\":\"100\",\"listTime\":\"{listed}\",\"lotSz\":\"0.01\",\"maxIcebergSz\":\"100000000.0000000000000000\",\"maxLmtAmt\":\"20000000\",\"maxLmtSz\":\"100000000\",\"maxMktAmt\":\"\",\"maxMktSz\":\"12000\",\"maxStopSz\":\"12000\",\"maxTriggerSz\":\"100000000.0000000000000000\",\"maxTwapSz\":\"100000000.0000000000000000\",\"minSz\":\"0.01\",\"optType\":\"\",\"openType\":\"\",\"preMktSwTime\":\"\",\"quoteCcy\":\"\",\"tradeQuoteCcyList\":[],\"settleCcy\":\"{}\",\"state\":\"{}\",\"ruleType\":\"normal\",\"stk\":\"\",\"tickSz\":\"{}\",\"uly\":\"{family}\",\"instIdCode\":{},\"upcChg\":[]}}",
                l.ct_type, l.ct_val, l.ct_val_ccy, l.inst_id, l.settle, l.state, l.tick,
                10_000 + l.inst_id.len()
            )
        })
        .collect();
    Resp::json(200, envelope("0", "", &format!("[{}]", items.join(","))))
}

fn id_field(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!("\"id\":{},", json_str(i)))
        .unwrap_or_default()
}

pub(crate) fn notice(conn: &Conn) -> String {
    format!(
        "{{\"event\":\"notice\",\"code\":\"64008\",\"msg\":\"The connection will soon be closed for a service upgrade. Please reconnect.\",\"connId\":\"{}\"}}",
        conn.conn_id
    )
}

pub(crate) fn ws_text(conn: &mut Conn, text: &str) {
    if text == "ping" {
        conn.send("pong".into(), Kind::Keepalive);
        return;
    }
    let invalid = |conn: &mut Conn, id: &Option<String>| {
        let msg = format!("Invalid request: {text}");
        let t = format!(
            "{{{}\"event\":\"error\",\"code\":\"60012\",\"msg\":{},\"connId\":\"{}\"}}",
            id_field(id),
            json_str(&msg),
            conn.conn_id
        );
        conn.send(t, Kind::Ack);
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        invalid(conn, &None);
        return;
    };
    let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    let op = v.get("op").and_then(Value::as_str).unwrap_or("");
    let Some(args) = v.get("args").and_then(Value::as_array) else {
        invalid(conn, &id);
        return;
    };
    if op != "subscribe" && op != "unsubscribe" {
        invalid(conn, &id);
        return;
    }
    for arg in args {
        let channel = arg.get("channel").and_then(Value::as_str).unwrap_or("");
        let inst_id = arg.get("instId").and_then(Value::as_str).unwrap_or("");
        let arg_json = format!(
            "{{\"channel\":{},\"instId\":{}}}",
            json_str(channel),
            json_str(inst_id)
        );
        let topic = format!("{channel}:{inst_id}");
        if op == "unsubscribe" {
            conn.subs.retain(|s| s.topic != topic);
            let t = format!(
                "{{{}\"event\":\"unsubscribe\",\"arg\":{arg_json},\"connId\":\"{}\"}}",
                id_field(&id),
                conn.conn_id
            );
            conn.send(t, Kind::Ack);
            continue;
        }
        let business = conn.path == "/ws/v5/business";
        let found = channel
            .strip_prefix("candle")
            .and_then(bar)
            .zip(market_inst(inst_id))
            .filter(|(_, i)| business && !conn.shared.refused(i.symbol));
        let Some((b, inst)) = found else {
            let t = format!(
                "{{{}\"event\":\"error\",\"code\":\"60018\",\"msg\":{},\"connId\":\"{}\"}}",
                id_field(&id),
                json_str(&format!("Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct URL, channel and parameters referring to API document.")),
                conn.conn_id
            );
            conn.send(t, Kind::Ack);
            continue;
        };
        if !conn.subs.iter().any(|s| s.topic == topic) {
            conn.subs.push(Sub {
                topic,
                symbol: inst.symbol.to_owned(),
                wire_symbol: inst_id.to_owned(),
                bar_name: channel.to_owned(),
                bar: b,
                last_sent: None,
            });
        }
        let t = format!(
            "{{{}\"event\":\"subscribe\",\"arg\":{arg_json},\"connId\":\"{}\"}}",
            id_field(&id),
            conn.conn_id
        );
        conn.send(t, Kind::Ack);
    }
}

fn push(sub: &Sub, row: String) -> String {
    format!(
        "{{\"arg\":{{\"channel\":\"{}\",\"instId\":\"{}\"}},\"data\":[{row}]}}",
        sub.bar_name, sub.wire_symbol
    )
}

pub(crate) fn ws_push(sub: &Sub, c: &RawCandle) -> String {
    let inst = instrument(&sub.symbol).unwrap_or(&INSTRUMENTS[0]);
    push(sub, row(inst, c))
}

pub(crate) fn ws_garbage(conn: &Conn, now: i64) -> Vec<String> {
    let mut out =
        vec![r#"{"arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"data":[["#.to_owned()];
    out.push(format!("{{\"arg\":{{\"channel\":\"tickers\",\"instId\":\"BTC-USDT-SWAP\"}},\"data\":[{{\"instType\":\"SWAP\",\"instId\":\"BTC-USDT-SWAP\",\"last\":\"43000.1\",\"ts\":\"{now}\"}}]}}"));
    out.push(format!("{{\"event\":\"channel-conn-count\",\"channel\":\"candle1m\",\"connCount\":\"2\",\"connId\":\"{}\"}}", conn.conn_id));
    if let Some(sub) = conn.subs.first() {
        if let Some(c) = conn
            .shared
            .market
            .raw(&sub.symbol, sub.bar, sub.bar.align(now), now)
        {
            let inst = instrument(&sub.symbol).unwrap_or(&INSTRUMENTS[0]);
            // A row of eight fields (confirm missing).
            out.push(push(
                sub,
                format!(
                    "[\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"]",
                    c.open_time,
                    c.open_s(),
                    c.high_s(),
                    c.low_s(),
                    c.close_s(),
                    c.volume_s(),
                    c.volume_s(),
                    c.quote_s()
                ),
            ));
            let mut neg = c;
            neg.close = -10;
            out.push(push(sub, row(inst, &neg)));
            let mut bad = c;
            std::mem::swap(&mut bad.high, &mut bad.low);
            bad.high -= 1;
            out.push(push(sub, row(inst, &bad)));
        }
    }
    out
}
