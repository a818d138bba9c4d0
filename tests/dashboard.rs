//! The dashboard in a real browser: the system's headless Chromium, driven
//! over the DevTools protocol (chromiumoxide), opens `/` of the real binary
//! running on the simulated exchange, and the test reads what a person
//! would see: candles drawn on the chart's canvas and moving with live
//! updates, the worker table filling and refreshing, the other panels, and
//! the exchange controls changing the collector (checked over HTTP).
//!
//! Chromium comes from Debian (`apt-get install chromium`, done by
//! `.ci/run`); the test fails, saying so, where it is missing. With
//! `UPDATE_SCREENSHOT=1` it saves its screenshot as `docs/dashboard.png`
//! (the one the README shows), otherwise in a temp dir.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use common::{simulated_config, Collector, PATIENCE};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Polls the async `check` until it returns `Some`, or panics with `what`
/// after `timeout`: the async twin of `common::wait_for`, for conditions
/// read from the browser.
async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Evaluates `expression` in the page (awaiting a promise) and decodes its
/// JSON value.
async fn eval<T: DeserializeOwned>(page: &Page, expression: &str) -> T {
    page.evaluate(expression)
        .await
        .unwrap_or_else(|error| panic!("evaluating {expression}: {error}"))
        .into_value()
        .unwrap_or_else(|error| panic!("decoding {expression}: {error}"))
}

/// What the chart holds, from the data attributes the dashboard keeps.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct ChartState {
    bars: u64,
    live: u64,
    last_time: Option<i64>,
    last_close: Option<f64>,
}

const CHART_STATE: &str = r#"(() => {
  const d = document.querySelector('#chart').dataset;
  return { bars: Number(d.bars), live: Number(d.liveUpdates),
           last_time: d.lastTime ? Number(d.lastTime) : null,
           last_close: d.lastClose ? Number(d.lastClose) : null };
})()"#;

/// Pixels of the candles' up and down colours on the chart's canvases:
/// proof that candles are drawn, not only held.
const CANDLE_PIXELS: &str = r#"(() => {
  let up = 0, down = 0;
  for (const canvas of document.querySelectorAll('#chart canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i] === 0x26 && pixels[i + 1] === 0xa6 && pixels[i + 2] === 0x9a) up++;
      if (pixels[i] === 0xef && pixels[i + 1] === 0x53 && pixels[i + 2] === 0x50) down++;
    }
  }
  return { up, down };
})()"#;

/// The simulated exchange's toggle: checked, still waiting for its
/// answer, and what the dashboard says about it. The panel is drawn anew
/// after each change, so this is read from the page each time.
const TOGGLE_STATE: &str = r#"(() => {
  const toggle = document.querySelector('input[data-toggle="simulated"]');
  const result = document.querySelector('[data-result="simulated"]');
  if (!toggle || !result) return {};
  return { checked: toggle.checked, busy: toggle.disabled, result: result.textContent };
})()"#;

/// One worker row of the table.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct WorkerRow {
    state: String,
    updates: Option<u64>,
    timestamp: Option<i64>,
    text: String,
}

fn worker_row(name: &str) -> String {
    format!(
        r#"(() => {{
  const tr = document.querySelector('#workers tr[data-worker="{name}"]');
  if (!tr) return null;
  return {{ state: tr.dataset.state,
           updates: tr.dataset.updates ? Number(tr.dataset.updates) : null,
           timestamp: tr.dataset.timestamp ? Number(tr.dataset.timestamp) : null,
           text: tr.textContent }};
}})()"#
    )
}

/// Where the screenshot goes: `docs/dashboard.png` when asked to update
/// it, a temp dir otherwise (so a plain test run leaves the tree alone).
fn screenshot_path(temp: &tempfile::TempDir) -> PathBuf {
    if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        docs.join("dashboard.png")
    } else {
        temp.path().join("dashboard.png")
    }
}

/// The simulated exchange in `GET /exchanges`.
fn simulated_exchange(collector: &Collector) -> Value {
    let (status, body) = collector.get("/exchanges");
    assert_eq!(status, 200, "{body}");
    body["simulated"].clone()
}

/// Whether `/status` lists a running simulated datasource.
fn simulated_running(collector: &Collector) -> bool {
    collector
        .child_status("simulated")
        .is_some_and(|child| child["state"] == "running")
}

