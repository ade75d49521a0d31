//! The OpenAPI document, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{dead_letters, error, health, operations, sagas};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sagaflow orchestrator API", description = "Sagas, their histories, dead letters, health and metrics. \
        When SAGAFLOW_API_TOKEN is set, /api/* (but this document) and /metrics need `Authorization: Bearer <token>`."),
    paths(
        sagas::list_sagas, sagas::count_sagas, sagas::get_saga, sagas::resume_saga,
        operations::cancel_saga, operations::terminate_saga, operations::retry_compensation,
        operations::signal_saga,
        dead_letters::list_dead_letters, dead_letters::get_dead_letter, dead_letters::republish_dead_letter,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
pub(crate) struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/openapi.json`.
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_route() {
        let doc = serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
        for path in [
            "/api/sagas",
            "/api/sagas/{id}",
            "/api/sagas/{id}/resume",
            "/api/sagas/{id}/cancel",
            "/api/sagas/{id}/terminate",
            "/api/sagas/{id}/retry-compensation",
            "/api/sagas/{id}/signals/{name}",
            "/api/dead-letters",
            "/api/dead-letters/{id}/republish",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is missing");
        }
    }
}
