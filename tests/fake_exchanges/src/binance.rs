//! Binance USDⓈ-M futures, as documented at
//! <https://developers.binance.com/docs/derivatives/usds-margined-futures>:
//! `/fapi/v1/klines`, `/fapi/v1/exchangeInfo`, and the routed `/market`
//! WebSocket endpoint (the legacy `/stream` and `/ws` paths accept
//! subscriptions but never carry klines).

use ohlcv_domain::Interval;
use serde_json::Value;

use crate::market::{instrument, Bar, RawCandle};
use crate::server::{Query, Resp};
use crate::ws::{Conn, Kind, Sub};
use crate::Shared;

/// "A single connection can listen to a maximum of 200 streams."
const MAX_STREAMS: usize = 200;

/// `(routed, combined)` of a WebSocket path; `None` when not one.
pub(crate) fn ws_path(path: &str) -> Option<(bool, bool)> {
    let (routed, rest) = if let Some(r) = path.strip_prefix("/market") {
        (true, r)
    } else if let Some(r) = path.strip_prefix("/public") {
        (false, r)
    } else {
        (false, path)
    };
    if rest == "/stream" {
        Some((routed, true))
    } else if rest == "/ws" || rest.starts_with("/ws/") {
        Some((routed, false))
    } else {
        None
    }
}

