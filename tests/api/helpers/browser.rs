//! A real browser for the console's tests: Debian's headless Chromium, driven through
//! chromedriver by the W3C WebDriver protocol (JSON over HTTP on 127.0.0.1), with the awc
//! client the tests use anyway. (The WebDriver crates pull a second TLS stack with a C build
//! and a Unicode segmenter into the test build; the dozen commands used here are a few
//! lines each.) Each browser has its own chromedriver, port and profile, so tests run side
//! by side; both go when it is dropped.

use std::path::PathBuf;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::poll::{poll_until, try_poll_until};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    client: awc::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    profile: PathBuf,
    /// Where screenshots go (under the target folder).
    pub shots: PathBuf,
}

/// A free port on 127.0.0.1 (chromedriver takes a port number, not a listener).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// A headless Chromium at 1280×900, or `None` (with a note) when Chromium is not
    /// installed and this is not CI (`.ci/run` installs it; under `CI=true` its absence
    /// fails the test instead of skipping it).
    pub async fn start(tag: &str) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            assert!(std::env::var("CI").is_err(), "{CHROMEDRIVER} or {CHROMIUM} is missing: install Debian's chromium and chromium-driver (.ci/run does)");
            eprintln!("skipping the browser test {tag}: {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)");
            return None;
        }
        let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
        // A port taken between the probe and chromedriver's bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let mut driver = Command::new(CHROMEDRIVER)
                // A process group of its own: dropped, the browser goes with its driver.
                .process_group(0)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let base = format!("http://127.0.0.1:{port}");
            let ready = try_poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
                let (client, url) = (client.clone(), format!("{base}/status"));
                async move {
                    match client.get(url).send().await {
                        Ok(mut r) => r.json::<Value>().await.map_err(|e| e.to_string()).and_then(|v| if v["value"]["ready"] == true { Ok(()) } else { Err(v.to_string()) }),
                        Err(e) => Err(e.to_string()),
                    }
                }
            })
            .await;
            if ready.is_err() || driver.try_wait().ok().flatten().is_some() {
                let _ = driver.kill();
                let _ = driver.wait();
                continue;
            }
            let profile = std::env::temp_dir().join(format!("hms-sync-chromium-{tag}-{}-{port}", std::process::id()));
            let args = [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
            ];
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.push(format!("--user-data-dir={}", profile.display()));
            let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "unhandledPromptBehavior": "ignore",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args } } } });
            let mut resp = client.post(format!("{base}/session")).send_json(&caps).await.expect("chromedriver answers");
            let answer: Value = resp.json().limit(1 << 20).await.expect("a new session");
            let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_string();
            let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
            std::fs::create_dir_all(&shots).unwrap();
            return Some(Browser { client, session: format!("{base}/session/{id}"), driver, profile, shots });
        }
        panic!("chromedriver did not start on any of 5 ports");
    }

    /// One WebDriver command; its `value`. A WebDriver error panics with its message.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body).await.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn try_cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url),
        };
        let mut resp = match body {
            Some(b) => req.send_json(&b).await,
            None if method == "POST" => req.send_json(&json!({})).await,
            None => req.send().await,
        }
        .map_err(|e| e.to_string())?;
        let v: Value = resp.json().limit(64 << 20).await.map_err(|e| e.to_string())?;
        if resp.status().is_success() { Ok(v["value"].clone()) } else { Err(format!("{} {}", v["value"]["error"], v["value"]["message"])) }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({ "width": width, "height": height }))).await;
    }

    /// The element `css` selects, waiting (bounded) for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let found = try_poll_until(super::poll::WAIT, Duration::from_millis(20), || async move {
            let v = self.try_cmd("POST", "/element", Some(json!({ "using": "css selector", "value": css }))).await?;
            v[ELEMENT].as_str().map(str::to_string).ok_or_else(|| v.to_string())
        })
        .await;
        found.unwrap_or_else(|e| panic!("no element `{css}` on the page after {:?}: {e}", super::poll::WAIT))
    }

    pub async fn count(&self, css: &str) -> usize {
        self.cmd("POST", "/elements", Some(json!({ "using": "css selector", "value": css }))).await.as_array().map_or(0, Vec::len)
    }

    /// Clicks the element `css` selects. The live parts of a page are replaced every 2 s,
    /// so an element found may be gone before the click: it is found again (bounded).
    pub async fn click(&self, css: &str) {
        let clicked = try_poll_until(super::poll::WAIT, Duration::from_millis(20), || async move {
            let el = self.find(css).await;
            match self.try_cmd("POST", &format!("/element/{el}/click"), None).await {
                Err(e) if e.contains("stale element") => Err(e),
                other => Ok(other),
            }
        })
        .await;
        if let Err(e) | Ok(Err(e)) = clicked {
            panic!("WebDriver click on `{css}`: {e}");
        }
    }

    /// Replaces what field `css` holds with `text`, typed as keys.
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/clear"), None).await;
        self.cmd("POST", &format!("/element/{el}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let text = try_poll_until(super::poll::WAIT, Duration::from_millis(20), || async move {
            let el = self.find(css).await;
            self.try_cmd("GET", &format!("/element/{el}/text"), None).await
        })
        .await;
        text.unwrap_or_else(|e| panic!("WebDriver text of `{css}`: {e}")).as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub async fn exec(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// Waits (bounded) until the text of `css` contains `want`; the text.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        poll_until(&format!("`{css}` to say `{want}`"), super::poll::WAIT, || async move {
            let found = self.try_cmd("POST", "/element", Some(json!({ "using": "css selector", "value": css }))).await.ok()?;
            let el = found[ELEMENT].as_str()?.to_string();
            let text = self.try_cmd("GET", &format!("/element/{el}/text"), None).await.ok()?.as_str()?.to_string();
            text.contains(want).then_some(text)
        })
        .await
    }

    /// Accepts the `confirm()` dialog a click opened (waiting for it, bounded).
    pub async fn accept_dialog(&self) -> String {
        poll_until("a confirm dialog", super::poll::WAIT, || async move {
            let text = self.try_cmd("GET", "/alert/text", None).await.ok()?;
            self.try_cmd("POST", "/alert/accept", None).await.ok()?;
            Some(text.as_str().unwrap_or_default().to_string())
        })
        .await
    }

    /// Is a dialog (an `alert()` an injected script would open) showing?
    pub async fn dialog_open(&self) -> bool {
        self.try_cmd("GET", "/alert/text", None).await.is_ok()
    }

    /// A PNG of the viewport, written as `name.png` in [`shots`](Self::shots); its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let data = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).expect("a base64 PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Browser {
    /// Ends the session (Chromium closes); the driver goes when this is dropped.
    pub async fn quit(self) {
        let _ = self.client.delete(self.session.clone()).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: chromedriver and the Chromium it started, also when a
        // test panicked in the middle.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
