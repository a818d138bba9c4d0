//! [`ErrorChain`]: how every layer prints an error with its causes.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its causes (its
/// [`source`](Error::source) chain), joined by `": "`:
/// `config.json: No such file or directory (os error 2)`.
///
/// Our error types follow one rule: a variant that wraps another error
/// names it as its `#[source]` and leaves it out of its own message, so
/// that a chain says each reason once. The reason then reaches a log line
/// or an HTTP answer only if the printing walks the chain, and this type
/// is the one way it is walked: use `%ErrorChain(&error)` in `tracing`
/// fields and `ErrorChain(&error).to_string()` for messages, wherever an
/// error with causes is printed, `main` included.
///
/// A cause that only repeats the message just printed is skipped: one
/// equal to it, or ending with it after a prefix such as a code. rusqlite's
/// errors do both: `database is locked`, then as its source `Error code 5:
/// database is locked` (or, without a message of its own, the source's
/// message twice).
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let message = error.to_string();
            let repeats = message
                .strip_suffix(previous.as_str())
                .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with(": "));
            if !repeats {
                write!(f, ": {message}")?;
                previous = message;
            }
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with an optional cause, as our `thiserror` enums are.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn Error + 'static>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref()
        }
    }

    fn chain(links: &[&'static str]) -> Layer {
        links
            .iter()
            .rev()
            .fold(None, |cause, link| {
                Some(Layer(link, cause.map(|c| Box::new(c) as Box<dyn Error>)))
            })
            .unwrap()
    }

    #[test]
    fn every_cause_is_printed_once_in_order() {
        assert_eq!(ErrorChain(&chain(&["alone"])).to_string(), "alone");
        assert_eq!(
            ErrorChain(&chain(&[
                "configuration refused",
                "config.json",
                "os error 2"
            ]))
            .to_string(),
            "configuration refused: config.json: os error 2"
        );
        // A cause repeating the message before it is said once, whether
        // equal to it or only adding a prefix.
        assert_eq!(
            ErrorChain(&chain(&[
                "open",
                "database is locked",
                "database is locked"
            ]))
            .to_string(),
            "open: database is locked"
        );
        assert_eq!(
            ErrorChain(&chain(&[
                "insert_batch",
                "database is locked",
                "Error code 5: database is locked"
            ]))
            .to_string(),
            "insert_batch: database is locked"
        );
        assert_eq!(
            ErrorChain(&chain(&["open", "locked", "unlocked"])).to_string(),
            "open: locked: unlocked"
        );
        // The same text further apart is a different cause.
        assert_eq!(ErrorChain(&chain(&["a", "b", "a"])).to_string(), "a: b: a");
    }
}
