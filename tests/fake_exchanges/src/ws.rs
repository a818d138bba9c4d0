//! WebSocket connections: a hand-written RFC 6455 server codec (so the fake
//! decides every frame, including none at all when stalled, and can drop
//! the TCP connection without a close frame), and the per-connection loop
//! shared by the venues: live pushes, keep-alive rules, controls.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf};
use tokio::sync::mpsc;

use crate::market::{Bar, RawCandle};
use crate::server::{BoxIo, Query};
use crate::{
    binance, bybit, now_ms, okx, ClientMessage, ConnectionInfo, Control, LiveMode, Shared, Venue,
};

/// Whether `path` is a WebSocket endpoint of the venue (others get 404).
pub(crate) fn accepts_path(venue: Venue, path: &str) -> bool {
    match venue {
        Venue::Binance => binance::ws_path(path).is_some(),
        Venue::Bybit => path == "/v5/public/linear",
        Venue::Okx => path == "/ws/v5/business" || path == "/ws/v5/public",
    }
}

/// One subscribed kline series.
pub(crate) struct Sub {
    /// The venue's topic name as reported in [`ConnectionInfo::subscriptions`].
    pub topic: String,
    /// Market symbol, `BTCUSDT`.
    pub symbol: String,
    /// The venue's symbol on the wire (`BTCUSDT`, `BTC-USDT-SWAP`).
    pub wire_symbol: String,
    /// The venue's interval name (`1m`, `1`, `candle1m`).
    pub bar_name: String,
    pub bar: Bar,
    /// Open time of the last candle pushed.
    pub last_sent: Option<i64>,
}

/// What an outgoing text frame is, for the live modes' filters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Subscribe answers, errors, notices.
    Ack,
    /// Kline pushes (counted in `frames_sent`).
    Data,
    /// Keep-alive answers (`pong`).
    Keepalive,
    /// Garbage: sent only in normal mode.
    Garbage,
}

pub(crate) enum Out {
    Text(String, Kind),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// State of one connection, handed to the venue hooks.
pub(crate) struct Conn {
    pub id: u64,
    pub shared: Arc<Shared>,
    pub path: String,
    pub query: Query,
    pub subs: Vec<Sub>,
    /// The venue's connection id string (`conn_id`, `connId`).
    pub conn_id: String,
    pub out: Vec<Out>,
    /// Set to end the connection: (reason, send a close frame first).
    pub close: Option<(String, bool)>,
    /// Binance: a non-routed path, which receives no klines.
    pub silent: bool,
    /// Binance: combined stream (`{"stream":…,"data":…}` wrapper).
    pub combined: bool,
    msg_times: VecDeque<Instant>,
    last_client_ping: Instant,
    last_traffic: Instant,
    awaiting_pong: Option<Instant>,
    next_ping: Instant,
    next_push: Instant,
    opened: Instant,
    notice_close: Option<Instant>,
}

impl Conn {
    pub fn send(&mut self, text: String, kind: Kind) {
        self.out.push(Out::Text(text, kind));
    }

    fn sync_subscriptions(&self) {
        let topics: Vec<String> = self.subs.iter().map(|s| s.topic.clone()).collect();
        if let Some(c) = self
            .shared
            .state()
            .connections
            .get_mut(self.id as usize - 1)
        {
            c.subscriptions = topics;
        }
    }

    fn push_frame(&self, sub: &Sub, c: &RawCandle, now: i64) -> String {
        match self.shared.venue {
            Venue::Binance => binance::ws_push(self, sub, c, now),
            Venue::Bybit => bybit::ws_push(sub, c, now),
            Venue::Okx => okx::ws_push(sub, c),
        }
    }

    /// Live pushes due now: the final update of a candle that just closed,
    /// then the open candle's state.
    fn push_all(&mut self, now: i64) {
        if self.silent {
            return;
        }
        let mut frames = Vec::new();
        let market = self.shared.market.clone();
        let mut subs = std::mem::take(&mut self.subs);
        for sub in &mut subs {
            let current = sub.bar.align(now);
            let prev = sub.bar.align(current - 1);
            if sub.last_sent == Some(prev) {
                if let Some(c) = market.raw(&sub.symbol, sub.bar, prev, now) {
                    frames.push(self.push_frame(sub, &c, now));
                }
            }
            if let Some(c) = market.raw(&sub.symbol, sub.bar, current, now) {
                frames.push(self.push_frame(sub, &c, now));
            }
            sub.last_sent = Some(current);
        }
        self.subs = subs;
        for f in frames {
            self.send(f, Kind::Data);
        }
    }