fn interval(name: &str) -> Option<Interval> {
    Interval::ALL.into_iter().find(|i| i.as_str() == name)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub(crate) fn ws_open(conn: &mut Conn) {
    let (routed, combined) = ws_path(&conn.path).unwrap_or((false, true));
    conn.silent = !routed;
    conn.combined = combined;
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = conn.query.get("streams") {
        names.extend(s.split('/').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if let Some(rest) = conn.path.split("/ws/").nth(1) {
        names.extend(rest.split('/').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let refused: Vec<String> = names
        .iter()
        .filter(|n| subscribe(conn, n).is_err())
        .cloned()
        .collect();
    if conn.subs.len() > MAX_STREAMS {
        conn.close = Some(("too many streams".into(), true));
    }
    if !refused.is_empty() {
        conn.send(
            format!(
                "{{\"code\":2,\"msg\":{}}}",
                json_str(&format!(
                    "Invalid request: unknown stream {}",
                    refused.join(",")
                ))
            ),
            Kind::Ack,
        );
    }
}

fn subscribe(conn: &mut Conn, name: &str) -> Result<(), ()> {
    let (sym, kind) = name.split_once('@').ok_or(())?;
    let iv = kind.strip_prefix("kline_").and_then(interval).ok_or(())?;
    if sym != sym.to_ascii_lowercase() {
        return Err(());
    }
    let symbol = sym.to_ascii_uppercase();
    if instrument(&symbol).is_none() || conn.shared.refused(&symbol) {
        return Err(());
    }
    if !conn.subs.iter().any(|s| s.topic == name) {
        conn.subs.push(Sub {
            topic: name.to_owned(),
            wire_symbol: symbol.clone(),
            symbol,
            bar_name: iv.as_str().to_owned(),
            bar: Bar::utc(iv),
            last_sent: None,
        });
    }
    Ok(())
}

pub(crate) fn ws_text(conn: &mut Conn, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        conn.send(
            r#"{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}"#.into(),
            Kind::Ack,
        );
        return;
    };
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        conn.send(
            r#"{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"}"#.into(),
            Kind::Ack,
        );
        return;
    };
    let params: Vec<String> = v
        .get("params")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    match v.get("method").and_then(Value::as_str) {
        Some("SUBSCRIBE") => {
            let refused: Vec<String> = params
                .iter()
                .filter(|n| subscribe(conn, n).is_err())
                .cloned()
                .collect();
            if conn.subs.len() > MAX_STREAMS {
                conn.close = Some(("too many streams".into(), true));
                return;
            }
            if refused.is_empty() {
                conn.send(format!("{{\"result\":null,\"id\":{id}}}"), Kind::Ack);
            } else {
                let msg = format!("Invalid request: unknown stream {}", refused.join(","));
                conn.send(
                    format!("{{\"code\":2,\"msg\":{},\"id\":{id}}}", json_str(&msg)),
                    Kind::Ack,
                );
            }
        }
        Some("UNSUBSCRIBE") => {
            conn.subs.retain(|s| !params.contains(&s.topic));
            conn.send(format!("{{\"result\":null,\"id\":{id}}}"), Kind::Ack);
        }
        Some("LIST_SUBSCRIPTIONS") => {
            let list: Vec<String> = conn.subs.iter().map(|s| json_str(&s.topic)).collect();
            conn.send(
                format!("{{\"result\":[{}],\"id\":{id}}}", list.join(",")),
                Kind::Ack,
            );
        }
        _ => conn.send(
            format!("{{\"code\":0,\"msg\":\"Unknown property\",\"id\":{id}}}"),
            Kind::Ack,
        ),
    }
}

fn kline_object(sub: &Sub, c: &RawCandle, closed_field: Option<&str>) -> String {
    let d = sub.bar.duration_ms();
    let (f, l) = (c.first_trade_id, c.first_trade_id + c.trades - 1);
    format!(
        "{{\"t\":{},\"T\":{},\"s\":\"{}\",\"i\":\"{}\",\"f\":{f},\"L\":{l},\"o\":\"{}\",\"c\":\"{}\",\"h\":\"{}\",\"l\":\"{}\",\"v\":\"{}\",\"n\":{},\"x\":{},\"q\":\"{}\",\"V\":\"{}\",\"Q\":\"{}\",\"B\":\"0\"}}",
        c.open_time,
        c.open_time + d - 1,
        sub.wire_symbol,
        sub.bar_name,
        c.open_s(),
        closed_field.unwrap_or(&c.close_s()),
        c.high_s(),
        c.low_s(),
        c.volume_s(),
        c.trades,
        c.closed,
        c.quote_s(),
        c.taker_base_s(),
        c.taker_quote_s(),
    )
}

fn wrap(conn: &Conn, stream: &str, data: String) -> String {
    if conn.combined {
        format!("{{\"stream\":\"{stream}\",\"data\":{data}}}")
    } else {
        data
    }
}

pub(crate) fn ws_push(conn: &Conn, sub: &Sub, c: &RawCandle, now: i64) -> String {
    let data = format!(
        "{{\"e\":\"kline\",\"E\":{now},\"s\":\"{}\",\"k\":{}}}",
        sub.wire_symbol,
        kline_object(sub, c, None)
    );
    wrap(conn, &sub.topic, data)
}

pub(crate) fn ws_garbage(conn: &Conn, now: i64) -> Vec<String> {
    let mut out = vec![r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","#.to_owned()];
    out.push(wrap(
        conn,
        "btcusdt@bookTicker",
        format!("{{\"e\":\"bookTicker\",\"u\":400900217,\"E\":{now},\"T\":{now},\"s\":\"BTCUSDT\",\"b\":\"25.35190000\",\"B\":\"31.21000000\",\"a\":\"25.36520000\",\"A\":\"40.66000000\"}}"),
    ));
    if let Some(sub) = conn.subs.first() {
        if let Some(c) = conn
            .shared
            .market
            .raw(&sub.symbol, sub.bar, sub.bar.align(now), now)
        {
            let d = sub.bar.duration_ms();
            // A kline without its close price.
            out.push(wrap(conn, &sub.topic, format!(
                "{{\"e\":\"kline\",\"E\":{now},\"s\":\"{}\",\"k\":{{\"t\":{},\"T\":{},\"s\":\"{}\",\"i\":\"{}\",\"f\":1,\"L\":2,\"o\":\"{}\",\"h\":\"{}\",\"l\":\"{}\",\"v\":\"{}\",\"n\":2,\"x\":false,\"q\":\"1\",\"V\":\"1\",\"Q\":\"1\",\"B\":\"0\"}}}}",
                sub.wire_symbol, c.open_time, c.open_time + d - 1, sub.wire_symbol, sub.bar_name,
                c.open_s(), c.high_s(), c.low_s(), c.volume_s()
            )));
            // A negative price.
            out.push(wrap(
                conn,
                &sub.topic,
                format!(
                    "{{\"e\":\"kline\",\"E\":{now},\"s\":\"{}\",\"k\":{}}}",
                    sub.wire_symbol,
                    kline_object(sub, &c, Some("-1.0"))
                ),
            ));
            // High below low.
            let mut bad = c;
            std::mem::swap(&mut bad.high, &mut bad.low);
            bad.high -= 1;
            out.push(wrap(
                conn,
                &sub.topic,
                format!(
                    "{{\"e\":\"kline\",\"E\":{now},\"s\":\"{}\",\"k\":{}}}",
                    sub.wire_symbol,
                    kline_object(sub, &bad, None)
                ),
            ));
        }
    }
    out
}

/// The documented error bodies of the statuses a test injects.
pub(crate) fn error_body(status: u16) -> String {
    match status {
        429 => r#"{"code":-1003,"msg":"Too many requests; current limit of IP(127.0.0.1) request weight per minute is 2400. Please use WebSocket Streams for live updates to avoid polling the API."}"#.into(),
        418 => format!("{{\"code\":-1003,\"msg\":\"Way too many requests; IP(127.0.0.1) banned until {}. Please use WebSocket Streams for live updates to avoid bans.\"}}", crate::now_ms() + 120_000),
        503 => r#"{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}"#.into(),
        _ => r#"{"code":-1000,"msg":"An unknown error occured while processing the request."}"#.into(),
    }
}

pub(crate) fn not_found(method: &str, path: &str) -> Resp {
    Resp::json(
        404,
        format!(
            "{{\"code\":-5000,\"msg\":{}}}",
            json_str(&format!("Path {path}, Method {method} is invalid"))
        ),
    )
}

fn bad(code: i64, msg: &str) -> Resp {
    Resp::json(
        400,
        format!("{{\"code\":{code},\"msg\":{}}}", json_str(msg)),
    )
}

/// Request weight of a klines call: "1–99: 1, 100–499: 2, 500–1000: 5,
/// > 1000: 10".
fn klines_weight(limit: usize) -> u64 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

pub(crate) fn rest(shared: &Shared, path: &str, q: &Query, now: i64) -> Resp {
    let limit_param = q.get("limit").map(|l| l.parse::<usize>());
    let weight = match path {
        "/fapi/v1/klines" => klines_weight(match &limit_param {
            Some(Ok(l)) => *l,
            _ => 500,
        }),
        _ => 1,
    };
    let used = {
        let mut st = shared.state();
        let minute = now.div_euclid(60_000);
        if st.used.0 != minute {
            st.used = (minute, 0);
        }
        st.used.1 += weight;
        st.used.1
    };
    let mut resp = match path {
        "/fapi/v1/klines" => klines(shared, q, now, limit_param),
        "/fapi/v1/exchangeInfo" => Resp::json(200, exchange_info(shared, now)),
        "/fapi/v1/ping" => Resp::json(200, "{}".into()),
        "/fapi/v1/time" => Resp::json(200, format!("{{\"serverTime\":{now}}}")),
        _ => return not_found("GET", path),
    };
    resp.headers
        .push(("X-MBX-USED-WEIGHT-1M".into(), used.to_string()));
    resp
}

fn klines(
    shared: &Shared,
    q: &Query,
    now: i64,
    limit: Option<Result<usize, std::num::ParseIntError>>,
) -> Resp {
    let Some(symbol) = q.get("symbol") else {
        return bad(
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    let Some(iv_name) = q.get("interval") else {
        return bad(
            -1102,
            "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
        );
    };
    if instrument(symbol).is_none() || shared.refused(symbol) {
        return bad(-1121, "Invalid symbol.");
    }
    let Some(iv) = interval(iv_name) else {
        return bad(-1120, "Invalid interval.");
    };
    let limit = match limit {
        None => 500,
        Some(Ok(l)) if (1..=1500).contains(&l) => l,
        _ => return bad(-1130, "Data sent for parameter 'limit' is not valid."),
    };
    let parse = |k: &str| q.get(k).map(|v| v.parse::<i64>());
    let (start, end) = match (parse("startTime"), parse("endTime")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return bad(-1100, "Illegal characters found in a parameter.")
        }
        (s, e) => (s.map(|r| r.unwrap_or(0)), e.map(|r| r.unwrap_or(0))),
    };
    let bar = Bar::utc(iv);
    let market = &shared.market;
    let times = match (start, end) {
        (Some(s), e) => market.open_times(symbol, bar, s, e.unwrap_or(now), limit, false, now),
        (None, e) => market.open_times(
            symbol,
            bar,
            i64::MIN / 4,
            e.unwrap_or(now),
            limit,
            true,
            now,
        ),
    };
    let rows: Vec<String> = times
        .into_iter()
        .filter_map(|t| market.raw(symbol, bar, t, now))
        .map(|c| {
            format!(
                "[{},\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",{},\"{}\",{},\"{}\",\"{}\",\"0\"]",
                c.open_time,
                c.open_s(),
                c.high_s(),
                c.low_s(),
                c.close_s(),
                c.volume_s(),
                c.open_time + iv.duration_ms() - 1,
                c.quote_s(),
                c.trades,
                c.taker_base_s(),
                c.taker_quote_s()
            )
        })
        .collect();
    Resp::json(200, format!("[{}]", rows.join(",")))
}

fn symbol_json(
    symbol: &str,
    base: &str,
    contract: &str,
    delivery: i64,
    onboard: i64,
    status: &str,
    decimals: u32,
) -> String {
    let tick = crate::market::fixed(1, decimals);
    format!(
        "{{\"symbol\":\"{symbol}\",\"pair\":\"{base}USDT\",\"contractType\":\"{contract}\",\"deliveryDate\":{delivery},\"onboardDate\":{onboard},\"status\":\"{status}\",\"maintMarginPercent\":\"2.5000\",\"requiredMarginPercent\":\"5.0000\",\"baseAsset\":\"{base}\",\"quoteAsset\":\"USDT\",\"marginAsset\":\"USDT\",\"pricePrecision\":{decimals},\"quantityPrecision\":3,\"baseAssetPrecision\":8,\"quotePrecision\":8,\"underlyingType\":\"COIN\",\"underlyingSubType\":[\"PoW\"],\"settlePlan\":0,\"triggerProtect\":\"0.0500\",\"liquidationFee\":\"0.012500\",\"marketTakeBound\":\"0.05\",\"maxMoveOrderLimit\":10000,\"filters\":[{{\"filterType\":\"PRICE_FILTER\",\"maxPrice\":\"4529764\",\"minPrice\":\"{tick}\",\"tickSize\":\"{tick}\"}},{{\"filterType\":\"LOT_SIZE\",\"maxQty\":\"1000\",\"minQty\":\"0.001\",\"stepSize\":\"0.001\"}},{{\"filterType\":\"MARKET_LOT_SIZE\",\"maxQty\":\"120\",\"minQty\":\"0.001\",\"stepSize\":\"0.001\"}},{{\"filterType\":\"MAX_NUM_ORDERS\",\"limit\":200}},{{\"filterType\":\"MAX_NUM_ALGO_ORDERS\",\"limit\":10}}],\"orderTypes\":[\"LIMIT\",\"MARKET\",\"STOP\",\"STOP_MARKET\",\"TAKE_PROFIT\",\"TAKE_PROFIT_MARKET\",\"TRAILING_STOP_MARKET\"],\"timeInForce\":[\"GTC\",\"IOC\",\"FOK\",\"GTX\",\"GTD\"]}}"
    )
}

fn exchange_info(shared: &Shared, now: i64) -> String {
    let listed = shared.market.listed_since_ms();
    let mut symbols: Vec<String> = crate::market::INSTRUMENTS
        .iter()
        .map(|i| {
            symbol_json(
                i.symbol,
                i.base,
                "PERPETUAL",
                4_133_404_800_000,
                listed,
                "TRADING",
                i.price_decimals,
            )
        })
        .collect();
    // A quarterly delivery contract and a perpetual being settled: neither
    // is a market a collector should follow.
    symbols.push(symbol_json(
        "BTCUSDT_261225",
        "BTC",
        "CURRENT_QUARTER",
        1_798_185_600_000,
        listed,
        "TRADING",
        1,
    ));
    symbols.push(symbol_json(
        "XEMUSDT",
        "XEM",
        "PERPETUAL",
        4_133_404_800_000,
        listed,
        "SETTLING",
        4,
    ));
    format!(
        "{{\"timezone\":\"UTC\",\"serverTime\":{now},\"futuresType\":\"U_MARGINED\",\"rateLimits\":[{{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":2400}},{{\"rateLimitType\":\"ORDERS\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":1200}}],\"exchangeFilters\":[],\"assets\":[{{\"asset\":\"USDT\",\"marginAvailable\":true,\"autoAssetExchange\":\"-10000\"}},{{\"asset\":\"BNB\",\"marginAvailable\":false,\"autoAssetExchange\":null}}],\"symbols\":[{}]}}",
        symbols.join(",")
    )
}
