//! Dead-letter reasons: short, bounded text, even when they quote the data they reject.
//!
//! A reason travels in a header of the dead letter. Headers must fit in one AMQP frame, and a
//! broker closes the whole connection over a frame that does not, so a reason that grew with the
//! bad data it quotes (a serde error quoting a 1 MB string) would take every consumer of the
//! process down with it. Every reason is cut to [`MAX_REASON_BYTES`].

use std::borrow::Cow;

/// The longest dead-letter reason, in bytes, including [`TRUNCATED`].
pub const MAX_REASON_BYTES: usize = 512;

/// Appended to text that was cut short.
pub const TRUNCATED: &str = "… (truncated)";

/// `text` cut to at most `max` bytes on a character boundary, ending in [`TRUNCATED`] if it was
/// cut. `max` must leave room for the marker; below that, the text is cut without it.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let (keep, marker) = match max.checked_sub(TRUNCATED.len()) {
        Some(keep) => (keep, TRUNCATED),
        None => (max, ""),
    };
    let mut end = keep;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{marker}", &text[..end]))
}

/// `reason` as it goes on a dead letter: at most [`MAX_REASON_BYTES`], never empty.
pub fn bounded(reason: &str) -> Cow<'_, str> {
    if reason.trim().is_empty() {
        return Cow::Borrowed("rejected without a reason (a Sagaflow bug: please report it)");
    }
    truncate(reason, MAX_REASON_BYTES)
}

/// `text` from a message, quoted for a reason (`"…"`, escaped), at most `max` bytes of it.
pub fn quote(text: &str, max: usize) -> String {
    format!("{:?}", truncate(text, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_as_it_is() {
        assert_eq!(truncate("abc", 3), "abc");
        assert!(matches!(bounded("no saga 1 exists"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let text = "x".repeat(1000);
        let cut = truncate(&text, 100);
        assert_eq!(cut.len(), 100);
        assert!(cut.ends_with(TRUNCATED));
        assert!(cut.starts_with("xxx"));
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        // 'é' is two bytes, '😀' four: every cut point is tried.
        let text = "é😀a".repeat(200);
        for max in TRUNCATED.len()..200 {
            let cut = truncate(&text, max);
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            assert!(cut.ends_with(TRUNCATED));
        }
        // Too small for the marker: cut without it, still on a boundary.
        assert_eq!(truncate("😀😀", 5), "😀");
    }

    #[test]
    fn reasons_are_bounded_and_never_empty() {
        assert_eq!(bounded(&"y".repeat(10_000)).len(), MAX_REASON_BYTES);
        assert!(!bounded("").is_empty());
        assert!(!bounded("  ").trim().is_empty());
    }

    #[test]
    fn quotes_are_escaped_and_bounded() {
        assert_eq!(quote("a\"b", 10), r#""a\"b""#);
        assert!(quote(&"z".repeat(500), 64).len() <= 64 + 2);
    }
}