/// Bound of the whole browser test: every wait in it has its own timeout,
/// but a DevTools call whose answer never comes (a navigation Chromium
/// never reports done) would otherwise hang the run; it takes 10 to 20 s.
const WHOLE_TEST: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_candles_and_workers_and_toggles_an_exchange() {
    tokio::time::timeout(WHOLE_TEST, dashboard_in_chromium())
        .await
        .expect("the browser test finished within its bound");
}

/// The test itself, run under [`WHOLE_TEST`].
async fn dashboard_in_chromium() {
    // 50 updates/s per series: the open candle changes many times a second.
    let collector = Collector::start(&simulated_config(|c| {
        c["exchanges"]["simulated"]["simulation"]["updates_per_second"] = json!(50);
        // More history than one answer carries (1000 items): the chart's
        // request is answered in chunks, which client.js puts together.
        c["bootstrap_load"] = json!(1200);
    }));
    let url = format!("http://{}/", collector.addr);

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1400, 1300)
        .viewport(None)
        .args(["--disable-gpu", "--disable-dev-shm-usage"])
        .launch_timeout(PATIENCE)
        .build()
        .unwrap_or_else(|error| {
            panic!("no Chromium found ({error}); install it with `apt-get install chromium`")
        });
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .expect("Chromium starts (installed with `apt-get install chromium`?)");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.unwrap();
    // Every violation of the page's Content-Security-Policy is recorded:
    // a blocked script, style or WebSocket would break the dashboard.
    page.evaluate_on_new_document(
        "window.__violations = []; document.addEventListener('securitypolicyviolation', \
         (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));",
    )
    .await
    .unwrap();
    page.goto(url.as_str()).await.unwrap();

    // The history arrives and is drawn.
    let loaded = until("the chart to hold the history", PATIENCE, || async {
        let state: ChartState = eval(&page, CHART_STATE).await;
        (state.bars >= 1200 && state.last_time.is_some()).then_some(state)
    })
    .await;
    let api: String = eval(&page, "document.body.dataset.api").await;
    assert_eq!(api, "ws", "the dashboard speaks the WebSocket protocol");
    let pixels: Value = until("candles drawn on the canvas", PATIENCE, || async {
        let pixels: Value = eval(&page, CANDLE_PIXELS).await;
        (pixels["up"].as_u64()? > 200 && pixels["down"].as_u64()? > 200).then_some(pixels)
    })
    .await;
    println!("chart: {loaded:?}, candle pixels {pixels}");
    let newest = collector.candles("simulated", "BTCUSDT", "1m", "?limit=1");
    let stored_newest = newest[0]["timestamp"].as_i64().unwrap();
    assert!(
        (stored_newest - loaded.last_time.unwrap()).abs() <= 60_000,
        "the chart's last bar ({:?}) is the newest candle ({stored_newest})",
        loaded.last_time
    );

    // Live updates move the last bar.
    let moved = until("live updates on the chart", PATIENCE, || async {
        let state: ChartState = eval(&page, CHART_STATE).await;
        (state.live >= loaded.live + 5
            && (state.last_time, state.last_close) != (loaded.last_time, loaded.last_close))
            .then_some(state)
    })
    .await;
    assert!(moved.bars >= loaded.bars, "{loaded:?} → {moved:?}");

    // The worker table: every worker, and the datasource's figures
    // refreshed by the next worker_metrics.
    let first = until(
        "the simulated datasource in the worker table",
        PATIENCE,
        || async {
            let row: Option<WorkerRow> = eval(&page, &worker_row("simulated")).await;
            row.filter(|r| r.state == "running" && r.updates.is_some() && r.timestamp.is_some())
        },
    )
    .await;
    for name in ["storage", "monitor", "gateway"] {
        let row: Option<WorkerRow> = eval(&page, &worker_row(name)).await;
        let row = row.unwrap_or_else(|| panic!("no {name} row"));
        assert_eq!(row.state, "running", "{name}: {row:?}");
    }
    let later = until("the worker table to update", PATIENCE, || async {
        let row: Option<WorkerRow> = eval(&page, &worker_row("simulated")).await;
        row.filter(|r| r.timestamp > first.timestamp && r.updates > first.updates)
    })
    .await;
    assert!(later.text.contains("streaming"), "{later:?}");

    // The other panels have what the collector sent.
    until("system info", PATIENCE, || async {
        let entries: u64 = eval(&page, "document.querySelectorAll('#system dt').length").await;
        (entries >= 5).then_some(())
    })
    .await;
    until("log lines", PATIENCE, || async {
        let lines: u64 = eval(&page, "document.querySelectorAll('#logs li').length").await;
        (lines > 0).then_some(())
    })
    .await;
    until("the series in the completeness table", PATIENCE, || async {
        let row: Option<String> = eval(
            &page,
            "document.querySelector('#completeness tr[data-series=\"simulated/BTCUSDT/1m\"]')?.textContent ?? null",
        )
        .await;
        row.filter(|text| text.contains('/'))
    })
    .await;

    // The toggle stops the datasource, and starts it again.
    page.find_element(r#"input[data-toggle="simulated"]"#)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    common::wait_for("the simulated exchange to be disabled", PATIENCE, || {
        (simulated_exchange(&collector)["enabled"] == false && !simulated_running(&collector))
            .then_some(())
    });
    until("the dashboard to show it disabled", PATIENCE, || async {
        let control: Value = eval(&page, TOGGLE_STATE).await;
        (control == json!({"checked": false, "busy": false, "result": "disabled"})).then_some(())
    })
    .await;
    page.find_element(r#"input[data-toggle="simulated"]"#)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    common::wait_for("the simulated exchange to run again", PATIENCE, || {
        (simulated_exchange(&collector)["enabled"] == true && simulated_running(&collector))
            .then_some(())
    });
    until("the dashboard to show it enabled", PATIENCE, || async {
        let control: Value = eval(&page, TOGGLE_STATE).await;
        (control == json!({"checked": true, "busy": false, "result": "enabled"})).then_some(())
    })
    .await;

    // Editing the symbols saves them.
    page.evaluate(
        r#"document.querySelector('input[data-symbols="simulated"]').value = 'BTCUSDT, ETHUSDT, SOLUSDT'"#,
    )
    .await
    .unwrap();
    page.find_element(r#"button[data-save-symbols="simulated"]"#)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    common::wait_for("the new symbols in the config", PATIENCE, || {
        (simulated_exchange(&collector)["symbols"] == json!(["BTCUSDT", "ETHUSDT", "SOLUSDT"]))
            .then_some(())
    });
    until("SOLUSDT among the chart's symbols", PATIENCE, || async {
        let options: Vec<String> = eval(
            &page,
            "[...document.querySelectorAll('#series-symbol option')].map(o => o.value)",
        )
        .await;
        options.iter().any(|s| s == "SOLUSDT").then_some(())
    })
    .await;

    // `/client.js` on its own, as another page would import it, over
    // MessagePack: a request, a subscription, and the subscription again
    // after the connection is lost (ETHUSDT only, where a client without
    // one gets every series, 50 updates a second each).
    let via_msgpack: Value = eval(
        &page,
        r#"(async () => {
  const { CollectorClient } = await import('/client.js');
  const client = new CollectorClient({ format: 'msgpack' });
  const status = await client.request('status');
  let seen = [];
  let wake = () => {};
  const take = (c) => { seen.push(c.symbol); wake(); };
  client.on('candle', take);
  client.on('candles', (batch) => batch.forEach(take));
  // Waits for n ETHUSDT updates in a row, and tells how many others came
  // first: updates queued for this client before its subscription took
  // hold may still arrive, a few at most, where every series would keep
  // coming without one.
  const updates = (n) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${n} ETHUSDT in a row: ${seen}`)), 20000);
    wake = () => {
      const streak = seen.slice(-n);
      if (streak.length === n && streak.every((s) => s === 'ETHUSDT')) {
        clearTimeout(timer);
        resolve({ others: seen.filter((s) => s !== 'ETHUSDT').length, streak: seen.splice(0).length });
      }
    };
    wake();
  });
  const topics = await client.subscribe(['candles:simulated:ETHUSDT:1m']);
  seen = [];
  const first = await updates(20);
  const reopened = new Promise((resolve) => client.on('open', (e) => e.reconnect && resolve()));
  client.socket.close();
  await reopened;
  // Answered after the subscribe sent on reopening, so after it took hold.
  await client.request('status');
  seen = [];
  const again = await updates(20);
  client.close();
  return { children: status.children.length, topics, first, again, format: client.format };
})()"#,
    )
    .await;
    assert!(
        via_msgpack["children"].as_u64().unwrap() >= 4,
        "{via_msgpack}"
    );
    assert_eq!(
        via_msgpack["topics"],
        json!(["candles:simulated:ETHUSDT:1m"]),
        "{via_msgpack}"
    );
    for key in ["first", "again"] {
        let others = via_msgpack[key]["others"].as_u64().unwrap();
        assert!(others <= 10, "{key}: {via_msgpack}");
    }

    // The whole dashboard over MessagePack, in a second tab.
    let binary = browser
        .new_page(format!("{url}?format=msgpack").as_str())
        .await
        .unwrap();
    until(
        "the MessagePack dashboard's chart to load and move",
        PATIENCE,
        || async {
            let state: ChartState = eval(&binary, CHART_STATE).await;
            (state.bars >= 1200 && state.live > 0).then_some(())
        },
    )
    .await;
    let api: String = eval(&binary, "document.body.dataset.api").await;
    assert_eq!(api, "ws");
    let codec_loaded: bool = eval(
        &binary,
        "performance.getEntriesByType('resource').some(e => e.name.endsWith('/assets/msgpack.min.js'))",
    )
    .await;
    assert!(codec_loaded, "the MessagePack codec was loaded");
    binary.close().await.unwrap();

    // The page after all that: the reload shows in its progress bar, and
    // the datasource's next metrics say it streams again.
    until("a reload in the progress panel", PATIENCE, || async {
        let status: Option<String> = eval(
            &page,
            "document.querySelector('#progress li[data-exchange=\"simulated\"]')?.dataset.status ?? null",
        )
        .await;
        status.filter(|s| s == "streaming")
    })
    .await;
    let reloaded: i64 = eval(&page, "Date.now()").await;
    until(
        "the datasource streaming again in the table",
        PATIENCE,
        || async {
            let row: Option<WorkerRow> = eval(&page, &worker_row("simulated")).await;
            row.filter(|r| r.timestamp > Some(reloaded) && r.text.contains("streaming"))
        },
    )
    .await;
    let screenshot = tempfile::tempdir().unwrap();
    let path = screenshot_path(&screenshot);
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000, "{path:?}");

    // With an `api_token` set while the page is open, the controls are
    // refused until the token is entered on the page.
    const TOKEN: &str = "dashboard-test-token-7f3a9c";
    let (_, mut running) = collector.get("/config");
    running["api_token"] = json!(TOKEN);
    let (status, body) = collector.post("/config", &running);
    assert_eq!(status, 200, "{body}");
    until("the exchange controls at rest", PATIENCE, || async {
        let control: Value = eval(&page, TOGGLE_STATE).await;
        (control["checked"] == true && control["busy"] == false).then_some(())
    })
    .await;
    // Without the token the collector refuses, and the control says so
    // and shows the exchange as it still is.
    let toggle = r#"input[data-toggle="simulated"]"#;
    page.find_element(toggle)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused: Value = until("the refusal on the page", PATIENCE, || async {
        let control: Value = eval(&page, TOGGLE_STATE).await;
        (control["busy"] == false && control["result"].as_str()?.starts_with("unauthorized"))
            .then_some(control)
    })
    .await;
    assert_eq!(refused["checked"], true, "{refused}");
    assert_eq!(simulated_exchange(&collector)["enabled"], true);

    // With the token entered, the same click stops the exchange.
    page.find_element("#token-panel summary")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.find_element("#token")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(TOKEN)
        .await
        .unwrap();
    page.find_element("#token-save")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the connection to open again", PATIENCE, || async {
        let state: String =
            eval(&page, "document.querySelector('#connection').dataset.state").await;
        (state == "open").then_some(())
    })
    .await;
    page.find_element(toggle)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    common::wait_for("the simulated exchange to be disabled", PATIENCE, || {
        (simulated_exchange(&collector)["enabled"] == false).then_some(())
    });
    until("the dashboard to show it disabled", PATIENCE, || async {
        let control: Value = eval(&page, TOGGLE_STATE).await;
        (control == json!({"checked": false, "busy": false, "result": "disabled"})).then_some(())
    })
    .await;
    let violations: Vec<String> = eval(&page, "window.__violations").await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
}
