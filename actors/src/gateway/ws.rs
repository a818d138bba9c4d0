//! One WebSocket session per UI client, on `GET /ws`.
//!
//! A session first sends the recent log history (one `log` message per
//! line), then whatever the [`Broadcaster`] queues in its [`Outbox`]: every
//! message while the client never subscribed (the seed's firehose), the
//! messages of its topics once it did. It answers the seed's `command`
//! messages with `command_result`, and `subscribe`, `unsubscribe` and
//! `request` (see [`super::requests`]) with a `response` or an `error`
//! carrying the client's `id`. Frames are JSON text, or MessagePack binary
//! when the client asked (see [`super::encoding`]).
//!
//! It runs as its own task on the actix-web worker that accepted the
//! connection; nothing the collector does ever waits for it:
//!
//! - publishers only push into the client's bounded [`Outbox`], where
//!   updates of one candle coalesce; a client that falls too far behind
//!   anyway is closed with `1013` and a reason;
//! - candle updates go out as they come, up to a burst of
//!   [`CANDLE_BURST`] frames; beyond it, at a flood, one frame per
//!   [`CANDLE_BATCH_INTERVAL`] holds whatever accumulated meanwhile, as one
//!   `candles` frame to a subscribed client (the seed's firehose client
//!   gets one `candle` frame per update, as before);
//! - a send that fails, or that the client does not take within
//!   [`SEND_TIMEOUT`], ends the session and nothing else;
//! - commands and requests run concurrently with the sending (at most
//!   [`MAX_COMMANDS_IN_FLIGHT`] at once), count against the client
//!   address's rate limit like HTTP requests, and answer in the order
//!   asked.
//!
//! The server pings every [`PING_INTERVAL`] and closes a client it has not
//! heard from for [`CLIENT_TIMEOUT`]. A gateway that stops sends every
//! session's client a Close frame (`1001 going away`) first. Beyond the
//! gateway's `max_clients`, an upgrade is answered 503.
//!
//! When the config sets `api_token`, the `reload` command and the
//! mutating request methods need it; the rest only read. A client presents
//! the token when it connects, as `Authorization: Bearer <api_token>` on
//! the upgrade request or as `/ws?token=<api_token>`, because browsers
//! cannot set headers on a WebSocket upgrade. The query form puts the
//! secret in the URL, which proxies and access logs may record: prefer the
//! header where the client can send one. The token is checked at each
//! mutation against the one running, so a session follows a changed or
//! removed token. Without it, `reload` answers `ok: false` with an
//! `unauthorized` (no token) or `forbidden` (wrong token) error body.
//!
//! [`Broadcaster`]: super::broadcast::Broadcaster

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use ohlcv_domain::json::UniqueKeys;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::broadcast::Client;
use super::encoding::{Encoding, Frame};
use super::errors::ApiError;
use super::http::{authorize, bearer_token, restart_value, series_value, status_value};
use super::outbox::Queued;
use super::protocol::{ClientMessage, Command, CommandResult, ErrorBody, Reply, ServerMessage};
use super::requests::{self, error_reply, reply_frames, Method, WS_TOKEN_HINT};
use super::security::Security;
use super::shared::candle_batch;
use super::topics::Topic;
use super::GatewayDeps;

/// How often the server pings an idle client. Proxies and load balancers
/// commonly drop a connection silent for 60 s (nginx's default
/// `proxy_read_timeout`); a ping every 20 s keeps it open with room for
/// one lost ping, and lets the client see that the server is alive.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long a client may stay silent (no pong, no message) before the
/// server closes it: three ping intervals, so a dead peer (a laptop that
/// went to sleep, a dropped mobile link) is noticed within a minute while
/// one or two lost pongs are tolerated.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one frame may wait for the client to take it. Frames queue in
/// the broadcaster's ring meanwhile; a client whose connection accepts
/// nothing for this long is stuck, and its session ends.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest frame (and largest reassembled message) a client may send.
/// Commands are a few dozen bytes; 64 KiB leaves room for any future
/// request and refuses a flood before it is buffered.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Commands of one client running at once. A UI sends one at a time; a
/// client with more in flight is runaway, and each command costs the
/// supervisor or storage thread work, so the excess is refused.
pub const MAX_COMMANDS_IN_FLIGHT: usize = 4;

