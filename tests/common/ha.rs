//! Home Assistant in the tests: its own MQTT discovery schemas (tests/ha_validate.py), and a
//! real Home Assistant Core with a websocket client (tests/ha_real.py), both in the Debian
//! unstable chroot scripts/ha-venv makes.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A Python with the `homeassistant` package: `$var`, else `default` (scripts/ha-venv writes both
/// defaults: wrappers that run Home Assistant's Python in its Debian unstable chroot).
fn ha_python_from(var: &str, default: &str) -> Option<String> {
    let python = std::env::var(var).unwrap_or_else(|_| default.into());
    if Path::new(&python).exists() {
        return Some(python);
    }
    assert!(!super::in_ci(), "{python} missing: CI must run scripts/ha-venv so discovery is validated");
    eprintln!("skipping Home Assistant schema validation: {python} missing (run scripts/ha-venv)");
    None
}

/// Home Assistant's current release (device-based and per-component discovery).
pub fn ha_python() -> Option<String> {
    ha_python_from("DISKWATCH_HA_PYTHON", "/opt/diskwatch-ha-venv/bin/python")
}

/// One older release, kept to validate per-component discovery.
pub fn ha_python_old() -> Option<String> {
    ha_python_from("DISKWATCH_HA_PYTHON_OLD", "/opt/diskwatch-ha-venv/bin/python-old")
}

