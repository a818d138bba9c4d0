//! Forwards the process's log events to UI clients as `log` messages.
//!
//! A [`tracing_subscriber::Layer`] turns each event of ours at `info` or
//! above into the seed's `log` message, publishes it, and keeps the last
//! [`LOG_HISTORY`] so a client that connects later sees recent history
//! (cleared by the `clear` command). Events of the libraries underneath
//! (actix, tokio, …) stay in the process log only.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::broadcast::Broadcaster;
use super::protocol::{rfc3339_ms, LogMessage, ServerMessage};

/// Log lines kept for clients that connect later: enough to see what
/// happened around a restart, small enough to send on every connect.
pub const LOG_HISTORY: usize = 200;

/// Recent log lines, shared by the forwarding layer and the gateway.
#[derive(Clone, Default)]
pub struct LogHistory {
    lines: Arc<Mutex<VecDeque<LogMessage>>>,
}

impl LogHistory {
    /// The kept lines, oldest first.
    pub fn snapshot(&self) -> Vec<LogMessage> {
        self.lock().iter().cloned().collect()
    }

    /// Forgets every kept line.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn push(&self, line: LogMessage) {
        let mut lines = self.lock();
        if lines.len() == LOG_HISTORY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogMessage>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The layer that forwards events; add it to the tracing subscriber.
pub struct LogForwardLayer {
    broadcaster: Broadcaster,
    history: LogHistory,
}

impl LogForwardLayer {
    /// Forwards to `broadcaster`, keeping history in `history`.
    pub fn new(broadcaster: Broadcaster, history: LogHistory) -> Self {
        LogForwardLayer {
            broadcaster,
            history,
        }
    }
}

impl<S: Subscriber> Layer<S> for LogForwardLayer {
    /// `info`: nothing more verbose is forwarded. Without this hint the
    /// layer would count as wanting every level, the process's maximum
    /// level would be `trace` whatever `RUST_LOG` says, and every `trace!`
    /// of a library underneath (tungstenite logs per frame, through the
    /// `log` crate) would be built and then dropped: some 11 % of the CPU
    /// of a Binance flood.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || !meta.target().starts_with("ohlcv") {
            return;
        }
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let kind = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            _ if visitor.success => "success",
            _ => "info",
        };
        let line = LogMessage {
            message: visitor.finish(),
            kind: kind.into(),
            timestamp: rfc3339_ms(ohlcv_domain::time::now_ms()),
        };
        self.broadcaster.publish(&ServerMessage::Log(line.clone()));
        self.history.push(line);
    }
}

/// Renders an event as `message key=value …`; a `success = true` field
/// marks the seed's `success` log type.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
    success: bool,
}

impl LineVisitor {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl Visit for LineVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "success" {
            self.success = value;
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_layer_wants_nothing_past_info_so_chatty_levels_are_skipped_early() {
        let subscriber = tracing_subscriber::registry().with(LogForwardLayer::new(
            Broadcaster::new(),
            LogHistory::default(),
        ));
        let hint = tracing::Subscriber::max_level_hint(&subscriber);
        assert_eq!(hint, Some(LevelFilter::INFO));
    }

    #[test]
    fn our_events_become_log_messages_and_history() {
        let broadcaster = Broadcaster::new();
        let client = broadcaster
            .register(crate::gateway::encoding::Encoding::Json, 1)
            .unwrap();
        let history = LogHistory::default();
        let subscriber = tracing_subscriber::registry()
            .with(LogForwardLayer::new(broadcaster.clone(), history.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "ohlcv_actors::test", exchange = "simulated", success = true, "worker started");
            tracing::warn!(target: "ohlcv_actors::test", attempt = 3, "reconnecting");
            tracing::debug!(target: "ohlcv_actors::test", "too chatty");
            tracing::error!(target: "actix_server", "not ours");
        });
        let lines = history.snapshot();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "worker started exchange=simulated");
        assert_eq!(lines[0].kind, "success");
        assert_eq!(lines[1].message, "reconnecting attempt=3");
        assert_eq!(lines[1].kind, "warn");
        let first = match client.outbox().take_messages(1).messages.pop() {
            Some(crate::gateway::outbox::Queued::Shared(message)) => message,
            other => panic!("expected the first line, got {other:?}"),
        };
        let Some(crate::gateway::encoding::Frame::Text(first)) =
            first.frame(crate::gateway::encoding::Encoding::Json)
        else {
            panic!("no JSON of the line")
        };
        assert!(
            first.starts_with(r#"{"type":"log","data":{"message":"worker started"#),
            "{first}"
        );
        history.clear();
        assert!(history.snapshot().is_empty());
    }
}
