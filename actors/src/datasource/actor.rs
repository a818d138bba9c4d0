//! The datasource actor: drives one exchange adapter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use ohlcv_domain::time::now_ms;
use ohlcv_domain::{Candle, ErrorChain, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_exchanges::{ExchangeError, LiveEvent, MarketSource};

use super::series::SeriesState;
use crate::gateway::broadcast::Broadcaster;
use crate::gateway::protocol::{ReloadProgress, ServerMessage};
use crate::lifecycle::{ChildId, CpuMeter, Heartbeat, HeartbeatSink, LifeGuard};
use crate::metrics::{CommonMetrics, DatasourceMetrics, WorkerMetrics};
use crate::storage::{CandleSink, StorageHandle};
use crate::HEARTBEAT_INTERVAL;

/// First reconnect delay; doubles up to [`MAX_RECONNECT_DELAY`].
const FIRST_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest reconnect delay: an exchange that is down is retried every
/// minute, which no exchange's connection limits object to.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);
/// How often the silence watchdog looks at the stream.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(1);
/// How often updates waiting for room in the storage channel are retried.
const SINK_RETRY_PERIOD: Duration = Duration::from_millis(100);
/// Candles asked of an exchange in one history request: bounds the memory
/// a bootstrap of millions of candles holds at once, and lets other work of
/// the datasource run between chunks. (Adapters page further themselves,
/// 1000 or 1500 rows per HTTP call.)
const HISTORY_CHUNK: i64 = 10_000;
/// How long after an interval boundary the candle that closed there may
/// take to arrive on the live stream before it is fetched over REST: the
/// exchanges push a close within a second or two, so this is only reached
/// when the stream is quiet, stalled or reconnecting.
const CLOSE_GRACE_MS: i64 = 10_000;
/// Shortest time between two log lines about bad frames of one exchange;
/// the ones in between are counted and reported with the next line.
const BAD_FRAME_LOG_PERIOD: Duration = Duration::from_secs(10);
/// How often every series is checked for holes between its first and
/// last stored candle (also once after each history sync).
const INTEGRITY_PERIOD: Duration = Duration::from_secs(600);
/// Holes asked of storage per series and check.
const MAX_HOLES_PER_CHECK: usize = 50;
/// Candles fetched per series and check: a database with large holes is
/// mended over several checks rather than in one burst of requests.
const MAX_HOLE_CANDLES_PER_CHECK: i64 = 2 * HISTORY_CHUNK;
/// How long a stopping datasource waits for room in the storage channel
/// for its last updates; the storage thread drains thousands a millisecond.
const STOP_DRAIN_TIMEOUT: Duration = Duration::from_millis(1_500);

/// What a datasource collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasourceSettings {
    /// Symbols to collect.
    pub symbols: Vec<Symbol>,
    /// Intervals to collect for every symbol.
    pub intervals: Vec<Interval>,
    /// Candles of history loaded for a series with nothing stored.
    pub bootstrap_load: u64,
}

/// What a datasource needs from the outside.
#[derive(Clone)]
pub struct DatasourceDeps {
    /// The exchange adapter.
    pub source: Arc<dyn MarketSource>,
    /// Where candles are stored.
    pub storage: StorageHandle,
    /// Where live candles and progress go to UI clients.
    pub broadcaster: Broadcaster,
    /// Where heartbeats go.
    pub heartbeats: HeartbeatSink,
    /// Set by the supervisor when this incarnation was replaced (after it
    /// stalled): a thread that wakes up late must not store stale updates.
    pub retired: Arc<AtomicBool>,
}

/// Applies new symbols or intervals: the datasource reconnects with the
/// new subscriptions and syncs history, reporting `reload_progress`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReloadSettings(pub DatasourceSettings);

/// Stops the datasource after handing its last updates to storage; the
/// answer comes once they are handed over.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopDatasource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Syncing,
    Streaming,
    WaitingToReconnect,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Syncing => "syncing",
            Phase::Streaming => "streaming",
            Phase::WaitingToReconnect => "reconnecting",
        }
    }
}

