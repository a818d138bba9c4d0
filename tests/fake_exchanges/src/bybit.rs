//! Bybit v5, linear category, as documented at
//! <https://bybit-exchange.github.io/docs/v5>: `/v5/market/kline`,
//! `/v5/market/instruments-info` (cursor pages) and the public stream
//! `/v5/public/linear` with its `ping` op keep-alive.

use ohlcv_domain::Interval;
use serde_json::Value;

use crate::market::{instrument, Bar, RawCandle, INSTRUMENTS};
use crate::server::{Query, Resp};
use crate::ws::{Conn, Kind, Sub};
use crate::Shared;

const INTERVALS: [(&str, Interval); 12] = [
    ("1", Interval::M1),
    ("3", Interval::M3),
    ("5", Interval::M5),
    ("15", Interval::M15),
    ("30", Interval::M30),
    ("60", Interval::H1),
    ("120", Interval::H2),
    ("240", Interval::H4),
    ("360", Interval::H6),
    ("720", Interval::H12),
    ("D", Interval::D1),
    ("W", Interval::W1),
];

/// Requests per window in the `X-Bapi-Limit*` headers (600 per 5 s per IP).
const LIMIT: u64 = 600;
const WINDOW_MS: i64 = 5_000;

fn interval(name: &str) -> Option<Interval> {
    INTERVALS.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn envelope(code: i64, msg: &str, result: &str, now: i64) -> String {
    format!(
        "{{\"retCode\":{code},\"retMsg\":{},\"result\":{result},\"retExtInfo\":{{}},\"time\":{now}}}",
        json_str(msg)
    )
}

/// Bodies of injected failures: 10006 "Too many visits!" for rate limits,
/// 10016 "Server error." otherwise (<https://bybit-exchange.github.io/docs/v5/error>).
pub(crate) fn error_body(status: u16, now: i64) -> String {
    match status {
        429 | 403 | 418 => envelope(10006, "Too many visits!", "{}", now),
        _ => envelope(10016, "Server error.", "{}", now),
    }
}

pub(crate) fn not_found(now: i64) -> Resp {
    Resp::json(404, envelope(10001, "Not Found", "{}", now))
}

pub(crate) fn rest(shared: &Shared, path: &str, q: &Query, now: i64) -> Resp {
    let (used, reset) = {
        let mut st = shared.state();
        let window = now.div_euclid(WINDOW_MS);
        if st.used.0 != window {
            st.used = (window, 0);
        }
        st.used.1 += 1;
        (st.used.1, (window + 1) * WINDOW_MS)
    };
    let mut resp = match path {
        "/v5/market/kline" => kline(shared, q, now),
        "/v5/market/instruments-info" => instruments(shared, q, now),
        "/v5/market/time" => Resp::json(
            200,
            envelope(
                0,
                "OK",
                &format!(
                    "{{\"timeSecond\":\"{}\",\"timeNano\":\"{}000000\"}}",
                    now / 1000,
                    now
                ),
                now,
            ),
        ),
        _ => return not_found(now),
    };
    resp.headers.push((
        "X-Bapi-Limit-Status".into(),
        LIMIT.saturating_sub(used).to_string(),
    ));
    resp.headers
        .push(("X-Bapi-Limit".into(), LIMIT.to_string()));
    resp.headers
        .push(("X-Bapi-Limit-Reset-Timestamp".into(), reset.to_string()));
    resp
}

fn params_error(msg: &str, now: i64) -> Resp {
    Resp::json(200, envelope(10001, msg, "{}", now))
}

fn kline(shared: &Shared, q: &Query, now: i64) -> Resp {
    if q.get("category").is_some_and(|c| c != "linear") {
        return params_error("Illegal category", now);
    }
    let Some(symbol) = q.get("symbol") else {
        return params_error("Params error: symbol invalid", now);
    };
    if instrument(symbol).is_none() || shared.refused(symbol) {
        return params_error("Params error: symbol invalid", now);
    }
    let Some(iv) = q.get("interval").and_then(interval) else {
        return params_error("Invalid period!", now);
    };
    let limit = match q.get("limit").map(str::parse::<usize>) {
        None => 200,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        _ => return params_error("Params error: limit must be in [1, 1000]", now),
    };
    let parse = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let bar = Bar::utc(iv);
    let start = parse("start").unwrap_or(i64::MIN / 4);
    let end = parse("end").unwrap_or(now);
    let market = &shared.market;
    let rows: Vec<String> = market
        .open_times(symbol, bar, start, end, limit, true, now)
        .into_iter()
        .rev()
        .filter_map(|t| market.raw(symbol, bar, t, now))
        .map(|c| {
            format!(
                "[\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"]",
                c.open_time,
                c.open_s(),
                c.high_s(),
                c.low_s(),
                c.close_s(),
                c.volume_s(),
                c.quote_s()
            )
        })
        .collect();
    Resp::json(
        200,
        envelope(
            0,
            "OK",
            &format!(
                "{{\"symbol\":\"{symbol}\",\"category\":\"linear\",\"list\":[{}]}}",
                rows.join(",")
            ),
            now,
        ),
    )
}