pub fn run_validator(python: &str, messages: &BTreeMap<String, String>, dir: &Path) {
    let list: Vec<Value> =
        messages.iter().map(|(t, p)| serde_json::json!({"topic": t, "payload": p})).collect::<Vec<_>>();
    let file = dir.join("discovery.json");
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha_validate.py");
    let out = std::process::Command::new(python).arg(&script).arg(&file).output().expect("run ha_validate.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "Home Assistant rejected discovery payloads:\n{text}");
}

/// The Debian unstable chroot scripts/ha-venv made, holding Home Assistant's venvs.
pub fn ha_chroot() -> Option<PathBuf> {
    let root =
        PathBuf::from(std::env::var("DISKWATCH_HA_CHROOT").unwrap_or_else(|_| "/var/lib/diskwatch-test/sid".into()));
    let venv = root.join(format!("opt/ha-{}/bin/python", ha_version()));
    if venv.exists() {
        return Some(root);
    }
    assert!(!super::in_ci(), "{} missing: CI must run scripts/ha-venv", venv.display());
    eprintln!("skipping: {} missing (run scripts/ha-venv)", venv.display());
    None
}

/// Home Assistant's current release, as scripts/ha-venv installs it.
pub fn ha_version() -> String {
    std::env::var("DISKWATCH_HA_VERSION").unwrap_or_else(|_| "2026.11.0".into())
}

/// Requirements of default integrations that do not build in the chroot (no Python headers
/// for 3.14): Home Assistant skips them, and only its voice pipeline misses them.
const SKIP_PIP: &str = "pymicro-vad,pyspeex-noise";

/// A real Home Assistant Core in the chroot, its config directory under the chroot's /tmp;
/// stopped by its PID on drop.
pub struct HomeAssistant {
    root: PathBuf,
    dir: tempfile::TempDir,
    /// The config directory as Home Assistant sees it (inside the chroot).
    inner_dir: String,
    pub http_port: u16,
    pub token: String,
    child: Option<Child>,
    /// Where its output (the log, at info level) goes: one file per start.
    starts: u32,
    /// When the current process was spawned.
    pub started_at: Instant,
}

impl HomeAssistant {
    /// Writes a config (MQTT on `mqtt_port`, an owner and a token) with tests/ha_real.py and
    /// starts Home Assistant; returns once its MQTT client is connected.
    pub fn start(root: &Path, mqtt_port: u16) -> Self {
        let dir = tempfile::Builder::new().prefix("ha-real-").tempdir_in(root.join("tmp")).expect("tempdir in chroot");
        let inner_dir = format!("/tmp/{}", dir.path().file_name().expect("name").to_string_lossy());
        let http_port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let python = ha_python().expect("Home Assistant's python wrapper");
        let out = Command::new(&python)
            .arg(script())
            .args(["setup", &inner_dir, &mqtt_port.to_string(), &http_port.to_string()])
            .output()
            .expect("run ha_real.py setup");
        assert!(out.status.success(), "ha_real.py setup: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut this = Self {
            root: root.to_path_buf(),
            dir,
            inner_dir,
            http_port,
            token,
            child: None,
            starts: 0,
            started_at: Instant::now(),
        };
        this.spawn();
        this
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("output-{start}.log"))
    }

    /// Everything Home Assistant logged, all starts.
    pub fn log(&self) -> String {
        (1..=self.starts).map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default()).collect()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "Home Assistant already running");
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("HA log file");
        let python = format!("/opt/ha-{}/bin/python", ha_version());
        self.started_at = Instant::now();
        // chroot and env exec the next program: the PID is Home Assistant's.
        let child = Command::new("chroot")
            .arg(&self.root)
            .args(["env", "-u", "PYTHONPATH", "-u", "PYTHONHOME", &python, "-m", "homeassistant", "-c"])
            .arg(&self.inner_dir)
            .args(["--skip-pip-packages", SKIP_PIP])
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start Home Assistant in its chroot");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(180);
        let path = self.log_path(self.starts);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("MQTT client initialized") {
                break;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("Home Assistant exited ({status}):\n{}", tail(&text, 40));
            }
            assert!(Instant::now() < deadline, "Home Assistant's MQTT never connected:\n{}", tail(&text, 40));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops Home Assistant as systemd would (SIGTERM; SIGKILL after 60 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A websocket client of this Home Assistant (tests/ha_real.py client).
    pub async fn client(&self) -> HaClient {
        HaClient::connect(self.http_port, &self.token).await
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha_real.py")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A state change as Home Assistant fired it.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub entity_id: String,
    pub state: Option<String>,
    /// When Home Assistant fired it (Unix seconds).
    pub at: f64,
}

/// Home Assistant's websocket API through tests/ha_real.py (aiohttp, in HA's venv): commands
/// in, answers out, and every state change recorded as it is fired.
pub struct HaClient {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::sync::mpsc::Receiver<Value>,
    pub changes: Arc<Mutex<Vec<StateChange>>>,
}

impl HaClient {
    async fn connect(port: u16, token: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let python = ha_python().expect("Home Assistant's python wrapper");
        let mut child = tokio::process::Command::new(python)
            .arg(script())
            .args(["client", &port.to_string(), token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run ha_real.py client");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, answers) = tokio::sync::mpsc::channel(16);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let recorded = changes.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                if let Some(e) = v.get("event") {
                    recorded.lock().unwrap().push(StateChange {
                        entity_id: e["entity_id"].as_str().unwrap_or_default().to_owned(),
                        state: e["state"].as_str().map(str::to_owned),
                        at: e["at"].as_f64().unwrap_or_default(),
                    });
                } else if v.get("id").is_none() {
                    // {"ready": true}, or {"error": ...} when authentication failed.
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(v);
                    }
                } else if tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        let hello =
            tokio::time::timeout(Duration::from_secs(30), ready).await.expect("websocket ready").expect("ready");
        assert!(hello.get("ready").is_some(), "websocket: {hello}");
        Self { child, stdin, answers, changes }
    }

    /// Sends one command (`{"type": ...}`) and returns its `result`.
    pub async fn call(&mut self, command: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write command");
        let answer = tokio::time::timeout(Duration::from_secs(30), self.answers.recv())
            .await
            .expect("answer in time")
            .expect("client alive");
        assert_eq!(answer["success"], true, "{command}: {answer}");
        answer["result"].clone()
    }

    /// `get_states`: entity id → (state, attributes).
    pub async fn states(&mut self) -> BTreeMap<String, (String, Value)> {
        let all = self.call(serde_json::json!({"type": "get_states"})).await;
        all.as_array()
            .expect("states")
            .iter()
            .map(|s| {
                let id = s["entity_id"].as_str().unwrap_or_default().to_owned();
                (id, (s["state"].as_str().unwrap_or_default().to_owned(), s["attributes"].clone()))
            })
            .collect()
    }

    /// When `entity_id` first turned `state` at or after `since` (Unix seconds).
    pub fn changed_at(&self, entity_id: &str, state: &str, since: f64) -> Option<f64> {
        let changes = self.changes.lock().unwrap();
        changes
            .iter()
            .find(|c| c.entity_id == entity_id && c.state.as_deref() == Some(state) && c.at >= since)
            .map(|c| c.at)
    }

    pub async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