    /// The earliest instant something is due.
    fn deadline(&self) -> Instant {
        let o = &self.shared.options;
        let mut d = self.next_push;
        let now = Instant::now();
        let now_wall = now_ms();
        for s in &self.subs {
            let boundary = s.bar.align(now_wall) + s.bar.duration_ms();
            let at = now + Duration::from_millis((boundary - now_wall).max(0) as u64 + 2);
            d = d.min(at);
        }
        match self.shared.venue {
            Venue::Binance => {
                d = d.min(self.next_ping);
                if let Some(p) = self.awaiting_pong {
                    d = d.min(p + o.keepalive_timeout);
                }
            }
            Venue::Bybit => d = d.min(self.last_client_ping + o.keepalive_timeout),
            Venue::Okx => d = d.min(self.last_traffic + o.keepalive_timeout),
        }
        if let Some(age) = o.max_connection_age {
            d = d.min(self.opened + age);
        }
        if let Some(n) = self.notice_close {
            d = d.min(n);
        }
        d
    }

    fn on_timer(&mut self) {
        let o = self.shared.options.clone();
        let now = Instant::now();
        let mode = self.shared.mode();
        if mode == LiveMode::Stalled {
            // Nothing is sent, and nothing is enforced: the server is dead.
            self.last_client_ping = now;
            self.last_traffic = now;
            self.awaiting_pong = None;
            self.next_ping = now + o.binance_ping_period;
        }
        if let Some(age) = o.max_connection_age {
            if now >= self.opened + age {
                self.close = Some(("max connection age".into(), true));
                return;
            }
        }
        if self.notice_close.is_some_and(|n| now >= n) {
            self.close = Some(("notice".into(), true));
            return;
        }
        match self.shared.venue {
            Venue::Binance => {
                if self
                    .awaiting_pong
                    .is_some_and(|p| now >= p + o.keepalive_timeout)
                {
                    self.close = Some(("keepalive timeout".into(), true));
                    return;
                }
                if now >= self.next_ping {
                    self.out.push(Out::Ping(now_ms().to_string().into_bytes()));
                    self.awaiting_pong.get_or_insert(now);
                    self.next_ping = now + o.binance_ping_period;
                }
            }
            Venue::Bybit => {
                if now >= self.last_client_ping + o.keepalive_timeout {
                    self.close = Some(("keepalive timeout".into(), true));
                    return;
                }
            }
            Venue::Okx => {
                if now >= self.last_traffic + o.keepalive_timeout {
                    self.close = Some(("keepalive timeout".into(), true));
                    return;
                }
            }
        }
        if now >= self.next_push || self.boundary_passed() {
            self.push_all(now_ms());
            self.next_push = now + o.update_period;
        }
    }

    fn boundary_passed(&self) -> bool {
        let now = now_ms();
        self.subs
            .iter()
            .any(|s| s.last_sent.is_some_and(|l| s.bar.align(now) > l))
    }

    fn on_text(&mut self, text: String, at: Instant) {
        self.shared.state().client_messages.push(ClientMessage {
            connection: self.id,
            at,
            text: text.clone(),
        });
        self.last_traffic = at;
        if self.shared.venue == Venue::Binance {
            self.msg_times.push_back(at);
            while self
                .msg_times
                .front()
                .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(1))
            {
                self.msg_times.pop_front();
            }
            if self.msg_times.len() > 10 {
                self.close = Some(("too many messages per second".into(), false));
                return;
            }
        }
        let now = now_ms();
        match self.shared.venue {
            Venue::Binance => binance::ws_text(self, &text),
            Venue::Bybit => {
                if bybit::ws_text(self, &text, now) {
                    self.last_client_ping = at;
                }
            }
            Venue::Okx => okx::ws_text(self, &text),
        }
        self.sync_subscriptions();
    }

    fn garbage(&mut self) {
        let now = now_ms();
        let frames = match self.shared.venue {
            Venue::Binance => binance::ws_garbage(self, now),
            Venue::Bybit => bybit::ws_garbage(self, now),
            Venue::Okx => okx::ws_garbage(self, now),
        };
        for f in frames {
            self.send(f, Kind::Garbage);
        }
        self.out.push(Out::Binary(vec![0x00, 0xff, 0x7b, 0x22]));
    }
}

