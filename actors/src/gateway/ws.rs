//! One WebSocket session per UI client, on `GET /ws`.
//!
//! A session first sends the recent log history (one `log` message per
//! line), then forwards every frame the [`Broadcaster`] publishes and
//! answers the client's `command` messages with `command_result`. It runs
//! as its own task on the actix-web worker that accepted the connection;
//! nothing the collector does ever waits for it:
//!
//! - frames reach it through its own position in the broadcaster's ring,
//!   so a slow client loses the oldest frames (and is told so with a `warn`
//!   log message) instead of slowing anyone down;
//! - a send that fails, or that the client does not take within
//!   [`SEND_TIMEOUT`], ends the session and nothing else;
//! - commands run concurrently with the forwarding (at most
//!   [`MAX_COMMANDS_IN_FLIGHT`] at once), and answer in the order asked.
//!
//! The server pings every [`PING_INTERVAL`] and closes a client it has not
//! heard from for [`CLIENT_TIMEOUT`]. A gateway that stops sends every
//! session's client a Close frame (`1001 going away`) first.
//!
//! When the config sets `api_token`, the `reload` command (it restarts the
//! datasources) needs it; the other commands only read. A client presents
//! the token when it connects, as `Authorization: Bearer <api_token>` on
//! the upgrade request or as `/ws?token=<api_token>`, because browsers
//! cannot set headers on a WebSocket upgrade. The query form puts the
//! secret in the URL, which proxies and access logs may record: prefer the
//! header where the client can send one. The token is checked at each
//! `reload` against the one running, so a session follows a changed or
//! removed token. Without it, `reload` answers `ok: false` with an
//! `unauthorized` (no token) or `forbidden` (wrong token) error body.
//!
//! [`Broadcaster`]: super::broadcast::Broadcaster

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::ApiError;
use super::http::{authorize, bearer_token, restart_value, series_value, status_value};
use super::protocol::{
    rfc3339_ms, ClientMessage, Command, CommandResult, ErrorBody, LogMessage, ServerMessage,
};
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

/// How a WebSocket client presents the token, for the `unauthorized`
/// message.
const WS_TOKEN_HINT: &str =
    "connect with the header `Authorization: Bearer <api_token>` or to `/ws?token=<api_token>`";

/// Who the client is, kept for the session's mutating commands (`reload`):
/// the token it presented when it connected (`None` if none) and the
/// address it connects from (without an `api_token`, only loopback peers
/// may change things).
#[derive(Clone)]
struct Credential {
    token: Option<Arc<[u8]>>,
    peer: Option<std::net::IpAddr>,
}

/// The query string of `/ws`; other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
struct WsParams {
    /// The `api_token`, for clients that cannot set headers (browsers).
    token: Option<String>,
}

/// Tells every session of one server to close; the receiving side, shared
/// by the routes of that server.
#[derive(Clone)]
pub(crate) struct SessionClosing(pub(crate) watch::Receiver<bool>);

/// `GET /ws`: upgrades the connection and starts the session task.
pub(crate) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    deps: web::Data<GatewayDeps>,
    closing: web::Data<SessionClosing>,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<WsParams>::from_query(req.query_string())
        .map_err(|error| ApiError::bad_request("bad_request", format!("query string: {error}")))?;
    // The header wins over the query; an empty value counts as none.
    let token = bearer_token(req.headers())
        .map(<[u8]>::to_vec)
        .or_else(|| params.into_inner().token.map(String::into_bytes))
        .filter(|token| !token.is_empty())
        .map(Arc::from);
    let credential = Credential {
        token,
        peer: req.peer_addr().map(|addr| addr.ip()),
    };
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|error| {
        ApiError::new(
            error.error_response().status(),
            "bad_request",
            format!("expected a WebSocket upgrade: {error}"),
        )
    })?;
    let stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let deps = deps.get_ref().clone();
    let closing = closing.0.clone();
    actix_web::rt::spawn(async move {
        tracing::debug!(%peer, "websocket client connected");
        let end = run(deps, credential, session.clone(), stream, closing).await;
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
    /// The broadcaster is gone (the process is ending).
    BroadcasterGone,
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
            End::BroadcasterGone => "broadcaster gone",
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
            End::ServerStopping | End::BroadcasterGone => {
                Some(reason(CloseCode::Away, "server is stopping".into()))
            }
            End::TooBig => Some(reason(
                CloseCode::Size,
                format!("messages are limited to {MAX_CLIENT_FRAME} bytes"),
            )),
            End::Protocol(error) => Some(reason(CloseCode::Protocol, error)),
        }
    }
}

/// Runs a session; returns why it ended.
async fn run(
    deps: GatewayDeps,
    credential: Credential,
    session: Session,
    stream: AggregatedMessageStream,
    closing: watch::Receiver<bool>,
) -> End {
    match serve(deps, credential, session, stream, closing).await {
        Ok(never) => match never {},
        Err(end) => end,
    }
}

