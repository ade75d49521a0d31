//! Reading the headers of a delivery, which its publisher controls: text of scalar values only,
//! and a nesting check for what no Sagaflow message carries.

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use crate::Delivery;

/// The deepest nesting of header tables and arrays a delivery may have (the headers table itself
/// is level 1). RabbitMQ's own `x-death` header nests 3 levels. Deeper headers are rejected
/// before anything reads them: the frame parser (`vendor/amq-protocol-types`) already replaced
/// anything deeper than its limit of 64 by `Void`, so a delivery is rejected whether or not the
/// parser had to cut it.
pub const MAX_HEADER_NESTING: usize = 16;

/// A header of `delivery` as text, if present and a string or a number.
pub fn header(delivery: &Delivery, name: &str) -> Option<String> {
    header_text(delivery.properties.headers().as_ref()?.inner().get(name)?)
}

/// `value` as text if it is a string, a number, a boolean or a timestamp; `None` for tables,
/// arrays, byte arrays and void, which no Sagaflow header holds (and whose `Debug` text would
/// grow with their nesting).
pub fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::DecimalValue(_)
        | AMQPValue::FieldArray(_)
        | AMQPValue::FieldTable(_)
        | AMQPValue::ByteArray(_)
        | AMQPValue::Void => return None,
    })
}

/// Checks the properties of an inbound delivery; the error is the dead-letter reason.
///
/// Everything else a publisher controls in the properties is bounded by the protocol (short
/// strings are at most 255 bytes; all headers fit in one frame) and only ever copied within a
/// budget ([`crate::dead_letter`]).
pub fn check_properties(properties: &BasicProperties) -> Result<(), String> {
    let Some(headers) = properties.headers() else {
        return Ok(());
    };
    if table_nesting(headers, 1) > MAX_HEADER_NESTING {
        return Err(format!(
            "header nesting exceeds {MAX_HEADER_NESTING} levels of tables and arrays"
        ));
    }
    Ok(())
}

/// How deeply `table`, at level `level`, nests; stops counting past [`MAX_HEADER_NESTING`].
fn table_nesting(table: &FieldTable, level: usize) -> usize {
    table
        .inner()
        .values()
        .map(|value| value_nesting(value, level))
        .max()
        .unwrap_or(level)
}

fn value_nesting(value: &AMQPValue, level: usize) -> usize {
    if level > MAX_HEADER_NESTING {
        return level;
    }
    match value {
        AMQPValue::FieldTable(table) => table_nesting(table, level + 1),
        AMQPValue::FieldArray(array) => array
            .as_slice()
            .iter()
            .map(|value| value_nesting(value, level + 1))
            .max()
            .unwrap_or(level + 1),
        _ => level,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::FieldArray;

    use super::*;

    /// Headers with one entry: `levels - 1` arrays nested in each other (the table is level 1).
    pub(crate) fn nested_headers(levels: usize) -> FieldTable {
        let mut value = AMQPValue::FieldArray(FieldArray::default());
        for _ in 2..levels {
            value = AMQPValue::FieldArray(vec![value].into());
        }
        let mut headers = FieldTable::default();
        headers.insert("deep".into(), value);
        headers
    }

    fn with_headers(headers: FieldTable) -> BasicProperties {
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn headers_nested_up_to_the_limit_pass() {
        assert_eq!(table_nesting(&nested_headers(MAX_HEADER_NESTING), 1), 16);
        assert!(check_properties(&with_headers(nested_headers(MAX_HEADER_NESTING))).is_ok());
        assert!(check_properties(&BasicProperties::default()).is_ok());
    }

    #[test]
    fn headers_nested_deeper_are_rejected() {
        let reason =
            check_properties(&with_headers(nested_headers(MAX_HEADER_NESTING + 1))).unwrap_err();
        assert_eq!(
            reason,
            "header nesting exceeds 16 levels of tables and arrays"
        );
        assert!(check_properties(&with_headers(nested_headers(60))).is_err());
    }

    #[test]
    fn only_scalars_have_text() {
        assert_eq!(
            header_text(&AMQPValue::LongString("a".into())),
            Some("a".into())
        );
        assert_eq!(header_text(&AMQPValue::LongInt(-3)), Some("-3".into()));
        assert_eq!(header_text(&AMQPValue::Boolean(true)), Some("true".into()));
        let table = AMQPValue::FieldTable(nested_headers(3));
        assert_eq!(header_text(&table), None);
        assert_eq!(header_text(&AMQPValue::ByteArray(vec![1, 2].into())), None);
    }
}