/// How often, at a sustained flood, candle frames go to one client: about
/// a screen refresh. Updates that arrive meanwhile wait in the outbox
/// (coalesced per candle) and leave together. A client gets
/// [`CANDLE_BURST`] frames at once before the pace applies, so updates at
/// a UI's rates (a few per second per series, several series at the same
/// moment) go out the moment they come.
pub const CANDLE_BATCH_INTERVAL: Duration = Duration::from_millis(16);

/// Candle frames a client may get back to back before they are paced at
/// [`CANDLE_BATCH_INTERVAL`]: a token bucket of this size, refilled one
/// frame per interval.
pub const CANDLE_BURST: f64 = 4.0;

/// Who the client is, kept for the session's mutating commands (`reload`):
/// the token it presented when it connected (`None` if none) and the
/// address it connects from (without an `api_token`, only loopback peers
/// may change things).
#[derive(Clone)]
pub(crate) struct Credential {
    /// The token presented.
    pub(crate) token: Option<Arc<[u8]>>,
    /// The peer's address.
    pub(crate) peer: Option<std::net::IpAddr>,
}

/// The query string of `/ws`; other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
struct WsParams {
    /// The `api_token`, for clients that cannot set headers (browsers).
    token: Option<String>,
    /// `json` (the default) or `msgpack`.
    format: Option<String>,
}

/// Tells every session of one server to close; the receiving side, shared
/// by the routes of that server.
#[derive(Clone)]
pub(crate) struct SessionClosing(pub(crate) watch::Receiver<bool>);

/// `GET /ws`: upgrades the connection and starts the session task.
#[utoipa::path(get, path = "/ws", tag = "websocket",
    description = "The WebSocket: live candles, topic subscriptions, the HTTP API's methods as requests, JSON or MessagePack frames. The protocol is in the README, section \"WebSocket API (/ws)\".",
    params(
        ("token" = Option<String>, Query, description = "The `api_token`, for clients that cannot set `Authorization` (browsers); the header wins"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `msgpack`; or ask with the `Sec-WebSocket-Protocol` header")
    ),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session starts"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade, or a bad query string; `bad_format`: a `format` other than json or msgpack", body = super::errors::Envelope),
        (status = 503, description = "`too_many_clients`: `max_clients` are connected", body = super::errors::Envelope)
    ))]
pub(crate) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    deps: web::Data<GatewayDeps>,
    closing: web::Data<SessionClosing>,
    security: web::Data<Security>,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<WsParams>::from_query(req.query_string())
        .map_err(|error| ApiError::bad_request("bad_request", format!("query string: {error}")))?
        .into_inner();
    let (encoding, protocol) = Encoding::negotiate(params.format.as_deref(), req.headers())?;
    // The header wins over the query; an empty value counts as none.
    let token = bearer_token(req.headers())
        .map(<[u8]>::to_vec)
        .or_else(|| params.token.map(String::into_bytes))
        .filter(|token| !token.is_empty())
        .map(Arc::from);
    let credential = Credential {
        token,
        peer: req.peer_addr().map(|addr| addr.ip()),
    };
    let client = deps
        .broadcaster
        .register(encoding, deps.settings.max_clients as usize)
        .map_err(|full| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_clients",
                format!("{full}; try again later"),
            )
        })?;
    let (mut response, session, stream) = actix_ws::handle(&req, body).map_err(|error| {
        ApiError::new(
            error.error_response().status(),
            "bad_request",
            format!("expected a WebSocket upgrade: {error}"),
        )
    })?;
    if let Some(protocol) = protocol {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(protocol),
        );
    }
    let stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let deps = deps.get_ref().clone();
    let closing = closing.0.clone();
    let security = security.into_inner();
    actix_web::rt::spawn(async move {
        tracing::debug!(%peer, ?encoding, "websocket client connected");
        let me = Connection {
            deps,
            credential,
            security,
            encoding: client.outbox().encoding(),
            client,
            subscribed: false,
            replies: FuturesOrdered::new(),
            candle_budget: CANDLE_BURST,
            budget_at: Instant::now(),
        };
        let end = me.run(session.clone(), stream, closing).await;
        tracing::debug!(%peer, reason = end.describe(), "websocket client left");
        if let Some(reason) = end.close_reason() {
            // The client may be gone or stuck already; nothing more to do
            // then, and no reason to wait longer than for any other frame.
            let _ = tokio::time::timeout(SEND_TIMEOUT, session.close(Some(reason))).await;
        }
    });
    Ok(response)
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent Close (echoed back, as the protocol wants).
    ClientClosed(Option<CloseReason>),
    /// The connection ended without a Close.
    Disconnected,
    /// Silent for [`CLIENT_TIMEOUT`].
    TimedOut,
    /// The gateway is stopping.
    ServerStopping,
    /// A frame over [`MAX_CLIENT_FRAME`].
    TooBig,
    /// The client broke the WebSocket protocol.
    Protocol(String),
    /// A send failed or took longer than [`SEND_TIMEOUT`].
    SendFailed,
    /// The client's outbox overflowed: it fell too far behind.
    FellBehind(String),
}