/// The session loop; it only ever ends with an [`End`].
async fn serve(
    deps: GatewayDeps,
    credential: Credential,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    mut closing: watch::Receiver<bool>,
) -> Result<std::convert::Infallible, End> {
    // Subscribe before reading the history, so no line falls in between
    // (a line may then arrive twice, which beats missing).
    let mut frames = deps.broadcaster.subscribe();
    for line in deps.logs.snapshot() {
        send(&mut session, &ServerMessage::Log(line)).await?;
    }

    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut lag = LagNotices::default();
    let mut commands: FuturesOrdered<LocalBoxFuture<'static, ServerMessage>> =
        FuturesOrdered::new();

    loop {
        if *closing.borrow() {
            return Err(End::ServerStopping);
        }
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
                        if let Some(reply) = accept_text(&deps, &credential, &text, &mut commands) {
                            send(&mut session, &reply).await?;
                        }
                    }
                    AggregatedMessage::Binary(_) => {
                        let reply = bad_message("binary frames are not understood; send JSON text".into());
                        send(&mut session, &reply).await?;
                    }
                    AggregatedMessage::Ping(bytes) => {
                        timed(session.pong(&bytes)).await?;
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(reason) => return Err(End::ClientClosed(reason)),
                }
            }
            Some(reply) = commands.next(), if !commands.is_empty() => {
                send(&mut session, &reply).await?;
            }
            frame = frames.recv() => match frame {
                Ok(text) => {
                    timed(session.text(&*text)).await?;
                    if let Some(warning) = lag.notice_due() {
                        send(&mut session, &warning).await?;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    lag.dropped += missed;
                    if let Some(warning) = lag.notice_due() {
                        send(&mut session, &warning).await?;
                    }
                }
                Err(RecvError::Closed) => return Err(End::BroadcasterGone),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= CLIENT_TIMEOUT {
                    return Err(End::TimedOut);
                }
                timed(session.ping(b"")).await?;
            }
        }
    }
}

/// Most one lag notice per this interval per client: a client far behind
/// lags on nearly every frame, and a notice per lag would add to the very
/// flood it reports.
pub const LAG_NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// Messages a slow client lost, told to it at most once per
/// [`LAG_NOTICE_INTERVAL`] with the total since the last notice.
#[derive(Default)]
struct LagNotices {
    dropped: u64,
    last_notice: Option<Instant>,
}

impl LagNotices {
    /// The notice to send now, if messages were dropped and the last notice
    /// is old enough.
    fn notice_due(&mut self) -> Option<ServerMessage> {
        let due = self.dropped > 0
            && self
                .last_notice
                .is_none_or(|at| at.elapsed() >= LAG_NOTICE_INTERVAL);
        if !due {
            return None;
        }
        let dropped = std::mem::take(&mut self.dropped);
        self.last_notice = Some(Instant::now());
        Some(ServerMessage::Log(LogMessage {
            message: format!(
                "{dropped} messages were dropped because this client was too slow; \
                 re-read /ohlcv to fill the gap"
            ),
            kind: "warn".into(),
            timestamp: rfc3339_ms(ohlcv_domain::time::now_ms()),
        }))
    }
}

/// Sends one server message as a JSON text frame.
async fn send(session: &mut Session, message: &ServerMessage) -> Result<(), End> {
    let text = serde_json::to_string(message).map_err(|error| {
        tracing::error!(%error, "server message not serialisable");
        End::SendFailed
    })?;
    timed(session.text(text)).await
}

/// Runs a send, failing after [`SEND_TIMEOUT`].
async fn timed<E>(sending: impl std::future::Future<Output = Result<(), E>>) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(End::SendFailed),
    }
}

/// Handles a client text frame: queues a command, or answers at once.
fn accept_text(
    deps: &GatewayDeps,
    credential: &Credential,
    text: &str,
    commands: &mut FuturesOrdered<LocalBoxFuture<'static, ServerMessage>>,
) -> Option<ServerMessage> {
    let name = match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Command(name)) => name,
        Err(error) => {
            return Some(bad_message(format!(
                r#"expected {{"type":"command","data":"<command>"}}: {error}"#
            )))
        }
    };
    let Some(command) = Command::parse(&name) else {
        let valid: Vec<&str> = Command::HELP.iter().map(|(name, _)| *name).collect();
        return Some(failed(
            name.clone(),
            &ApiError::bad_request(
                "unknown_command",
                format!(
                    "unknown command {name:?}; valid commands: {}",
                    valid.join(", ")
                ),
            ),
        ));
    };
    if commands.len() >= MAX_COMMANDS_IN_FLIGHT {
        return Some(failed(
            name.trim().to_owned(),
            &ApiError::unavailable(format!(
                "{MAX_COMMANDS_IN_FLIGHT} commands are already running; wait for their results"
            )),
        ));
    }
    commands.push_back(Box::pin(run_command(
        deps.clone(),
        credential.clone(),
        command,
    )));
    None
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