enum Incoming {
    Text(String, Instant),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

async fn fill(r: &mut ReadHalf<BoxIo>, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 8192];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Reads client frames (masked, possibly fragmented) until the stream ends.
async fn read_frames(
    mut r: ReadHalf<BoxIo>,
    mut buf: Vec<u8>,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    let mut message: Vec<u8> = Vec::new();
    let mut message_op = 0u8;
    loop {
        if !fill(&mut r, &mut buf, 2).await {
            break;
        }
        let fin = buf[0] & 0x80 != 0;
        let op = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let mut len = (buf[1] & 0x7f) as usize;
        let mut pos = 2;
        if len == 126 {
            if !fill(&mut r, &mut buf, 4).await {
                break;
            }
            len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            if !fill(&mut r, &mut buf, 10).await {
                break;
            }
            len = u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0; 8])) as usize;
            pos = 10;
        }
        if len > 16 << 20 {
            break;
        }
        let mask_len = if masked { 4 } else { 0 };
        if !fill(&mut r, &mut buf, pos + mask_len + len).await {
            break;
        }
        let at = Instant::now();
        let mask: [u8; 4] = if masked {
            buf[pos..pos + 4].try_into().unwrap_or([0; 4])
        } else {
            [0; 4]
        };
        let start = pos + mask_len;
        let payload: Vec<u8> = buf[start..start + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        buf.drain(..start + len);
        let event = match op {
            0x0..=0x2 => {
                if op != 0 {
                    message_op = op;
                    message.clear();
                }
                message.extend_from_slice(&payload);
                if !fin {
                    continue;
                }
                let m = std::mem::take(&mut message);
                if message_op == 1 {
                    Incoming::Text(String::from_utf8_lossy(&m).into_owned(), at)
                } else {
                    Incoming::Binary
                }
            }
            0x8 => Incoming::Close,
            0x9 => Incoming::Ping(payload),
            0xA => Incoming::Pong,
            _ => break,
        };
        let close = matches!(event, Incoming::Close);
        if tx.send(event).is_err() || close {
            return;
        }
    }
}