struct Item {
    symbol: String,
    base: &'static str,
    contract: &'static str,
    status: &'static str,
    delivery: i64,
    decimals: u32,
}

fn items(shared: &Shared, now: i64) -> Vec<Item> {
    let mut v: Vec<Item> = INSTRUMENTS
        .iter()
        .map(|i| Item {
            symbol: i.symbol.to_owned(),
            base: i.base,
            contract: "LinearPerpetual",
            status: "Trading",
            delivery: 0,
            decimals: i.price_decimals,
        })
        .collect();
    let _ = shared;
    // A dated future and a pre-launch perpetual: not markets to follow.
    v.insert(
        1,
        Item {
            symbol: "BTCUSDT-26DEC26".into(),
            base: "BTC",
            contract: "LinearFutures",
            status: "Trading",
            delivery: Interval::D1.align(now + 90 * 86_400_000) + 8 * 3_600_000,
            decimals: 1,
        },
    );
    v.push(Item {
        symbol: "BIOUSDT".into(),
        base: "BIO",
        contract: "LinearPerpetual",
        status: "PreLaunch",
        delivery: 0,
        decimals: 4,
    });
    v
}

fn item_json(i: &Item, listed: i64) -> String {
    let tick = crate::market::fixed(1, i.decimals);
    format!(
        "{{\"symbol\":\"{}\",\"contractType\":\"{}\",\"status\":\"{}\",\"baseCoin\":\"{}\",\"quoteCoin\":\"USDT\",\"launchTime\":\"{listed}\",\"deliveryTime\":\"{}\",\"deliveryFeeRate\":\"{}\",\"priceScale\":\"{}\",\"leverageFilter\":{{\"minLeverage\":\"1\",\"maxLeverage\":\"100.00\",\"leverageStep\":\"0.01\"}},\"priceFilter\":{{\"minPrice\":\"{tick}\",\"maxPrice\":\"1999999.80\",\"tickSize\":\"{tick}\"}},\"lotSizeFilter\":{{\"maxOrderQty\":\"1190.000\",\"minOrderQty\":\"0.001\",\"qtyStep\":\"0.001\",\"postOnlyMaxOrderQty\":\"1190.000\",\"maxMktOrderQty\":\"500.000\",\"minNotionalValue\":\"5\"}},\"unifiedMarginTrade\":true,\"fundingInterval\":480,\"settleCoin\":\"USDT\",\"copyTrading\":\"both\",\"upperFundingRate\":\"0.00375\",\"lowerFundingRate\":\"-0.00375\",\"isPreListing\":false,\"preListingInfo\":null,\"riskParameters\":{{\"priceLimitRatioX\":\"0.01\",\"priceLimitRatioY\":\"0.02\"}},\"symbolType\":\"\"}}",
        i.symbol,
        i.contract,
        i.status,
        i.base,
        i.delivery,
        if i.delivery == 0 { "" } else { "0.0005" },
        i.decimals,
    )
}

fn instruments(shared: &Shared, q: &Query, now: i64) -> Resp {
    if q.get("category") != Some("linear") {
        return params_error("Illegal category", now);
    }
    let mut all = items(shared, now);
    if let Some(s) = q.get("symbol") {
        all.retain(|i| i.symbol == s);
    }
    if let Some(s) = q.get("status") {
        all.retain(|i| i.status == s);
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(500)
        .clamp(1, 1000)
        .min(shared.options.instruments_page_size.max(1));
    let offset = match q.get("cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("page").and_then(|n| n.parse::<usize>().ok()) {
            Some(o) => o,
            None => return params_error("Params error: cursor invalid", now),
        },
    };
    let listed = shared.market.listed_since_ms();
    let page: Vec<String> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|i| item_json(i, listed))
        .collect();
    let next = if offset + limit < all.len() {
        format!("page{}", offset + limit)
    } else {
        String::new()
    };
    Resp::json(
        200,
        envelope(
            0,
            "OK",
            &format!(
                "{{\"category\":\"linear\",\"list\":[{}],\"nextPageCursor\":\"{next}\"}}",
                page.join(",")
            ),
            now,
        ),
    )
}

fn answer(conn: &Conn, success: bool, ret_msg: &str, req_id: &str, op: &str) -> String {
    format!(
        "{{\"success\":{success},\"ret_msg\":{},\"conn_id\":\"{}\",\"req_id\":{},\"op\":{}}}",
        json_str(ret_msg),
        conn.conn_id,
        json_str(req_id),
        json_str(op)
    )
}