/// Most stream items handled as one message: the items a live stream has
/// ready at once (several per WebSocket frame, or many frames read in one
/// go under a flood) are handled together, with one clock read and one
/// send to storage for all of them. No item waits for others: a batch is
/// whatever was ready when the stream was polled.
const STREAM_BATCH: usize = 256;

/// Items of a live stream that were ready together, tagged with the
/// connection they came from.
#[derive(Message)]
#[rtype(result = "()")]
enum StreamEvent {
    Updates(u64, Vec<Result<LiveEvent, ExchangeError>>),
    Ended(u64),
}

/// The datasource's per-series state, keyed with a fast hash: looked up
/// for every live update.
type SeriesMap = HashMap<SeriesKey, SeriesState, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Counters {
    updates: u64,
    candles_closed: u64,
    history_candles: u64,
    reconnects: u64,
    gap_fills: u64,
    rejected: u64,
    last_error: Option<String>,
}

/// The datasource of one exchange. Runs on its own arbiter.
pub struct Datasource {
    exchange: ExchangeId,
    deps: DatasourceDeps,
    settings: DatasourceSettings,
    sink: CandleSink,
    /// Bumped at every (re)connect: results of an older connection are
    /// ignored when they arrive late.
    epoch: u64,
    stream: Option<SpawnHandle>,
    phase: Phase,
    series: SeriesMap,
    last_message: Instant,
    reconnect_delay: Option<Duration>,
    counters: Counters,
    cpu: CpuMeter,
    started_ms: i64,
    guard: LifeGuard,
    bad_frames: LogThrottle,
    /// An integrity check is under way (one at a time).
    checking: bool,
    /// History syncs of this connection still running: series are synced
    /// by `history_lanes` chains side by side (the adapter's
    /// [`MarketSource::history_concurrency`]), chain `j` taking series
    /// `j`, `j + lanes`, …; the last chain to finish starts streaming.
    syncs_running: usize,
    history_lanes: usize,
}

