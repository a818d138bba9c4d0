//! Live WebSocket connections of the real exchange adapters, done once for
//! all three: split the series over connections, subscribe at the
//! exchange's pace, check every acknowledgement, keep each connection
//! alive the exchange's way, watch it for silence, replace it before the
//! exchange closes it (Binance's 24-hour limit, OKX's `notice`), and
//! reconnect only the connection that failed, with backoff and jitter.
//!
//! What differs per exchange (URLs, subscribe messages, frame decoding,
//! keep-alive) is a [`LiveProtocol`]; everything else lives here, so the
//! three adapters behave the same way and are tested the same way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ohlcv_domain::{Candle, SeriesKey};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use super::tls;
use crate::source::{CandleStream, ExchangeError, LiveEvent};

/// Events buffered between the connections and the datasource; when the
/// datasource falls behind, the connections stop reading their sockets
/// (TCP pushes back) rather than growing memory.
const EVENT_BUFFER: usize = 4096;
/// Longest wait for the TCP + TLS + WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for a subscription's acknowledgement; a connection whose
/// exchange does not answer is reopened.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// First reconnect delay of a connection; doubles up to
/// [`MAX_RECONNECT_DELAY`], ±20 % jitter.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);
/// A connection that stayed up this long starts its backoff afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Time between the first connects of a stream's connections: exchanges
/// limit new connections per second and IP (OKX: 3).
const CONNECT_STAGGER: Duration = Duration::from_millis(400);
/// How long a replaced connection keeps running while its replacement
/// subscribes; past it, the old one closes anyway.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest frame accepted from an exchange: candle frames are a few
/// hundred bytes, so anything near this is not one of ours.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Longest raw excerpt of a bad frame kept in its error.
const RAW_EXCERPT_CHARS: usize = 200;

/// How one exchange keeps a connection alive and notices a dead one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeepAlive {
    /// The text frame to send (`{"op":"ping"}`, `ping`); `None` sends a
    /// WebSocket ping frame, which every RFC 6455 server answers.
    pub ping: Option<String>,
    /// How often to ping.
    pub every: Duration,
    /// Ping only after `every` without any frame from the exchange (OKX),
    /// rather than every `every` whatever the traffic (Bybit).
    pub when_idle: bool,
    /// No frame at all for this long means the connection is dead (a
    /// stalled socket stays open), and it is reopened.
    pub dead_after: Duration,
}

/// What one text frame from the exchange means to a connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// Candle updates.
    Candles(Vec<Candle>),
    /// A subscription was accepted: the request with `id`, or the oldest
    /// request still waiting when the exchange names none (OKX answers
    /// once per channel).
    Ack {
        /// The request's id, when the exchange echoes one.
        id: Option<String>,
    },
    /// A subscription was refused.
    Refused {
        /// The request's id, when the exchange echoes one.
        id: Option<String>,
        /// The series refused, when the answer names them; otherwise those
        /// of the request (by `id`, or the oldest waiting).
        keys: Vec<SeriesKey>,
        /// The exchange's reason.
        reason: String,
    },
    /// The exchange will close this connection soon (OKX `notice` 64008):
    /// open its replacement now.
    Closing(String),
    /// Anything else that shows the connection is alive (a pong, an
    /// unsubscribe answer).
    Other,
}

/// One subscribe request of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscribe {
    /// The id the acknowledgement will carry, if the exchange echoes one.
    pub id: Option<String>,
    /// The text frame.
    pub text: String,
    /// The series it subscribes.
    pub keys: Vec<SeriesKey>,
    /// Acknowledgements it gets: one per request (Binance, Bybit) or one
    /// per channel (OKX).
    pub acks: usize,
}

/// One connection of a plan: where to connect and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionPlan {
    /// The WebSocket URL (path and query included: Binance names its
    /// streams in the query).
    pub url: String,
    /// Every series this connection carries.
    pub keys: Vec<SeriesKey>,
    /// The subscribe requests, sent in order at the exchange's pace; none
    /// when the URL subscribes.
    pub requests: Vec<Subscribe>,
}