impl End {
    fn describe(&self) -> &'static str {
        match self {
            End::ClientClosed(_) => "client closed",
            End::Disconnected => "disconnected",
            End::TimedOut => "timed out",
            End::ServerStopping => "server stopping",
            End::TooBig => "frame too big",
            End::Protocol(_) => "protocol error",
            End::SendFailed => "send failed",
            End::FellBehind(_) => "fell behind",
        }
    }

    /// The Close frame to send, if the connection can still take one.
    fn close_reason(self) -> Option<CloseReason> {
        let reason = |code, description: String| CloseReason {
            code,
            description: Some(description),
        };
        match self {
            End::ClientClosed(reason) => Some(reason.unwrap_or_else(|| CloseCode::Normal.into())),
            End::Disconnected | End::SendFailed => None,
            End::TimedOut => Some(reason(
                CloseCode::Policy,
                format!(
                    "nothing heard from the client for {} s",
                    CLIENT_TIMEOUT.as_secs()
                ),
            )),
            End::ServerStopping => Some(reason(CloseCode::Away, "server is stopping".into())),
            End::TooBig => Some(reason(
                CloseCode::Size,
                format!("messages are limited to {MAX_CLIENT_FRAME} bytes"),
            )),
            End::Protocol(error) => Some(reason(CloseCode::Protocol, error)),
            // Close reasons are limited to 123 bytes; these are shorter.
            End::FellBehind(why) => {
                Some(reason(CloseCode::Again, format!("client too slow: {why}")))
            }
        }
    }
}

/// Answers still being computed, in the order asked.
type Replies = FuturesOrdered<LocalBoxFuture<'static, Vec<Frame>>>;

/// The state of one session.
struct Connection {
    deps: GatewayDeps,
    credential: Credential,
    /// The rate limit the client's requests count against.
    security: Arc<Security>,
    encoding: Encoding,
    client: Client,
    /// Whether the client ever subscribed or unsubscribed: it then gets
    /// batched `candles` frames instead of the seed's single `candle`s.
    subscribed: bool,
    replies: Replies,
    /// Candle frames the client may get now (see [`CANDLE_BURST`]), as of
    /// `budget_at`.
    candle_budget: f64,
    budget_at: Instant,
}