/// Logs a repeated warning at most once per period, with how many were
/// left out, so a stream of garbage cannot flood the log.
#[derive(Debug, Default)]
struct LogThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// Whether to log now; if so, how many were suppressed since the last.
    fn admit(&mut self, now: Instant, period: Duration) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < period) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Datasource {
    /// A datasource for `deps.source`'s exchange; it connects when started.
    pub fn new(deps: DatasourceDeps, settings: DatasourceSettings, guard: LifeGuard) -> Self {
        Datasource {
            exchange: deps.source.id(),
            sink: CandleSink::new(deps.storage.clone()),
            deps,
            settings,
            epoch: 0,
            stream: None,
            phase: Phase::Connecting,
            series: SeriesMap::default(),
            last_message: Instant::now(),
            reconnect_delay: None,
            counters: Counters::default(),
            cpu: CpuMeter::default(),
            started_ms: now_ms(),
            guard,
            bad_frames: LogThrottle::default(),
            checking: false,
            syncs_running: 0,
            history_lanes: 1,
        }
    }

    fn subscriptions(&self) -> Vec<SeriesKey> {
        self.settings
            .symbols
            .iter()
            .flat_map(|symbol| {
                self.settings
                    .intervals
                    .iter()
                    .map(|interval| SeriesKey::new(self.exchange, symbol.clone(), *interval))
            })
            .collect()
    }

    fn retired(&self) -> bool {
        self.deps.retired.load(Ordering::Acquire)
    }

    fn progress(&self, status: &str, message: String, progress: u8) {
        self.deps
            .broadcaster
            .publish(&ServerMessage::ReloadProgress(ReloadProgress {
                exchange: self.exchange,
                status: status.into(),
                message,
                progress,
            }));
    }

    /// Opens a new live stream (closing the old one), then syncs history.
    ///
    /// Where each series' history sync starts is read from storage before
    /// the stream opens, so that the new stream's own updates cannot hide
    /// what was missed while disconnected.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.epoch += 1;
        let epoch = self.epoch;
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        let subscriptions = self.subscriptions();
        self.series.retain(|key, _| subscriptions.contains(key));
        for key in &subscriptions {
            self.series.entry(key.clone()).or_default().reset_live();
        }
        self.phase = Phase::Connecting;
        self.progress(
            "connecting",
            format!("Connecting to {}...", self.exchange),
            0,
        );
        let source = self.deps.source.clone();
        let storage = self.deps.storage.clone();
        let fut = async move {
            let mut newest_stored = Vec::with_capacity(subscriptions.len());
            for key in &subscriptions {
                let newest = storage
                    .last_open_time(key.clone())
                    .await
                    .map_err(|e| format!("storage: {}", ErrorChain(&e)))?;
                newest_stored.push((key.clone(), newest));
            }
            let stream = source
                .stream(&subscriptions)
                .await
                .map_err(|e| format!("connect failed: {e}"))?;
            Ok::<_, String>((newest_stored, stream))
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            if act.epoch != epoch {
                return;
            }
            match result {
                Ok((newest_stored, stream)) => {
                    act.last_message = Instant::now();
                    let tagged = stream
                        .ready_chunks(STREAM_BATCH)
                        .map(move |items| StreamEvent::Updates(epoch, items))
                        .chain(futures_util::stream::once(async move {
                            StreamEvent::Ended(epoch)
                        }));
                    act.stream = Some(ctx.add_stream(tagged));
                    act.phase = Phase::Syncing;
                    let lanes = act
                        .deps
                        .source
                        .history_concurrency()
                        .clamp(1, newest_stored.len().max(1));
                    act.history_lanes = lanes;
                    act.syncs_running = lanes;
                    for lane in 0..lanes {
                        act.sync_next(ctx, newest_stored.clone(), lane);
                    }
                }
                Err(reason) => act.schedule_reconnect(ctx, reason),
            }
        }));
    }

    /// Syncs the history of series number `index` (from the newest stored
    /// candle, or a bootstrap when none is), then the next of its chain
    /// (`index + history_lanes`); once every chain is done, streams.
    fn sync_next(
        &mut self,
        ctx: &mut Context<Self>,
        plan: Vec<(SeriesKey, Option<i64>)>,
        index: usize,
    ) {
        let total = plan.len();
        let Some((key, newest_stored)) = plan.get(index).cloned() else {
            self.syncs_running = self.syncs_running.saturating_sub(1);
            if self.syncs_running > 0 {
                return;
            }
            self.phase = Phase::Streaming;
            self.progress(
                "streaming",
                format!("Streaming {total} series from {}", self.exchange),
                100,
            );
            tracing::info!(exchange = %self.exchange, series = total, success = true, "datasource streaming");
            self.check_integrity(ctx);
            return;
        };
        self.progress(
            "backfilling",
            format!(
                "Checking {} {}... ({}/{total})",
                key.symbol,
                key.interval,
                index + 1
            ),
            percent(index, total),
        );
        let now = now_ms();
        let step = key.interval.duration_ms();
        let from = match newest_stored {
            // Re-read the newest stored candle: it may have been open.
            Some(t) => Some(t),
            None if self.settings.bootstrap_load == 0 => None,
            None => {
                Some(key.interval.align(now) - (self.settings.bootstrap_load as i64 - 1) * step)
            }
        };
        let Some(from) = from else {
            self.start_gap_detection(&key, now);
            let next = index + self.history_lanes;
            return self.sync_next(ctx, plan, next);
        };
        if let Some(state) = self.series.get_mut(&key) {
            // Everything before the first candle fetched is already stored.
            state.final_through = state.final_through.max(Some(from - step));
        }
        self.fetch_history(
            ctx,
            key.clone(),
            from,
            now,
            move |act, ctx, result| match result {
                Ok(()) => {
                    let next = index + act.history_lanes;
                    act.sync_next(ctx, plan, next)
                }
                Err(error) if error.is_retryable() => {
                    // The live stream keeps flowing; the series' missing
                    // range is fetched again on its own backoff.
                    act.counters.last_error = Some(error.to_string());
                    tracing::warn!(series = %key, %error, "history sync failed; retrying later");
                    if let Some(state) = act.series.get_mut(&key) {
                        state.back_off(Instant::now(), fastrand::f64());
                    }
                    act.progress(
                        "error",
                        format!("{key}: {error}; retrying"),
                        percent(index + 1, total),
                    );
                    let next = index + act.history_lanes;
                    act.sync_next(ctx, plan, next);
                }
                Err(error) => {
                    act.counters.last_error = Some(format!("{key}: {error}"));
                    if let Some(state) = act.series.get_mut(&key) {
                        state.refused = Some(error.to_string());
                    }
                    tracing::error!(series = %key, %error, "history refused; series skipped");
                    act.progress(
                        "error",
                        format!("{key}: {error}"),
                        percent(index + 1, total),
                    );
                    act.start_gap_detection(&key, now);
                    let next = index + act.history_lanes;
                    act.sync_next(ctx, plan, next);
                }
            },
        );
    }

    /// Fetches `from..=to` of `key` over REST in chunks of
    /// [`HISTORY_CHUNK`] candles, storing what the live stream does not own
    /// after each chunk, then calls `done` — unless a reconnect made the
    /// request stale meanwhile. One request per series at a time.
    fn fetch_history(
        &mut self,
        ctx: &mut Context<Self>,
        key: SeriesKey,
        from: i64,
        to: i64,
        done: impl FnOnce(&mut Self, &mut Context<Self>, Result<(), ExchangeError>) + 'static,
    ) {
        let epoch = self.epoch;
        if let Some(state) = self.series.get_mut(&key) {
            state.fetching = true;
        }
        let step = key.interval.duration_ms();
        let Some(chunk_end) = history_chunk_end(from, to, step) else {
            if let Some(state) = self.series.get_mut(&key) {
                state.fetching = false;
            }
            done(self, ctx, Ok(()));
            return;
        };
        let source = self.deps.source.clone();
        let fetch_key = key.clone();
        let fut = async move {
            source
                .backfill(&fetch_key.symbol, fetch_key.interval, from, chunk_end)
                .await
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            if act.epoch != epoch {
                return;
            }
            if let Some(state) = act.series.get_mut(&key) {
                state.fetching = false;
            }
            match result {
                Ok(candles) => {
                    act.store_history(&key, candles);
                    let next = chunk_end.saturating_add(step);
                    if history_chunk_end(next, to, step).is_some() {
                        act.fetch_history(ctx, key, next, to, done);
                    } else {
                        done(act, ctx, Ok(()));
                    }
                }
                Err(error) => done(act, ctx, Err(error)),
            }
        }));
    }

    /// For a series without history: gaps are counted from now on.
    fn start_gap_detection(&mut self, key: &SeriesKey, now: i64) {
        if let Some(state) = self.series.get_mut(key) {
            let step = key.interval.duration_ms();
            state.final_through = state
                .final_through
                .max(Some(key.interval.align(now) - step));
        }
    }

    /// Fetches a range whose final candles the live stream did not bring
    /// (a missed close, a reconnect, a quiet or stalled stream). A failure
    /// never touches the live stream: the series waits out its backoff and
    /// the range is asked for again; a refusal stops asking.
    fn fill_gap(&mut self, ctx: &mut Context<Self>, key: SeriesKey, from: i64, to: i64) {
        self.counters.gap_fills += 1;
        tracing::info!(series = %key, from, to, "filling a gap in the live stream");
        self.fetch_history(ctx, key.clone(), from, to, move |act, _, result| {
            let Some(state) = act.series.get_mut(&key) else {
                return;
            };
            match result {
                // The newest candle asked for may not be final at the
                // exchange yet: ask again after a wait, not at once.
                Ok(()) if state.final_through.is_some_and(|t| t >= to) => state.succeeded(),
                Ok(()) => state.back_off(Instant::now(), fastrand::f64()),
                Err(error) if error.is_retryable() => {
                    state.back_off(Instant::now(), fastrand::f64());
                    tracing::warn!(series = %key, %error, retry_in_ms = state
                        .retry_at
                        .map_or(0, |t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                        "gap fill failed; retrying later");
                    act.counters.last_error = Some(format!("gap fill of {key}: {error}"));
                }
                Err(error) => {
                    state.refused = Some(error.to_string());
                    tracing::error!(series = %key, %error, "gap fill refused; series no longer fetched");
                    act.counters.last_error = Some(format!("gap fill of {key}: {error}"));
                    act.progress("error", format!("{key}: {error}"), 100);
                }
            }
        });
    }

    /// Checks every series for holes between its first and last stored
    /// candle and fills them over REST, one series after the other. A range
    /// the exchange answers without candles is its own hole: it is recorded
    /// so it is not fetched again.
    fn check_integrity(&mut self, ctx: &mut Context<Self>) {
        if self.checking || self.retired() || self.phase != Phase::Streaming {
            return;
        }
        self.checking = true;
        let keys: Vec<SeriesKey> = self.series.keys().cloned().collect();
        self.check_series(ctx, keys, 0);
    }

    fn check_series(&mut self, ctx: &mut Context<Self>, keys: Vec<SeriesKey>, index: usize) {
        let Some(key) = keys.get(index).cloned() else {
            self.checking = false;
            return;
        };
        let storage = self.deps.storage.clone();
        let source = self.deps.source.clone();
        let fetch_key = key.clone();
        let fut = async move {
            let key = fetch_key;
            let holes = storage
                .holes(key.clone(), MAX_HOLES_PER_CHECK)
                .await
                .map_err(|e| ExchangeError::Connect(format!("storage: {}", ErrorChain(&e))))?;
            let step = key.interval.duration_ms();
            let mut budget = MAX_HOLE_CANDLES_PER_CHECK;
            let mut fetched = Vec::new();
            let mut exchange_holes = 0;
            for hole in holes {
                let mut from = hole.from;
                while let Some(end) = history_chunk_end(from, hole.to, step) {
                    if budget <= 0 {
                        break;
                    }
                    budget -= (end - from) / step + 1;
                    let candles = source
                        .backfill(&key.symbol, key.interval, from, end)
                        .await?;
                    for (a, b) in missing_ranges(&candles, from, end, step) {
                        exchange_holes += 1;
                        storage
                            .record_exchange_hole(key.clone(), a, b)
                            .await
                            .map_err(|e| {
                                ExchangeError::Connect(format!("storage: {}", ErrorChain(&e)))
                            })?;
                    }
                    fetched.extend(candles);
                    from = end + step;
                }
            }
            Ok::<_, ExchangeError>((fetched, exchange_holes))
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok((candles, exchange_holes)) => {
                    if !candles.is_empty() || exchange_holes > 0 {
                        tracing::info!(series = %key, filled = candles.len(), exchange_holes,
                            "integrity check filled holes");
                    }
                    act.store_history(&key, candles);
                }
                Err(error) => {
                    tracing::warn!(series = %key, %error, "integrity check failed; next period");
                    act.counters.last_error = Some(format!("integrity check of {key}: {error}"));
                }
            }
            act.check_series(ctx, keys, index + 1);
        }));
    }

    /// Fetches, for every series past its history sync, the candles that
    /// closed more than [`CLOSE_GRACE_MS`] ago and were not seen final:
    /// data liveness per series, whatever the connection says.
    fn fetch_overdue(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Streaming || self.retired() {
            return;
        }
        let now = now_ms();
        let instant = Instant::now();
        let due: Vec<(SeriesKey, i64, i64)> = self
            .series
            .iter()
            .filter(|(_, state)| state.may_fetch(instant))
            .filter_map(|(key, state)| {
                let (from, to) = state.overdue(key.interval, now, CLOSE_GRACE_MS)?;
                Some((key.clone(), from, to))
            })
            .collect();
        for (key, from, to) in due {
            self.fill_gap(ctx, key, from, to);
        }
    }

    fn store_history(&mut self, key: &SeriesKey, candles: Vec<Candle>) {
        if self.retired() {
            return;
        }
        let Some(state) = self.series.get_mut(key) else {
            return;
        };
        let valid: Vec<Candle> = candles
            .into_iter()
            .filter(|c| {
                let ok = &c.key == key && c.validate().is_ok();
                if !ok {
                    self.counters.rejected += 1;
                }
                ok
            })
            .collect();
        for candle in state.accept_history(key.interval, valid) {
            self.counters.history_candles += 1;
            self.sink.submit(candle);
        }
        self.sink.flush();
    }

    /// Handles one live update; `now` is the time its batch arrived (one
    /// clock read per batch, not per update). The caller flushes the sink.
    fn on_update(&mut self, ctx: &mut Context<Self>, candle: Candle, now: Instant) {
        if let Err(error) = candle.validate() {
            self.counters.rejected += 1;
            tracing::warn!(exchange = %self.exchange, %error, ?candle, "invalid candle refused");
            return;
        }
        let Some(state) = self.series.get_mut(&candle.key) else {
            tracing::debug!(series = %candle.key, "update for a series not subscribed");
            return;
        };
        if state.is_stale(&candle) {
            self.counters.rejected += 1;
            tracing::warn!(series = %candle.key, open_time = candle.open_time, "stale update of a final candle dropped");
            return;
        }
        // Before this series' history sync finished, the sync covers gaps.
        let gap = state.observe_live(&candle).filter(|_| state.may_fetch(now));
        self.counters.updates += 1;
        if candle.closed {
            self.counters.candles_closed += 1;
        }
        self.reconnect_delay = None;
        self.deps
            .broadcaster
            .publish(&ServerMessage::Candle((&candle).into()));
        let key = candle.key.clone();
        self.sink.submit(candle);
        if let Some((from, to)) = gap {
            self.fill_gap(ctx, key, from, to);
        }
    }

    fn on_event(&mut self, ctx: &mut Context<Self>, event: LiveEvent, now: Instant) {
        match event {
            LiveEvent::Candle(candle) => self.on_update(ctx, candle, now),
            LiveEvent::Alive => {}
            LiveEvent::Refused { key, reason } => {
                self.counters.rejected += 1;
                self.counters.last_error = Some(format!("{key}: {reason}"));
                tracing::error!(series = %key, %reason, "live subscription refused by the exchange");
                self.progress("error", format!("{key}: {reason}"), 100);
            }
            LiveEvent::Reconnecting { series, reason } => {
                // The adapter reopens the connection itself; whatever its
                // series miss meanwhile is fetched over REST.
                self.counters.reconnects += 1;
                self.counters.last_error = Some(reason.clone());
                tracing::warn!(exchange = %self.exchange, series = series.len(), %reason, "exchange connection reconnecting");
            }
        }
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<Self>, reason: String) {
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        // Invalidate everything the failed connection still has in flight.
        self.epoch += 1;
        let base = self
            .reconnect_delay
            .map_or(FIRST_RECONNECT_DELAY, |d| (d * 2).min(MAX_RECONNECT_DELAY));
        self.reconnect_delay = Some(base);
        let delay = jitter(base);
        self.counters.reconnects += 1;
        self.counters.last_error = Some(reason.clone());
        self.phase = Phase::WaitingToReconnect;
        tracing::warn!(exchange = %self.exchange, reason = %reason, retry_in_ms = delay.as_millis() as u64, "datasource reconnecting");
        self.progress(
            "error",
            format!("{reason}; retrying in {:.1} s", delay.as_secs_f64()),
            0,
        );
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        if self.retired() {
            ctx.stop();
            return;
        }
        self.fetch_overdue(ctx);
        let watching = matches!(self.phase, Phase::Syncing | Phase::Streaming)
            && self.stream.is_some()
            && !self.settings.symbols.is_empty();
        let silence = self.deps.source.max_silence();
        if watching && self.last_message.elapsed() > silence {
            self.schedule_reconnect(
                ctx,
                format!(
                    "stream silent for {:.1} s",
                    self.last_message.elapsed().as_secs_f64()
                ),
            );
        }
    }

    fn heartbeat(&mut self) {
        let c = &self.counters;
        let metrics = DatasourceMetrics {
            common: CommonMetrics::now(self.cpu.sample()),
            state: self.phase.as_str().into(),
            series: self.series.len(),
            updates: c.updates,
            candles_closed: c.candles_closed,
            history_candles: c.history_candles,
            reconnects: c.reconnects,
            gap_fills: c.gap_fills,
            rejected: c.rejected,
            storage_pending: self.sink.pending(),
            started_at: self.started_ms,
            last_message_ago_ms: self.last_message.elapsed().as_millis() as u64,
            last_error: c.last_error.clone(),
        };
        self.deps.heartbeats.send(Heartbeat {
            child: ChildId::Datasource(self.exchange),
            generation: self.guard.generation(),
            metrics: WorkerMetrics::Datasource(metrics),
        });
    }
}