/// The exchange-specific half of a live stream.
pub(crate) trait LiveProtocol: Send + Sync + 'static {
    /// Splits `keys` over connections within the exchange's limits, each
    /// with its subscribe requests.
    ///
    /// # Errors
    /// [`ExchangeError::Rejected`] for a series the exchange cannot serve.
    fn plan(&self, keys: &[SeriesKey]) -> Result<Vec<ConnectionPlan>, ExchangeError>;

    /// The exchange's keep-alive rule.
    fn keepalive(&self) -> KeepAlive;

    /// Time between two messages sent on one connection (Binance counts
    /// incoming messages per second and disconnects above 10).
    fn message_spacing(&self) -> Duration;

    /// Age at which a connection is replaced before the exchange closes it
    /// (Binance: 24 hours); `None` when the exchange sets no limit.
    fn max_age(&self) -> Option<Duration>;

    /// Decodes one text frame.
    ///
    /// # Errors
    /// [`ExchangeError::Decode`] for a frame that is not the documented
    /// format; the connection counts it and goes on.
    fn decode(&self, text: &str) -> Result<Decoded, ExchangeError>;
}

/// Opens the live stream of `keys`: one task per connection of the plan,
/// merged into one [`CandleStream`] that ends only when dropped (which
/// stops every task and closes every socket).
///
/// # Errors
/// What [`LiveProtocol::plan`] refuses.
pub(crate) fn open(
    protocol: Arc<dyn LiveProtocol>,
    keys: &[SeriesKey],
) -> Result<CandleStream, ExchangeError> {
    let plans = protocol.plan(keys)?;
    let (events, receiver) = mpsc::channel(EVENT_BUFFER);
    for (i, plan) in plans.into_iter().enumerate() {
        let connection = Connection {
            protocol: protocol.clone(),
            keys: plan.keys,
            events: events.clone(),
        };
        let delay = CONNECT_STAGGER * i as u32;
        tokio::spawn(connection.run_until_dropped(delay, None));
    }
    Ok(Box::pin(receiver_stream(receiver)))
}