/// Handles a client frame; returns whether it was a `ping` op (the
/// keep-alive Bybit requires).
pub(crate) fn ws_text(conn: &mut Conn, text: &str, _now: i64) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        let a = answer(
            conn,
            false,
            &format!("error:unmarshal error,input:{text}"),
            "",
            "",
        );
        conn.send(a, Kind::Ack);
        return false;
    };
    let req_id = v
        .get("req_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let op = v.get("op").and_then(Value::as_str).unwrap_or("").to_owned();
    let args: Vec<String> = v
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    match op.as_str() {
        "ping" => {
            let a = answer(conn, true, "pong", &req_id, "ping");
            conn.send(a, Kind::Keepalive);
            true
        }
        "subscribe" => {
            let mut refused = Vec::new();
            for topic in &args {
                if subscribe(conn, topic).is_err() {
                    refused.push(format!("error:handler not found,topic:{topic}"));
                }
            }
            let a = if refused.is_empty() {
                answer(conn, true, "", &req_id, "subscribe")
            } else {
                answer(conn, false, &refused.join(";"), &req_id, "subscribe")
            };
            conn.send(a, Kind::Ack);
            false
        }
        "unsubscribe" => {
            conn.subs.retain(|s| !args.contains(&s.topic));
            let a = answer(conn, true, "", &req_id, "unsubscribe");
            conn.send(a, Kind::Ack);
            false
        }
        _ => {
            let a = answer(conn, false, &format!("error:illegal op {op}"), &req_id, &op);
            conn.send(a, Kind::Ack);
            false
        }
    }
}

fn subscribe(conn: &mut Conn, topic: &str) -> Result<(), ()> {
    let mut parts = topic.splitn(3, '.');
    if parts.next() != Some("kline") {
        return Err(());
    }
    let name = parts.next().ok_or(())?;
    let iv = interval(name).ok_or(())?;
    let symbol = parts.next().ok_or(())?;
    if instrument(symbol).is_none() || conn.shared.refused(symbol) {
        return Err(());
    }
    if !conn.subs.iter().any(|s| s.topic == topic) {
        conn.subs.push(Sub {
            topic: topic.to_owned(),
            symbol: symbol.to_owned(),
            wire_symbol: symbol.to_owned(),
            bar_name: name.to_owned(),
            bar: Bar::utc(iv),
            last_sent: None,
        });
    }
    Ok(())
}

fn kline_item(sub: &Sub, c: &RawCandle, now: i64, close: &str, with_close: bool) -> String {
    let close_field = if with_close {
        format!("\"close\":\"{close}\",")
    } else {
        String::new()
    };
    format!(
        "{{\"start\":{},\"end\":{},\"interval\":\"{}\",\"open\":\"{}\",{close_field}\"high\":\"{}\",\"low\":\"{}\",\"volume\":\"{}\",\"turnover\":\"{}\",\"confirm\":{},\"timestamp\":{now}}}",
        c.open_time,
        c.open_time + sub.bar.duration_ms() - 1,
        sub.bar_name,
        c.open_s(),
        c.high_s(),
        c.low_s(),
        c.volume_s(),
        c.quote_s(),
        c.closed
    )
}

fn push(topic: &str, item: String, now: i64) -> String {
    format!("{{\"topic\":\"{topic}\",\"data\":[{item}],\"ts\":{now},\"type\":\"snapshot\"}}")
}

pub(crate) fn ws_push(sub: &Sub, c: &RawCandle, now: i64) -> String {
    push(&sub.topic, kline_item(sub, c, now, &c.close_s(), true), now)
}

pub(crate) fn ws_garbage(conn: &Conn, now: i64) -> Vec<String> {
    let mut out = vec![r#"{"topic":"kline.1.BTCUSDT","data":[{"start":"#.to_owned()];
    out.push(format!("{{\"topic\":\"tickers.BTCUSDT\",\"type\":\"snapshot\",\"data\":{{\"symbol\":\"BTCUSDT\",\"lastPrice\":\"43000.1\"}},\"cs\":24987956059,\"ts\":{now}}}"));
    if let Some(sub) = conn.subs.first() {
        if let Some(c) = conn
            .shared
            .market
            .raw(&sub.symbol, sub.bar, sub.bar.align(now), now)
        {
            out.push(push(&sub.topic, kline_item(sub, &c, now, "", false), now));
            out.push(push(
                &sub.topic,
                kline_item(sub, &c, now, "-1.0", true),
                now,
            ));
            let mut bad = c;
            std::mem::swap(&mut bad.high, &mut bad.low);
            bad.high -= 1;
            out.push(push(
                &sub.topic,
                kline_item(sub, &bad, now, &bad.close_s(), true),
                now,
            ));
        }
    }
    out
}