fn percent(done: usize, total: usize) -> u8 {
    (done * 100)
        .checked_div(total)
        .map_or(100, |p| p.min(100) as u8)
}

/// ±20 % of `base`, so that many collectors (or datasources) that lost the
/// same exchange at the same moment do not reconnect in lockstep.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

impl Actor for Datasource {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(exchange = %self.exchange, symbols = self.settings.symbols.len(),
            intervals = self.settings.intervals.len(), "datasource started");
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, _| act.heartbeat());
        ctx.run_interval(WATCHDOG_PERIOD, |act, ctx| act.watchdog(ctx));
        ctx.run_interval(SINK_RETRY_PERIOD, |act, _| act.sink.retry());
        ctx.run_interval(INTEGRITY_PERIOD, |act, ctx| act.check_integrity(ctx));
        self.heartbeat();
        self.connect(ctx);
    }
}

impl StreamHandler<StreamEvent> for Datasource {
    fn handle(&mut self, event: StreamEvent, ctx: &mut Self::Context) {
        if self.retired() {
            ctx.stop();
            return;
        }
        match event {
            StreamEvent::Updates(epoch, _) | StreamEvent::Ended(epoch) if epoch != self.epoch => {}
            StreamEvent::Updates(_, items) => {
                let now = Instant::now();
                self.last_message = now;
                for item in items {
                    match item {
                        Ok(event) => self.on_event(ctx, event, now),
                        Err(error) => {
                            self.counters.rejected += 1;
                            self.counters.last_error = Some(error.to_string());
                            if let Some(suppressed) =
                                self.bad_frames.admit(now, BAD_FRAME_LOG_PERIOD)
                            {
                                tracing::warn!(exchange = %self.exchange, %error, suppressed, "stream message refused");
                            }
                        }
                    }
                }
                // The batch's updates go to storage before the next message.
                self.sink.flush();
            }
            StreamEvent::Ended(_) => {
                self.stream = None;
                self.schedule_reconnect(ctx, "stream closed by the exchange".into());
            }
        }
    }