impl Connection {
    /// Runs the session; returns why it ended.
    async fn run(
        mut self,
        session: Session,
        stream: AggregatedMessageStream,
        closing: watch::Receiver<bool>,
    ) -> End {
        match self.serve(session, stream, closing).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    /// The session loop; it only ever ends with an [`End`].
    async fn serve(
        &mut self,
        mut session: Session,
        mut stream: AggregatedMessageStream,
        mut closing: watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, End> {
        for line in self.deps.logs.snapshot() {
            self.queue(&ServerMessage::Log(line));
        }
        let outbox = self.client.outbox().clone();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut next_candles = Instant::now();

        loop {
            if *closing.borrow() {
                return Err(End::ServerStopping);
            }
            let candles_wait = next_candles > Instant::now() && outbox.has_candles();
            tokio::select! {
                changed = closing.changed() => {
                    // The sender gone means its gateway is gone too.
                    if changed.is_err() {
                        return Err(End::ServerStopping);
                    }
                }
                message = stream.recv() => {
                    let message = match message {
                        None => return Err(End::Disconnected),
                        Some(Err(ProtocolError::Overflow)) => return Err(End::TooBig),
                        Some(Err(error)) => return Err(End::Protocol(error.to_string())),
                        Some(Ok(message)) => message,
                    };
                    last_heard = Instant::now();
                    match message {
                        AggregatedMessage::Text(text) => {
                            self.accept(serde_json::from_str::<UniqueKeys>(&text).map_err(|e| e.to_string()));
                        }
                        AggregatedMessage::Binary(bytes) => {
                            self.accept(rmp_serde::from_slice::<UniqueKeys>(&bytes).map_err(|e| e.to_string()));
                        }
                        AggregatedMessage::Ping(bytes) => {
                            timed(session.pong(&bytes)).await?;
                        }
                        AggregatedMessage::Pong(_) => {}
                        AggregatedMessage::Close(reason) => return Err(End::ClientClosed(reason)),
                    }
                }
                Some(frames) = self.replies.next(), if !self.replies.is_empty() => {
                    frames.into_iter().for_each(|frame| outbox.push_own(frame));
                }
                () = outbox.ready() => {}
                () = tokio::time::sleep_until(next_candles), if candles_wait => {}
                _ = ping.tick() => {
                    if last_heard.elapsed() >= CLIENT_TIMEOUT {
                        return Err(End::TimedOut);
                    }
                    timed(session.ping(b"")).await?;
                }
            }
            self.flush(&mut session, &mut next_candles).await?;
        }
    }

    /// Sends what waits in the outbox: a few messages, then the candle
    /// updates if their interval has come. Leaves the rest for the next
    /// round (waking itself), so that a long answer never holds back the
    /// live updates.
    async fn flush(
        &mut self,
        session: &mut Session,
        next_candles: &mut Instant,
    ) -> Result<(), End> {
        let outbox = self.client.outbox().clone();
        let drained = outbox.take_messages(MESSAGES_PER_ROUND);
        if let Some(why) = drained.overflowed {
            return Err(End::FellBehind(why));
        }
        for queued in drained.messages {
            let frame = match queued {
                Queued::Own(frame) => Some(frame),
                Queued::Shared(message) => message.frame(self.encoding),
            };
            if let Some(frame) = frame {
                send_frame(session, frame).await?;
            }
        }
        if outbox.has_candles() && self.take_candle_frame(next_candles) {
            let candles = outbox.take_candles();
            if self.subscribed && candles.len() > 1 {
                send_frame(session, candle_batch(self.encoding, &candles)).await?;
            } else {
                for frame in candles.iter().filter_map(|c| c.frame(self.encoding)) {
                    send_frame(session, frame).await?;
                }
            }
        }
        if outbox.has_messages() {
            outbox.wake();
        }
        Ok(())
    }

    /// Takes one candle frame from the client's budget, if there is one;
    /// otherwise sets `next_candles` to when there will be.
    fn take_candle_frame(&mut self, next_candles: &mut Instant) -> bool {
        let now = Instant::now();
        let refill =
            now.duration_since(self.budget_at).as_secs_f64() / CANDLE_BATCH_INTERVAL.as_secs_f64();
        self.candle_budget = (self.candle_budget + refill).min(CANDLE_BURST);
        self.budget_at = now;
        if self.candle_budget >= 1.0 {
            self.candle_budget -= 1.0;
            *next_candles = now;
            true
        } else {
            *next_candles = now + CANDLE_BATCH_INTERVAL.mul_f64(1.0 - self.candle_budget);
            false
        }
    }

    /// Queues a message for this client alone, in its encoding.
    fn queue(&self, message: &impl serde::Serialize) {
        match self.encoding.encode(message) {
            Ok(frame) => self.client.outbox().push_own(frame),
            Err(error) => tracing::error!(%error, "message to a client not sent"),
        }
    }

    /// Handles one client message (already parsed as JSON or MessagePack):
    /// queues its answer, or starts computing it.
    fn accept(&mut self, parsed: Result<UniqueKeys, String>) {
        let value = match parsed {
            Ok(UniqueKeys(value)) => value,
            Err(error) => return self.queue(&bad_message(format!("not a message: {error}"))),
        };
        let message = match ClientMessage::deserialize(&value) {
            Ok(message) => message,
            Err(error) => {
                let error = ApiError::bad_request(
                    "bad_message",
                    format!(
                        "{error}; expected a command, subscribe, unsubscribe or request message"
                    ),
                );
                // Answer with the id if the message had one.
                return match value.get("id") {
                    Some(id) => self.queue(&error_reply(id, &error)),
                    None => self.queue(&bad_message(error.message().to_owned())),
                };
            }
        };
        match message {
            ClientMessage::Command { data } => self.command(&data),
            ClientMessage::Subscribe { id, topics } => self.topics(&id, &topics, true),
            ClientMessage::Unsubscribe { id, topics } => self.topics(&id, &topics, false),
            ClientMessage::Request { id, method, params } => self.request(id, &method, params),
        }
    }

    /// `subscribe` (or `unsubscribe`): all the topics, or none if one is
    /// not a topic.
    fn topics(&mut self, id: &Value, names: &[String], subscribe: bool) {
        if let Err(error) = check_id(id) {
            return self.queue(&error_reply(&Value::Null, &error));
        }
        let topics: Result<Vec<Topic>, _> = names.iter().map(|name| name.parse()).collect();
        let topics = match topics {
            Ok(topics) => topics,
            Err(error) => {
                let error = ApiError::bad_request("unknown_topic", format!("{error}"));
                return self.queue(&error_reply(id, &error));
            }
        };
        self.subscribed = true;
        let now = if subscribe {
            self.client.subscribe(&topics)
        } else {
            self.client.unsubscribe(&topics)
        };
        let data = json!({ "topics": now });
        self.queue(&Reply::Response {
            id,
            data: &data,
            chunk: None,
            last: None,
        });
    }

    /// `request`: starts the method, whose answer is queued when done.
    fn request(&mut self, id: Value, method: &str, params: Value) {
        if let Err(error) = check_id(&id) {
            return self.queue(&error_reply(&Value::Null, &error));
        }
        let method = match Method::parse(method) {
            Ok(method) => method,
            Err(error) => return self.queue(&error_reply(&id, &error)),
        };
        if self.replies.len() >= MAX_COMMANDS_IN_FLIGHT {
            return self.queue(&error_reply(&id, &busy()));
        }
        if let Err(refused) = self.security.admit(self.credential.peer) {
            return self.queue(&error_reply(&id, &refused));
        }
        let (deps, credential, encoding) =
            (self.deps.clone(), self.credential.clone(), self.encoding);
        self.replies.push_back(Box::pin(async move {
            let outcome = requests::call(&deps, &credential, method, params).await;
            reply_frames(encoding, &id, outcome)
        }));
    }

    /// A seed `command`: starts it, whose `command_result` is queued when
    /// done.
    fn command(&mut self, name: &str) {
        let Some(command) = Command::parse(name) else {
            let valid: Vec<&str> = Command::HELP.iter().map(|(name, _)| *name).collect();
            return self.queue(&failed(
                name.to_owned(),
                &ApiError::bad_request(
                    "unknown_command",
                    format!(
                        "unknown command {name:?}; valid commands: {}",
                        valid.join(", ")
                    ),
                ),
            ));
        };
        if self.replies.len() >= MAX_COMMANDS_IN_FLIGHT {
            return self.queue(&failed(name.trim().to_owned(), &busy()));
        }
        if let Err(refused) = self.security.admit(self.credential.peer) {
            return self.queue(&failed(name.trim().to_owned(), &refused));
        }
        let (deps, credential, encoding) =
            (self.deps.clone(), self.credential.clone(), self.encoding);
        self.replies.push_back(Box::pin(async move {
            let result = run_command(deps, credential, command).await;
            match encoding.encode(&result) {
                Ok(frame) => vec![frame],
                Err(error) => {
                    tracing::error!(%error, "command result not sent");
                    Vec::new()
                }
            }
        }));
    }
}

/// Messages sent per round of [`Connection::flush`] before the candle
/// updates get their turn.
const MESSAGES_PER_ROUND: usize = 4;

/// The refusal of a command or request beyond [`MAX_COMMANDS_IN_FLIGHT`].
fn busy() -> ApiError {
    ApiError::unavailable(format!(
        "{MAX_COMMANDS_IN_FLIGHT} commands and requests are already running; wait for their answers"
    ))
}

/// An `id` must be a number or a string, so that a client can match it.
fn check_id(id: &Value) -> Result<(), ApiError> {
    if id.is_number() || id.is_string() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_message",
            format!("id: expected a number or a string, got {id}"),
        ))
    }
}

