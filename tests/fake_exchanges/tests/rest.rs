//! REST self-tests: the documented shapes, paging directions and limits,
//! and the injected failures.

mod support;

use std::time::Duration;

use ohlcv_domain::Interval;
use ohlcv_fake_exchanges::{FakeExchange, FakeOptions, Venue};
use serde_json::Value;
use support::{get, now_ms};

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

#[tokio::test]
async fn binance_klines_page_oldest_first_and_match_the_market() {
    let fake = FakeExchange::start(Venue::Binance, FakeOptions::default());
    let base = fake.rest_url();
    let market = fake.market();
    let now = now_ms();
    let start = Interval::M1.align(now) - 10 * 60_000;
    let r = get(
        &base,
        &format!("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=5"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("1"));
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 12);
        let t = row[0].as_i64().unwrap();
        assert_eq!(t, start + i as i64 * 60_000);
        assert_eq!(row[6].as_i64().unwrap(), t + 59_999);
        assert!(row[8].is_u64());
        let c = market.candle("BTCUSDT", Interval::M1, t, now_ms()).unwrap();
        assert!(c.closed);
        assert_eq!(
            (s(&row[1]), s(&row[2]), s(&row[3]), s(&row[4]), s(&row[5])),
            (&*c.open, &*c.high, &*c.low, &*c.close, &*c.volume)
        );
        let (o, h, l, cl, v) = c.values();
        assert!(h >= o.max(cl) && l <= o.min(cl) && l > 0.0 && v > 0.0);
    }
    // Only endTime: the latest rows up to it; neither: the latest, with the
    // open candle last.
    let end = start + 3 * 60_000;
    let rows = get(
        &base,
        &format!("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&endTime={end}&limit=2"),
        None,
    )
    .await
    .json();
    let times: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![end - 60_000, end]);
    let r = get(
        &base,
        "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=100",
        None,
    )
    .await;
    assert_eq!(
        r.header("x-mbx-used-weight-1m")
            .map(|w| w.parse::<u64>().unwrap() >= 4),
        Some(true)
    );
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 100);
    let last = rows.last().unwrap()[0].as_i64().unwrap();
    assert!(last >= Interval::M1.align(now));
    // Limits and errors.
    let r = get(
        &base,
        "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1501",
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], -1130);
    let r = get(&base, "/fapi/v1/klines?symbol=FOOUSDT&interval=1m", None).await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(-1121)));
    assert_eq!(get(&base, "/fapi/v1/nothing", None).await.status, 404);
    // Instruments: perpetuals plus a quarterly and a settling one.
    let info = get(&base, "/fapi/v1/exchangeInfo", None).await.json();
    let symbols = info["symbols"].as_array().unwrap();
    assert!(symbols
        .iter()
        .any(|s| s["contractType"] == "CURRENT_QUARTER"));
    assert!(symbols.iter().any(|s| s["status"] == "SETTLING"));
    let perps: Vec<&str> = symbols
        .iter()
        .filter(|s| s["contractType"] == "PERPETUAL" && s["status"] == "TRADING")
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(perps, market.symbols());
    assert_eq!(fake.rest_requests().len(), 7);
}

#[tokio::test]
async fn fail_rest_answers_the_status_with_retry_after_then_recovers() {
    let fake = FakeExchange::start(Venue::Binance, FakeOptions::default());
    fake.fail_rest(429, Some(Duration::from_secs(7)), 2);
    for _ in 0..2 {
        let r = get(&fake.rest_url(), "/fapi/v1/exchangeInfo", None).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));
        assert_eq!(r.json()["code"], -1003);
    }
    assert_eq!(
        get(&fake.rest_url(), "/fapi/v1/exchangeInfo", None)
            .await
            .status,
        200
    );
    let statuses: Vec<u16> = fake.rest_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);

    let okx = FakeExchange::start(Venue::Okx, FakeOptions::default());
    okx.fail_rest(429, None, 1);
    let r = get(
        &okx.rest_url(),
        "/api/v5/market/candles?instId=BTC-USDT-SWAP",
        None,
    )
    .await;
    assert_eq!((r.status, r.header("retry-after")), (429, None));
    assert_eq!(r.json()["code"], "50011");
}