    /// A stream ends with its `Ended` event; actix's default would stop
    /// the actor here.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<ReloadSettings> for Datasource {
    type Result = ();

    fn handle(&mut self, ReloadSettings(settings): ReloadSettings, ctx: &mut Self::Context) {
        tracing::info!(exchange = %self.exchange, symbols = settings.symbols.len(), "datasource reloading");
        self.settings = settings;
        self.reconnect_delay = None;
        self.connect(ctx);
    }
}

impl Handler<StopDatasource> for Datasource {
    type Result = ();

    fn handle(&mut self, _: StopDatasource, ctx: &mut Self::Context) {
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        // This thread has nothing else to do any more, so it may wait for
        // room in the storage channel.
        let lost = self.sink.drain_blocking(STOP_DRAIN_TIMEOUT);
        if lost > 0 {
            tracing::error!(exchange = %self.exchange, lost, "updates could not be handed to storage");
        }
        tracing::info!(exchange = %self.exchange, "datasource stopped");
        ctx.stop();
    }
}

/// The open time of the last candle of the history chunk that starts at
/// `from`: [`HISTORY_CHUNK`] candles at most, none past `to`. `None` when
/// `from` is already past `to`, so that a range ending just after a chunk
/// boundary (a `bootstrap_load` that is a multiple of the chunk) asks for
/// nothing more instead of for a range that starts in the future.
fn history_chunk_end(from: i64, to: i64, step: i64) -> Option<i64> {
    (from <= to).then(|| from.saturating_add((HISTORY_CHUNK - 1) * step).min(to))
}

