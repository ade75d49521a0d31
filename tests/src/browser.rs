use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{free_port, wait_until};

/// Headless Chromium driven through chromedriver (WebDriver), both as child processes that
/// die with this value. Needs the Debian packages `chromium` and `chromium-driver`.
pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
            ]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = wait_until(
            "chromedriver starts a browser",
            Duration::from_secs(30),
            || {
                let capabilities = capabilities.clone();
                let url = url.clone();
                async move {
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                        .capabilities(capabilities)
                        .connect(&url)
                        .await
                        .ok()
                }
            },
        )
        .await;
        Browser {
            client,
            _driver: driver,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Waits until the element at `css` exists and its text contains `text`; returns the text.
    pub async fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) -> String {
        wait_until(&format!("{css} shows {text:?}"), timeout, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let shown = element.text().await.ok()?;
            shown.contains(text).then_some(shown)
        })
        .await
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) {
        wait_until(&format!("{css} appears"), timeout, || async {
            self.client.find(Locator::Css(css)).await.ok().map(drop)
        })
        .await
    }

    /// Saves a screenshot of the page as PNG at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
