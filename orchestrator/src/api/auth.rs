//! The bearer token in front of `/api/*` and `/metrics`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// Lets the request through when no token is configured or it carries the right one. The
/// comparison takes the same time whatever the token's first wrong byte.
pub(crate) async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.token {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !token_matches(given, expected) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

fn token_matches(given: &str, expected: &str) -> bool {
    // `ct_eq` on slices of different lengths is false without looking at the bytes; the
    // length of the configured token is not the secret.
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_exact_token_matches() {
        assert!(super::token_matches("s3cret", "s3cret"));
        assert!(!super::token_matches("s3cre", "s3cret"));
        assert!(!super::token_matches("s3creT", "s3cret"));
        assert!(!super::token_matches("", "s3cret"));
    }
}