/// Serves one upgraded connection until it ends.
///
/// The connection is recorded before `handshake_answer` (the 101) is
/// written, so a client that has connected always finds it in
/// [`crate::FakeExchange::connections`].
pub(crate) async fn run(
    mut io: BoxIo,
    leftover: Vec<u8>,
    shared: Arc<Shared>,
    target: String,
    handshake_answer: String,
) {
    let opened = Instant::now();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = shared.state();
        let id = st.connections.len() as u64 + 1;
        st.connections.push(ConnectionInfo {
            id,
            path_and_query: target.clone(),
            opened_at: opened,
            closed_at: None,
            subscriptions: Vec::new(),
            close_reason: None,
        });
        st.controls.insert(id, ctl_tx);
        id
    };
    let o = shared.options.clone();
    let mut conn = Conn {
        id,
        shared: shared.clone(),
        path,
        query: Query::parse(&query),
        subs: Vec::new(),
        conn_id: format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u16(..0xfff),
            fastrand::u16(..0xfff),
            id
        ),
        out: Vec::new(),
        close: None,
        silent: false,
        combined: true,
        msg_times: VecDeque::new(),
        last_client_ping: opened,
        last_traffic: opened,
        awaiting_pong: None,
        next_ping: opened + o.binance_ping_period,
        next_push: opened + o.update_period,
        opened,
        notice_close: None,
    };
    if shared.venue == Venue::Okx {
        conn.conn_id.truncate(8);
    }
    if shared.venue == Venue::Binance {
        binance::ws_open(&mut conn);
        conn.sync_subscriptions();
    }
    if io.write_all(handshake_answer.as_bytes()).await.is_err() || io.flush().await.is_err() {
        let mut st = shared.state();
        st.controls.remove(&id);
        if let Some(c) = st.connections.get_mut(id as usize - 1) {
            c.closed_at = Some(Instant::now());
            c.close_reason = Some("handshake failed".into());
        }
        return;
    }
    let (r, w) = tokio::io::split(io);
    let mut w = BufWriter::new(w);
    let (in_tx, mut in_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_frames(r, leftover, in_tx));
    let mut abrupt = false;
    let reason: String = 'conn: loop {
        let deadline = conn.deadline();
        tokio::select! {
            incoming = in_rx.recv() => match incoming {
                None => break 'conn "connection lost".to_owned(),
                Some(Incoming::Close) => {
                    if shared.mode() != LiveMode::Stalled {
                        let _ = w.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
                        let _ = w.flush().await;
                    }
                    break 'conn "client close".to_owned();
                }
                Some(Incoming::Text(t, at)) => conn.on_text(t, at),
                Some(Incoming::Ping(p)) => {
                    conn.last_traffic = Instant::now();
                    conn.out.push(Out::Pong(p));
                }
                Some(Incoming::Pong) => {
                    conn.last_traffic = Instant::now();
                    conn.awaiting_pong = None;
                }
                Some(Incoming::Binary) => conn.last_traffic = Instant::now(),
            },
            control = ctl_rx.recv() => match control {
                None | Some(Control::Disconnect) => {
                    abrupt = true;
                    break 'conn "disconnect_all".to_owned();
                }
                Some(Control::Garbage) => conn.garbage(),
                Some(Control::Notice) => {
                    let text = okx::notice(&conn);
                    conn.send(text, Kind::Ack);
                    conn.notice_close = Some(Instant::now() + Duration::from_secs(5));
                }
                Some(Control::Flood(n)) => {
                    if flood(&mut conn, &mut w, n).await.is_err() {
                        break 'conn "write failed".to_owned();
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => conn.on_timer(),
        }
        let mode = shared.mode();
        let mut wrote = false;
        for out in std::mem::take(&mut conn.out) {
            let bytes = match (&out, mode) {
                (_, LiveMode::Stalled) => continue,
                (Out::Text(_, Kind::Data | Kind::Garbage), LiveMode::Quiet) => continue,
                (Out::Text(t, kind), _) => {
                    if *kind == Kind::Data {
                        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.last_traffic = Instant::now();
                    frame(0x1, t.as_bytes())
                }
                (Out::Binary(b), _) => frame(0x2, b),
                (Out::Ping(p), _) => frame(0x9, p),
                (Out::Pong(p), _) => frame(0xA, p),
            };
            if w.write_all(&bytes).await.is_err() {
                break 'conn "write failed".to_owned();
            }
            wrote = true;
        }
        if wrote && w.flush().await.is_err() {
            break 'conn "write failed".to_owned();
        }
        if let Some((reason, close_frame)) = conn.close.take() {
            if close_frame && mode != LiveMode::Stalled {
                let _ = w.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
                let _ = w.flush().await;
            } else {
                abrupt = true;
            }
            break 'conn reason;
        }
    };
    reader.abort();
    let _ = reader.await;
    if !abrupt {
        let _ = w.shutdown().await;
    }
    drop(w);
    let mut st = shared.state();
    st.controls.remove(&id);
    if let Some(c) = st.connections.get_mut(id as usize - 1) {
        c.closed_at = Some(Instant::now());
        c.close_reason = Some(reason);
    }
}

/// Pushes `n` updates of the open candles as fast as the socket takes them.
async fn flood<W: tokio::io::AsyncWrite + Unpin>(
    conn: &mut Conn,
    w: &mut W,
    n: u64,
) -> std::io::Result<()> {
    if conn.subs.is_empty() || conn.silent || conn.shared.mode() != LiveMode::Normal {
        return Ok(());
    }
    let mut sent = 0u64;
    while sent < n {
        let now = now_ms();
        let batch = (n - sent).min(256);
        let mut bytes = Vec::new();
        let mut made = 0u64;
        for i in 0..batch {
            let sub = &conn.subs[((sent + i) % conn.subs.len() as u64) as usize];
            if let Some(c) = conn
                .shared
                .market
                .raw(&sub.symbol, sub.bar, sub.bar.align(now), now)
            {
                bytes.extend_from_slice(&frame(0x1, conn.push_frame(sub, &c, now).as_bytes()));
                made += 1;
            }
        }
        w.write_all(&bytes).await?;
        w.flush().await?;
        conn.shared.frames_sent.fetch_add(made, Ordering::Relaxed);
        sent += batch;
    }
    conn.last_traffic = Instant::now();
    Ok(())
}
