//! JSON nesting-depth guard, run on the raw body before serde parses it.
//!
//! serde_json recurses per nesting level; a small body such as 100 000 `[` would
//! otherwise cost stack and CPU before being rejected. This scan is a single pass
//! over the bytes that only tracks string state, so it cannot itself be made slow.
//! It does not validate JSON (serde does that next); it only bounds nesting.

/// Deepest nesting accepted by default (`{}` and `[]` each count one level).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// The body nests objects/arrays deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON nesting is deeper than the limit of {max_depth} levels (exceeded at byte {offset})")]
pub struct DepthError {
    pub max_depth: usize,
    pub offset: usize,
}

/// Fails when `body` opens more than `max_depth` nested objects/arrays. Brackets
/// inside strings (including after escaped quotes) are not counted.
pub fn check_depth(body: &[u8], max_depth: usize) -> Result<(), DepthError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in body.iter().enumerate() {
        if in_string {
            // Inside a string only `\` and the closing quote matter; `\"` and `\\`
            // are consumed by the escape flag.
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(DepthError { max_depth, offset });
                }
            }
            // Unbalanced closers are serde's problem, not ours.
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn accepts_up_to_the_limit_and_rejects_beyond() {
        assert!(check_depth(nested(64).as_bytes(), 64).is_ok());
        let err = check_depth(nested(65).as_bytes(), 64).unwrap_err();
        assert_eq!(
            err,
            DepthError {
                max_depth: 64,
                offset: 64
            }
        );
        assert!(err.to_string().contains("limit of 64"), "{err}");
        assert!(check_depth(br#"{"a":{"b":[1,{"c":2}]}}"#, 4).is_ok());
        assert!(check_depth(br#"{"a":{"b":[1,{"c":2}]}}"#, 3).is_err());
        assert!(check_depth(b"", 0).is_ok());
        assert!(check_depth(b"1", 0).is_ok());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = format!(r#"{{"s":"{}"}}"#, "[{".repeat(1000));
        assert!(check_depth(body.as_bytes(), 1).is_ok());
        // An escaped quote does not end the string; an escaped backslash does not escape the quote.
        assert!(check_depth(br#"{"s":"a\"[[[["}"#, 1).is_ok());
        assert!(check_depth(br#"{"s":"a\\"}"#, 1).is_ok());
        assert!(check_depth(br#"["a\\",[[]]]"#, 2).is_err());
    }

    #[test]
    fn closing_brackets_restore_depth() {
        let siblings = "[[]]".repeat(1000);
        assert!(check_depth(format!("[{siblings}]").as_bytes(), 3).is_ok());
        assert!(check_depth(b"]]]][[", 2).is_ok());
    }
}