#[tokio::test]
async fn bybit_klines_newest_first_and_instruments_in_cursor_pages() {
    let fake = FakeExchange::start(Venue::Bybit, FakeOptions::default());
    let base = fake.rest_url();
    let now = now_ms();
    let end = Interval::M5.align(now) - 5 * 300_000;
    let start = end - 20 * 300_000;
    let r = get(&base, &format!("/v5/market/kline?category=linear&symbol=ETHUSDT&interval=5&start={start}&end={end}&limit=3"), None).await;
    assert!(
        r.header("x-bapi-limit-status").is_some()
            && r.header("x-bapi-limit-reset-timestamp").is_some()
    );
    let v = r.json();
    assert_eq!(
        (v["retCode"].as_i64(), v["result"]["category"].as_str()),
        (Some(0), Some("linear"))
    );
    let list = v["result"]["list"].as_array().unwrap();
    let times: Vec<i64> = list.iter().map(|r| s(&r[0]).parse().unwrap()).collect();
    assert_eq!(times, vec![end, end - 300_000, end - 600_000]);
    let c = fake
        .market()
        .candle("ETHUSDT", Interval::M5, end, now_ms())
        .unwrap();
    assert_eq!(s(&list[0][4]), c.close);
    assert_eq!(s(&list[0][5]), c.volume);
    let v = get(
        &base,
        "/v5/market/kline?category=linear&symbol=FOOUSDT&interval=1",
        None,
    )
    .await
    .json();
    assert_eq!(v["retCode"], 10001);

    let mut cursor = String::new();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let q = if cursor.is_empty() {
            String::new()
        } else {
            format!("&cursor={cursor}")
        };
        let v = get(
            &base,
            &format!("/v5/market/instruments-info?category=linear{q}"),
            None,
        )
        .await
        .json();
        let list = v["result"]["list"].as_array().unwrap();
        assert!(list.len() <= 2);
        all.extend(list.iter().cloned());
        pages += 1;
        cursor = s(&v["result"]["nextPageCursor"]).to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let perps: Vec<&str> = all
        .iter()
        .filter(|i| i["contractType"] == "LinearPerpetual" && i["status"] == "Trading")
        .map(|i| s(&i["symbol"]))
        .collect();
    assert_eq!(perps, fake.market().symbols());
    assert!(all.iter().any(|i| i["contractType"] == "LinearFutures"));
}