/// The receiving end of the connections' events as a [`CandleStream`].
fn receiver_stream(
    mut receiver: mpsc::Receiver<Result<LiveEvent, ExchangeError>>,
) -> impl futures_util::Stream<Item = Result<LiveEvent, ExchangeError>> + Send {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// One connection's series and where its events go; reconnects itself.
#[derive(Clone)]
struct Connection {
    protocol: Arc<dyn LiveProtocol>,
    keys: Vec<SeriesKey>,
    events: mpsc::Sender<Result<LiveEvent, ExchangeError>>,
}

/// How a session (one socket) ended.
enum SessionEnd {
    /// The socket failed; reconnect.
    Failed(String),
    /// A replacement connection took over; this task is done.
    HandedOver,
}

impl Connection {
    /// [`Connection::run`] until the stream is dropped.
    async fn run_until_dropped(self, delay: Duration, ready: Option<oneshot::Sender<()>>) {
        let events = self.events.clone();
        tokio::select! {
            () = events.closed() => {}
            () = async {
                tokio::time::sleep(delay).await;
                self.run(ready).await
            } => {}
        }
    }

    /// Connects, streams, and reconnects with backoff after every failure,
    /// for as long as some series of this connection is not refused.
    async fn run(mut self, mut ready: Option<oneshot::Sender<()>>) {
        let mut refused: HashSet<SeriesKey> = HashSet::new();
        let mut backoff = FIRST_RECONNECT_DELAY;
        loop {
            self.keys.retain(|k| !refused.contains(k));
            if self.keys.is_empty() {
                return;
            }
            let started = Instant::now();
            match self.session(&mut refused, &mut ready).await {
                SessionEnd::HandedOver => return,
                SessionEnd::Failed(reason) => {
                    tracing::warn!(series = self.keys.len(), %reason, "exchange connection lost; reconnecting");
                    let event = LiveEvent::Reconnecting {
                        series: self.keys.clone(),
                        reason,
                    };
                    if self.events.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            if started.elapsed() >= HEALTHY_AFTER {
                backoff = FIRST_RECONNECT_DELAY;
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    /// One socket: connect, subscribe, stream until it fails or is handed
    /// over.
    async fn session(
        &self,
        refused: &mut HashSet<SeriesKey>,
        ready: &mut Option<oneshot::Sender<()>>,
    ) -> SessionEnd {
        let plan = match self.protocol.plan(&self.keys) {
            Ok(plans) => merge(plans),
            Err(error) => return SessionEnd::Failed(error.to_string()),
        };
        let Some(plan) = plan else {
            return SessionEnd::HandedOver;
        };
        let socket = match connect(&plan.url).await {
            Ok(socket) => socket,
            Err(reason) => return SessionEnd::Failed(reason),
        };
        let (mut sink, mut frames) = socket.split();
        let keepalive = self.protocol.keepalive();
        let spacing = self.protocol.message_spacing();
        let max_age = self.protocol.max_age();
        let opened = Instant::now();
        let mut outbox = plan.requests.into_iter();
        let mut waiting: Vec<Pending> = Vec::new();
        let mut next_send = Instant::now();
        let mut last_frame = Instant::now();
        let mut last_ping = Instant::now();
        let mut handover: Option<(oneshot::Receiver<()>, Instant)> = None;
        let mut sending = outbox.len() > 0;
        loop {
            // Subscribed: every request sent and acknowledged. A replacement
            // tells the connection it replaces, which may then close.
            if waiting.is_empty() && !sending {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            // The next moment something is due: a subscribe message, a
            // ping, the silence limit, an acknowledgement's deadline.
            let ping_base = if keepalive.when_idle {
                last_frame.max(last_ping)
            } else {
                last_ping
            };
            let mut wake = (last_frame + keepalive.dead_after).min(ping_base + keepalive.every);
            if sending {
                wake = wake.min(next_send);
            }
            if let Some(first) = waiting.first() {
                wake = wake.min(first.sent + ACK_TIMEOUT);
            }
            if let (Some(age), None) = (max_age, &handover) {
                wake = wake.min(opened + age);
            }
            let handover_done = async {
                match &mut handover {
                    Some((done, _)) => {
                        let _ = done.await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = frames.next() => {
                    let message = match frame {
                        None => return SessionEnd::Failed("closed by the exchange".into()),
                        Some(Err(error)) => return SessionEnd::Failed(format!("connection failed: {error}")),
                        Some(Ok(message)) => message,
                    };
                    last_frame = Instant::now();
                    match message {
                        Message::Text(text) => {
                            let decoded = self.protocol.decode(text.as_str());
                            match self.on_decoded(decoded, &mut waiting, refused).await {
                                Ok(Some(reason)) if handover.is_none() => {
                                    tracing::info!(%reason, "exchange closes the connection soon; replacing it");
                                    handover = Some((self.replace(refused), Instant::now()));
                                }
                                Ok(_) => {}
                                Err(()) => return SessionEnd::HandedOver,
                            }
                        }
                        Message::Binary(bytes) => {
                            let error = ExchangeError::Decode {
                                reason: format!("unexpected binary frame of {} bytes", bytes.len()),
                                raw: excerpt(&String::from_utf8_lossy(&bytes)),
                            };
                            if self.events.send(Err(error)).await.is_err() {
                                return SessionEnd::HandedOver;
                            }
                        }
                        Message::Ping(_) => {
                            // tungstenite queued the pong; send it now.
                            if let Err(error) = sink.flush().await {
                                return SessionEnd::Failed(format!("pong not sent: {error}"));
                            }
                        }
                        Message::Close(frame) => {
                            let why = frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                            return SessionEnd::Failed(format!("closed by the exchange{why}"));
                        }
                        Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if now.duration_since(last_frame) >= keepalive.dead_after {
                        return SessionEnd::Failed(format!(
                            "no frame for {:.0} s", now.duration_since(last_frame).as_secs_f64()
                        ));
                    }
                    if let Some(first) = waiting.first() {
                        if now.duration_since(first.sent) >= ACK_TIMEOUT {
                            return SessionEnd::Failed(format!(
                                "subscription not acknowledged within {} s", ACK_TIMEOUT.as_secs()
                            ));
                        }
                    }
                    if sending && now >= next_send {
                        match outbox.next() {
                            Some(request) => {
                                if let Err(error) = sink.send(Message::text(request.text.clone())).await {
                                    return SessionEnd::Failed(format!("subscribe not sent: {error}"));
                                }
                                waiting.push(Pending::sent(request));
                                next_send = Instant::now() + spacing;
                            }
                            None => sending = false,
                        }
                    }
                    let ping_base = if keepalive.when_idle { last_frame.max(last_ping) } else { last_ping };
                    if now >= ping_base + keepalive.every {
                        let ping = match &keepalive.ping {
                            Some(text) => Message::text(text.clone()),
                            None => Message::Ping(Vec::new().into()),
                        };
                        if let Err(error) = sink.send(ping).await {
                            return SessionEnd::Failed(format!("ping not sent: {error}"));
                        }
                        last_ping = now;
                    }
                    if let (Some(age), None) = (max_age, &handover) {
                        if now.duration_since(opened) >= age {
                            tracing::info!(age_s = age.as_secs(), "connection reached its age limit; replacing it");
                            handover = Some((self.replace(refused), now));
                        }
                    }
                    if let Some((_, since)) = &handover {
                        if now.duration_since(*since) >= HANDOVER_TIMEOUT {
                            let _ = sink.close().await;
                            return SessionEnd::HandedOver;
                        }
                    }
                }
                () = handover_done => {
                    let _ = sink.close().await;
                    return SessionEnd::HandedOver;
                }
            }
        }
    }

    /// Starts the connection that replaces this one; the receiver fires
    /// once it is subscribed.
    fn replace(&self, refused: &HashSet<SeriesKey>) -> oneshot::Receiver<()> {
        let (ready, done) = oneshot::channel();
        let mut replacement = self.clone();
        replacement.keys.retain(|k| !refused.contains(k));
        tokio::spawn(replacement.run_until_dropped(Duration::ZERO, Some(ready)));
        done
    }

    /// Acts on one decoded frame: forwards candles and errors, settles
    /// acknowledgements. `Ok(Some(reason))` asks for a replacement
    /// connection; `Err(())` means the stream was dropped.
    async fn on_decoded(
        &self,
        decoded: Result<Decoded, ExchangeError>,
        waiting: &mut Vec<Pending>,
        refused: &mut HashSet<SeriesKey>,
    ) -> Result<Option<String>, ()> {
        let send = |event| async { self.events.send(event).await.map_err(|_| ()) };
        match decoded {
            Ok(Decoded::Candles(candles)) => {
                for candle in candles {
                    send(Ok(LiveEvent::Candle(candle))).await?;
                }
            }
            Ok(Decoded::Ack { id }) => {
                if let Some(i) = find(waiting, id.as_deref()) {
                    waiting[i].acks_left = waiting[i].acks_left.saturating_sub(1);
                    if waiting[i].acks_left == 0 {
                        waiting.remove(i);
                    }
                }
                send(Ok(LiveEvent::Alive)).await?;
            }
            Ok(Decoded::Refused { id, keys, reason }) => {
                let keys = match find(waiting, id.as_deref()) {
                    Some(i) if keys.is_empty() => waiting.remove(i).request.keys,
                    Some(i) => {
                        waiting[i].acks_left = waiting[i].acks_left.saturating_sub(1);
                        if waiting[i].acks_left == 0 {
                            waiting.remove(i);
                        }
                        keys
                    }
                    None => keys,
                };
                tracing::warn!(series = keys.len(), %reason, "exchange refused a subscription");
                for key in keys {
                    if refused.insert(key.clone()) {
                        let reason = reason.clone();
                        send(Ok(LiveEvent::Refused { key, reason })).await?;
                    }
                }
            }
            Ok(Decoded::Closing(reason)) => {
                send(Ok(LiveEvent::Alive)).await?;
                return Ok(Some(reason));
            }
            Ok(Decoded::Other) => send(Ok(LiveEvent::Alive)).await?,
            Err(error) => send(Err(error)).await?,
        }
        Ok(None)
    }
}

/// A subscribe request waiting for its acknowledgements.
struct Pending {
    request: Subscribe,
    acks_left: usize,
    sent: Instant,
}

impl Pending {
    /// `request`, sent now, waiting for every answer it gets.
    fn sent(request: Subscribe) -> Self {
        Pending {
            acks_left: request.acks.max(1),
            request,
            sent: Instant::now(),
        }
    }
}

/// The waiting request an answer is for: the one with its id, or the
/// oldest when it names none.
fn find(waiting: &[Pending], id: Option<&str>) -> Option<usize> {
    match id {
        Some(id) => waiting
            .iter()
            .position(|p| p.request.id.as_deref() == Some(id)),
        None => (!waiting.is_empty()).then_some(0),
    }
}

/// One connection of a re-plan of a connection's own series (a subset of
/// what fit one connection before, so it fits one again); `None` when
/// nothing is left to subscribe.
fn merge(plans: Vec<ConnectionPlan>) -> Option<ConnectionPlan> {
    let mut plans = plans.into_iter();
    let mut first = plans.next()?;
    for plan in plans {
        first.keys.extend(plan.keys);
        first.requests.extend(plan.requests);
    }
    Some(first)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket handshake with `url` (`ws://` or `wss://` on the shared
/// TLS configuration), within [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<Socket, String> {
    let tls = tls::client_config().map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let handshake = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(config),
        true,
        Some(Connector::Rustls(tls)),
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(format!("cannot connect to {}: {error}", redact(url))),
        Err(_) => Err(format!(
            "cannot connect to {} within {} s",
            redact(url),
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// `url` without its query (Binance's can list hundreds of streams).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The start of a raw payload, for an error that goes to the log.
pub(crate) fn excerpt(raw: &str) -> String {
    let mut out: String = raw.chars().take(RAW_EXCERPT_CHARS).collect();
    if out.len() < raw.len() {
        out.push('…');
    }
    out
}

/// ±20 % of `base`, so that connections that failed together do not all
/// come back in the same instant.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt;
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::BinanceFutures,
            Symbol::new(symbol).unwrap(),
            Interval::M1,
        )
    }

    fn pending(id: Option<&str>, acks: usize) -> Pending {
        Pending::sent(Subscribe {
            id: id.map(str::to_owned),
            text: String::new(),
            keys: vec![key("BTCUSDT")],
            acks,
        })
    }

    #[test]
    fn answers_find_their_request_by_id_or_else_the_oldest() {
        let waiting = vec![pending(Some("1"), 1), pending(Some("2"), 1)];
        assert_eq!(find(&waiting, Some("2")), Some(1));
        assert_eq!(find(&waiting, Some("9")), None);
        assert_eq!(find(&waiting, None), Some(0));
        assert_eq!(find(&[], None), None);
        // A request answered once per channel waits for every answer.
        assert_eq!(pending(None, 3).acks_left, 3);
        assert_eq!(pending(None, 0).acks_left, 1);
    }

    #[test]
    fn a_replan_is_merged_into_one_connection() {
        let plan = |url: &str, n: usize| ConnectionPlan {
            url: url.into(),
            keys: vec![key("BTCUSDT"); n],
            requests: (0..n)
                .map(|i| Subscribe {
                    id: Some(i.to_string()),
                    text: String::new(),
                    keys: vec![key("BTCUSDT")],
                    acks: 1,
                })
                .collect(),
        };
        let merged = merge(vec![plan("ws://a", 2), plan("ws://b", 1)]).unwrap();
        assert_eq!(merged.url, "ws://a");
        assert_eq!(merged.requests.len(), 3);
        assert_eq!(merged.keys.len(), 3);
        assert_eq!(merge(Vec::new()), None);
    }

    /// One connection per series, at `ws://{addr}/{symbol}`; every text
    /// frame is alive traffic. `max_age` as given.
    struct OnePerSeries {
        addr: std::net::SocketAddr,
        max_age: Option<Duration>,
    }

    impl LiveProtocol for OnePerSeries {
        fn plan(&self, keys: &[SeriesKey]) -> Result<Vec<ConnectionPlan>, ExchangeError> {
            Ok(keys
                .iter()
                .map(|k| ConnectionPlan {
                    url: format!("ws://{}/{}", self.addr, k.symbol),
                    keys: vec![k.clone()],
                    requests: Vec::new(),
                })
                .collect())
        }
        fn keepalive(&self) -> KeepAlive {
            KeepAlive {
                ping: None,
                every: Duration::from_secs(30),
                when_idle: true,
                dead_after: Duration::from_secs(60),
            }
        }
        fn message_spacing(&self) -> Duration {
            Duration::from_millis(10)
        }
        fn max_age(&self) -> Option<Duration> {
            self.max_age
        }
        fn decode(&self, _: &str) -> Result<Decoded, ExchangeError> {
            Ok(Decoded::Other)
        }
    }

    /// What a loopback server saw: (path, opened, closed) per connection.
    type Seen = Arc<std::sync::Mutex<Vec<(String, Instant, Option<Instant>)>>>;

    /// A WebSocket server that greets every connection with a text frame,
    /// closes the first connection to `/DROPUSDT` at once, and records
    /// every connection.
    // The handshake callback's error type is tungstenite's, not ours.
    #[allow(clippy::result_large_err)]
    async fn server() -> (std::net::SocketAddr, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    let path = Arc::new(std::sync::Mutex::new(String::new()));
                    let take = path.clone();
                    let callback = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                         response| {
                        *take.lock().unwrap() = request.uri().path().to_owned();
                        Ok(response)
                    };
                    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
                        .await
                        .unwrap();
                    let path = path.lock().unwrap().clone();
                    let index = {
                        let mut seen = record.lock().unwrap();
                        seen.push((path.clone(), Instant::now(), None));
                        seen.len() - 1
                    };
                    let first_drop = path == "/DROPUSDT"
                        && record
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|s| s.0 == path)
                            .count()
                            == 1;
                    if !first_drop {
                        let _ = ws.send(Message::text("hello")).await;
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                    record.lock().unwrap()[index].2 = Some(Instant::now());
                });
            }
        });
        (addr, seen)
    }

    fn simulated_key(symbol: &str) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).unwrap(),
            Interval::M1,
        )
    }

    /// Waits (at most 20 s) until `check` holds.
    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_broken_connection_is_reopened_alone_and_reported_for_its_series_only() {
        let (addr, seen) = server().await;
        let protocol = Arc::new(OnePerSeries {
            addr,
            max_age: None,
        });
        let keys = [simulated_key("KEEPUSDT"), simulated_key("DROPUSDT")];
        let mut stream = open(protocol, &keys).unwrap();
        let reconnecting = loop {
            match stream.next().await.unwrap().unwrap() {
                LiveEvent::Reconnecting { series, .. } => break series,
                _ => continue,
            }
        };
        assert_eq!(reconnecting, vec![simulated_key("DROPUSDT")]);
        until("the dropped connection to come back", || {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|s| s.0 == "/DROPUSDT")
                .count()
                == 2
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        let kept: Vec<_> = seen.iter().filter(|s| s.0 == "/KEEPUSDT").collect();
        assert_eq!(
            kept.len(),
            1,
            "the other connection was left alone: {seen:?}"
        );
        assert!(kept[0].2.is_none(), "and is still open: {seen:?}");
    }

    #[tokio::test]
    async fn an_old_connection_is_replaced_before_it_closes() {
        let (addr, seen) = server().await;
        let protocol = Arc::new(OnePerSeries {
            addr,
            max_age: Some(Duration::from_millis(300)),
        });
        let _stream = open(protocol, &[simulated_key("KEEPUSDT")]).unwrap();
        until("a replaced connection", || {
            seen.lock().unwrap().first().is_some_and(|s| s.2.is_some())
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        let (first, second) = (&seen[0], &seen[1]);
        assert!(
            second.1 < first.2.unwrap(),
            "the replacement opened before the old one closed: {seen:?}"
        );
    }

    #[test]
    fn excerpts_and_redaction_keep_logs_short() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), RAW_EXCERPT_CHARS + 1);
        assert_eq!(
            redact("wss://h/market/stream?streams=a/b"),
            "wss://h/market/stream"
        );
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(12));
        }
    }
}
