//! The check that lets the adapters' live hot path parse a frame once,
//! straight into its typed form, shared by the three exchanges.

/// Whether parsing `text` straight into typed structs accepts exactly the
/// frames, with exactly the values, that parsing it into a
/// [`serde_json::Value`] first and converting that would: a JSON object
/// with no escapes (lone surrogates), no exponent or overlong number (out
/// of `f64` range), little nesting (the recursion limit). A typed parse
/// skips ignored fields without those checks, so any other frame takes the
/// `Value` path. Conservative: a frame refused here is only slower.
pub(crate) fn typed_parse_is_exact(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'{') {
        return false;
    }
    let (mut opened, mut number_run) = (0usize, 0usize);
    for &b in bytes {
        match b {
            b'\\' => return false,
            b'{' | b'[' => {
                opened += 1;
                if opened > 64 {
                    return false;
                }
            }
            b'e' | b'E' if number_run > 0 => return false,
            _ => {}
        }
        if b.is_ascii_digit() || b == b'.' {
            number_run += 1;
            if number_run > 64 {
                return false;
            }
        } else {
            number_run = 0;
        }
    }
    true
}