/// The ranges of open times in `from..=to` (step `step`) for which
/// `candles` holds no closed candle: what the exchange itself lacks.
fn missing_ranges(candles: &[Candle], from: i64, to: i64, step: i64) -> Vec<(i64, i64)> {
    let mut have: Vec<i64> = candles
        .iter()
        .filter(|c| c.closed && (from..=to).contains(&c.open_time))
        .map(|c| c.open_time)
        .collect();
    have.sort_unstable();
    have.dedup();
    let mut ranges = Vec::new();
    let mut next = from;
    for t in have.into_iter().chain(std::iter::once(to + step)) {
        if t > next {
            ranges.push((next, t - step));
        }
        next = t + step;
    }
    ranges
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    /// Every chunk `fetch_history` asks for over `from..=to`.
    fn chunks(mut from: i64, to: i64, step: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        while let Some(end) = history_chunk_end(from, to, step) {
            out.push((from, end));
            from = end + step;
        }
        out
    }

    #[test]
    fn a_bootstrap_of_a_multiple_of_the_chunk_asks_for_nothing_in_the_future() {
        let step = 60_000;
        let now = 1_704_067_200_000 + 30_000; // mid-candle
        let aligned = now - 30_000;
        for load in [HISTORY_CHUNK, 2 * HISTORY_CHUNK] {
            let from = aligned - (load - 1) * step;
            let planned = chunks(from, now, step);
            assert_eq!(planned.len() as i64, load / HISTORY_CHUNK, "{planned:?}");
            assert!(planned.iter().all(|(from, end)| from <= end && *end <= now));
            assert_eq!(planned.last().unwrap().1, aligned);
            let candles: i64 = planned.iter().map(|(f, e)| (e - f) / step + 1).sum();
            assert_eq!(candles, load);
        }
    }

    #[test]
    fn what_the_exchange_did_not_return_is_its_own_hole() {
        use ohlcv_domain::{ExchangeId, SeriesKey, Symbol};
        let key = SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        );
        let candle = |t: i64, closed: bool| Candle {
            key: key.clone(),
            open_time: t,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            closed,
        };
        let got = [candle(2, true), candle(3, true), candle(6, false)];
        assert_eq!(missing_ranges(&got, 0, 7, 1), vec![(0, 1), (4, 7)]);
        assert_eq!(missing_ranges(&[], 0, 2, 1), vec![(0, 2)]);
        let all: Vec<Candle> = (0..3).map(|t| candle(t, true)).collect();
        assert_eq!(missing_ranges(&all, 0, 2, 1), vec![]);
    }

    #[test]
    fn a_range_shorter_than_a_chunk_is_one_request_and_an_empty_one_none() {
        assert_eq!(chunks(0, 5 * 60_000, 60_000), vec![(0, 5 * 60_000)]);
        assert_eq!(chunks(10, 5, 1), vec![]);
    }
}
