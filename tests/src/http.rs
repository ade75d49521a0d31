use std::time::Duration;

use serde_json::Value;

use crate::wait_until;

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A client of an orchestrator's HTTP API.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A response: its status and its body as JSON (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl ApiClient {
    pub fn new(port: u16, token: Option<&str>) -> ApiClient {
        ApiClient {
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_owned),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The same API with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> ApiClient {
        ApiClient {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(reqwest::Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> ApiResponse {
        self.send(reqwest::Method::POST, path).await
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> ApiResponse {
        self.post_body(path, body.to_string()).await
    }

    /// POSTs `body` as it is, labelled JSON.
    pub async fn post_body(&self, path: &str, body: String) -> ApiResponse {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str) -> ApiResponse {
        self.request(method, path, None).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> ApiResponse {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the body reads");
        ApiResponse {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_until_up(&self, timeout: Duration) {
        self.wait_until_answers("/healthz", timeout).await
    }

    /// Waits until `path` answers with a success.
    pub async fn wait_until_answers(&self, path: &str, timeout: Duration) {
        wait_until(&format!("{}{path} answers", self.base), timeout, || async {
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(drop)
        })
        .await
    }
}
