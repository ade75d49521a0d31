//! A stable hash of an activity's input, recorded with the step so that replay notices code
//! that now calls the same activity with another input.

use serde_json::Value;

/// FNV-1a (64 bit) of the input's JSON, as 16 hex digits. Stable across Rust versions and
/// platforms, unlike `std`'s hasher; object keys are sorted by `serde_json`'s map.
pub(crate) fn input_hash(input: &Value) -> String {
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::input_hash;

    #[test]
    fn the_hash_is_stable_and_ignores_key_order() {
        assert_eq!(
            input_hash(&json!({"a": 1, "b": 2})),
            input_hash(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(input_hash(&json!({"a": 1})), input_hash(&json!({"a": 2})));
        // Recorded in histories: must never change.
        assert_eq!(input_hash(&json!(null)), "5b9bc4ba528108e4");
    }
}