#[tokio::test]
async fn okx_candles_newest_first_with_contract_volumes_and_hong_kong_bars() {
    let fake = FakeExchange::start(Venue::Okx, FakeOptions::default());
    let base = fake.rest_url();
    let now = now_ms();
    let after = Interval::M1.align(now) - 10 * 60_000;
    let v = get(
        &base,
        &format!(
            "/api/v5/market/history-candles?instId=BTC-USDT-SWAP&bar=1m&after={after}&limit=4"
        ),
        None,
    )
    .await
    .json();
    assert_eq!(v["code"], "0");
    let rows = v["data"].as_array().unwrap();
    let times: Vec<i64> = rows.iter().map(|r| s(&r[0]).parse().unwrap()).collect();
    assert_eq!(
        times,
        (1..=4).map(|k| after - k * 60_000).collect::<Vec<_>>()
    );
    for r in rows {
        let vol: f64 = s(&r[5]).parse().unwrap();
        let vol_ccy: f64 = s(&r[6]).parse().unwrap();
        assert!((vol * 0.01 - vol_ccy).abs() < 1e-9, "{r}");
        assert_eq!(s(&r[8]), "1");
        let c = fake
            .market()
            .candle("BTCUSDT", Interval::M1, s(&r[0]).parse().unwrap(), now_ms())
            .unwrap();
        assert_eq!(s(&r[6]), c.volume);
    }
    // `before` only returns newer rows; the open candle has confirm "0".
    let before = Interval::M1.align(now) - 3 * 60_000;
    let v = get(
        &base,
        &format!("/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=1m&before={before}"),
        None,
    )
    .await
    .json();
    let rows = v["data"].as_array().unwrap();
    assert!(
        rows.len() >= 3
            && rows
                .iter()
                .all(|r| s(&r[0]).parse::<i64>().unwrap() > before)
    );
    assert_eq!(s(&rows[0][8]), "0");
    // The recent endpoint only holds 1440 rows; history has older ones.
    let old = Interval::M1.align(now) - 2000 * 60_000;
    let v = get(
        &base,
        &format!("/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=1m&after={old}"),
        None,
    )
    .await
    .json();
    assert!(v["data"].as_array().unwrap().is_empty());
    let v = get(
        &base,
        &format!(
            "/api/v5/market/history-candles?instId=BTC-USDT-SWAP&bar=1m&after={old}&limit=300"
        ),
        None,
    )
    .await
    .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 300);
    // Hong Kong days open at 16:00 UTC, UTC days at 00:00.
    let v = get(
        &base,
        "/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=1D&limit=1",
        None,
    )
    .await
    .json();
    assert_eq!(
        s(&v["data"][0][0]).parse::<i64>().unwrap() % 86_400_000,
        16 * 3_600_000
    );
    let v = get(
        &base,
        "/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=1Dutc&limit=1",
        None,
    )
    .await
    .json();
    assert_eq!(s(&v["data"][0][0]).parse::<i64>().unwrap() % 86_400_000, 0);
    let v = get(&base, "/api/v5/market/candles?instId=FOO-USDT-SWAP", None)
        .await
        .json();
    assert_eq!(
        (v["code"].as_str(), v["msg"].as_str()),
        (Some("51001"), Some("Instrument ID does not exist"))
    );
    fake.refuse_symbol("ETHUSDT");
    let v = get(&base, "/api/v5/market/candles?instId=ETH-USDT-SWAP", None)
        .await
        .json();
    assert_eq!(v["code"], "51001");
    let v = get(&base, "/api/v5/public/instruments?instType=SWAP", None)
        .await
        .json();
    let data = v["data"].as_array().unwrap();
    assert!(data.iter().any(|i| i["ctType"] == "inverse"));
    assert!(data.iter().any(|i| i["state"] != "live"));
    assert_eq!(
        data.iter()
            .find(|i| i["instId"] == "ETH-USDT-SWAP")
            .unwrap()["ctVal"],
        "0.1"
    );
}

#[tokio::test]
async fn missing_candles_are_holes_in_rest() {
    let now = now_ms();
    let from = Interval::M1.align(now) - 10 * 60_000;
    let options = FakeOptions {
        missing: vec![("BTCUSDT".into(), Interval::M1, from, from + 60_000)],
        ..FakeOptions::default()
    };
    let fake = FakeExchange::start(Venue::Binance, options);
    let rows = get(
        &fake.rest_url(),
        &format!(
            "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={}&limit=4",
            from - 60_000
        ),
        None,
    )
    .await
    .json();
    let times: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect();
    assert_eq!(
        times,
        vec![
            from - 60_000,
            from + 120_000,
            from + 180_000,
            from + 240_000
        ]
    );
    let closed =
        fake.market()
            .closed_candles("BTCUSDT", Interval::M1, from - 60_000, from + 120_000);
    assert_eq!(
        closed.iter().map(|c| c.open_time).collect::<Vec<_>>(),
        vec![from - 60_000, from + 120_000]
    );
    assert!(fake
        .market()
        .candle("BTCUSDT", Interval::M1, from, now)
        .is_none());
}