/// Sends one frame, failing after [`SEND_TIMEOUT`].
async fn send_frame(session: &mut Session, frame: Frame) -> Result<(), End> {
    match frame {
        Frame::Text(text) => timed(session.text(text)).await,
        Frame::Binary(bytes) => timed(session.binary(bytes)).await,
    }
}

/// Runs a send, failing after [`SEND_TIMEOUT`].
async fn timed<E>(sending: impl std::future::Future<Output = Result<(), E>>) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(End::SendFailed),
    }
}

/// Runs one command and wraps its outcome as `command_result`. `reload`
/// runs only with the `api_token` (when one is set).
async fn run_command(deps: GatewayDeps, credential: Credential, command: Command) -> ServerMessage {
    let name = command_name(command);
    let outcome = match command {
        Command::Status => status_value(&deps).await,
        Command::List => series_value(&deps).await,
        Command::Reload => reload(&deps, &credential).await,
        Command::Clear => {
            deps.logs.clear();
            Ok(json!({"cleared": true}))
        }
        Command::Help => Ok(help()),
    };
    match outcome {
        Ok(result) => ServerMessage::CommandResult(CommandResult {
            command: name.into(),
            ok: true,
            result,
        }),
        Err(error) => failed(name.into(), &error),
    }
}

/// `reload`: re-reads the config and restarts the datasources, for a
/// client that presented the `api_token` (when one is set).
async fn reload(deps: &GatewayDeps, credential: &Credential) -> Result<Value, ApiError> {
    authorize(
        deps,
        credential.token.as_deref(),
        credential.peer,
        "the reload command",
        WS_TOKEN_HINT,
    )
    .await?;
    restart_value(deps).await
}

fn command_name(command: Command) -> &'static str {
    match command {
        Command::Status => "status",
        Command::List => "list",
        Command::Reload => "reload",
        Command::Clear => "clear",
        Command::Help => "help",
    }
}

/// `help`'s answer: each command and what it does.
fn help() -> Value {
    let commands: Map<String, Value> = Command::HELP
        .iter()
        .map(|(name, what)| ((*name).to_owned(), Value::from(*what)))
        .collect();
    Value::Object(commands)
}

fn failed(command: String, error: &ApiError) -> ServerMessage {
    ServerMessage::CommandResult(CommandResult {
        command,
        ok: false,
        result: serde_json::to_value(error.body()).unwrap_or(Value::Null),
    })
}

fn bad_message(message: String) -> ServerMessage {
    ServerMessage::Error(ErrorBody {
        code: "bad_message".into(),
        message,
    })
}

#[cfg(test)]
mod tests;
