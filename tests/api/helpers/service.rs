//! The real `hms-sync` binary as a child process: `Service` (`hms-sync up`, killed when
//! dropped), `bin`, `run_bounded` and `run_client` (a command run to its end, bounded).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::app::{http, to_json};
use super::poll::{poll_until, poll_until_sync, try_poll_until_sync};

/// The `hms-sync` binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hms-sync"))
}

/// `hms-sync up` as a child process, on port 0, with its data and connectors under `dir`.
/// Killed (SIGKILL) when dropped if still running, so a failing test leaves nothing behind.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub client: awc::Client,
}

impl Service {
    /// Starts the binary with `env` on top of the test's settings; `stderr` is where its
    /// log goes. Waits (bounded) for its "up" line and returns once it listens.
    pub async fn up(dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Service {
        Self::up_with(dir, &[], env, stderr).await
    }

    /// [`up`](Self::up) with extra arguments to `up` (e.g. `--watch`).
    pub async fn up_with(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Service {
        use std::io::{BufRead, BufReader};
        let mut cmd = bin();
        cmd.arg("up")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("HMS_SYNC_CONFIG")
            .env("HMS_SYNC__SERVER__PORT", "0")
            .env("HMS_SYNC__DATA_DIR", dir.join("data"))
            .env("HMS_SYNC__CONNECTORS__DIR", dir.join("connectors"))
            .env("HMS_SYNC__LOG__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("hms-sync starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the first line, then drains stdout until the process ends.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut service = Service { child, base: String::new(), port: 0, client: awc::Client::default() };
        let line = poll_until("hms-sync to print its `up` line", Duration::from_secs(30), || {
            let got = rx.try_recv().ok();
            let exited = if got.is_none() { service.child.try_wait().ok().flatten() } else { None };
            assert!(exited.is_none(), "hms-sync exited before it was up: {exited:?}");
            async move { got }
        })
        .await;
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        service.port = port;
        service.base = format!("http://127.0.0.1:{port}");
        service
    }

    pub async fn call_text(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let (code, bytes) = http(&self.client, &self.base, None, method, path, body, &[]).await;
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (code, bytes) = http(&self.client, &self.base, None, method, path, body, &[]).await;
        (code, to_json(&bytes))
    }

    /// `kill -KILL`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let ok = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -KILL");
        self.wait_exit(Duration::from_secs(10));
    }

    /// `kill -TERM` and waits (bounded) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -TERM");
        self.wait_exit(Duration::from_secs(20))
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        poll_until_sync("hms-sync to exit", timeout, || self.child.try_wait().unwrap())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end with `stdin` as its standard input, at most `timeout` (killed and
/// failed past it); stdout and stderr captured.
pub fn run_bounded(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> std::process::Output {
    use std::io::{Read, Write};
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
        // Dropped here: the command sees the end of its input.
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let Ok(status) = try_poll_until_sync(timeout, Duration::from_millis(10), || child.try_wait().unwrap().ok_or(())) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}");
    };
    std::process::Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// `hms-sync ARGS` as a thin client of the service at `url` (HMS_SYNC_URL), bounded, off
/// the test's thread (the app's actors run on it and must keep answering).
pub async fn run_client(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    actix_web::rt::task::spawn_blocking(move || {
        let mut cmd = bin();
        cmd.args(&args).env("HMS_SYNC_URL", url).env_remove("HMS_SYNC_TOKEN").env_remove("HMS_SYNC_CONFIG");
        run_bounded(cmd, None, Duration::from_secs(30))
    })
    .await
    .unwrap()
}
