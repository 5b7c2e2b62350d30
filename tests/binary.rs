//! The real binary: configuration errors (one line naming the key, exit 78),
//! the Go-style `-loglevel` flag, serving HTTP, and a clean stop on SIGTERM.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");

/// Runs the binary with a clean DISKWATCH_ environment plus `env`.
fn diskwatch(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DISKWATCH_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run diskwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join(format!("config-{}.toml", std::fs::read_dir(dir).unwrap().count()));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn configuration_errors_name_the_key_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--config".into(), config_file(dir.path(), "[http]\nlisen = \"x\"\n")],
            vec![],
            "http.lisen: unknown key",
        ),
        (
            vec!["--config".into(), config_file(dir.path(), "[events]\nring_size = \"big\"\n")],
            vec![],
            "events.ring_size: invalid type",
        ),
        (
            vec!["--config".into(), config_file(dir.path(), "[mounts]\nusage_interval = \"soon\"\n")],
            vec![],
            "mounts.usage_interval:",
        ),
        (
            vec!["--config".into(), "/nonexistent/diskwatch.toml".into()],
            vec![],
            "cannot read config file /nonexistent/diskwatch.toml",
        ),
        (vec!["--config".into(), dir.path().to_str().unwrap().into()], vec![], "cannot read config file"),
        (vec![], vec![("DISKWATCH_HTTP__LISTEN", "not-an-address")], "http.listen:"),
        (vec![], vec![("DISKWATCH_UDEV__SOURCE", "magic")], "udev.source:"),
        (vec![], vec![("DISKWATCH_MQTT__URL", "http://broker")], "mqtt.url:"),
        (vec!["--log-level".into(), "chatty".into()], vec![], "log_level:"),
    ];
    for (args, env, expected) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push("check-config");
        let (code, _, stderr) = diskwatch(&all, &env);
        assert_eq!(code, 78, "{all:?} {env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("diskwatch: configuration error: "), "{stderr}");
        assert!(lines[0].contains(expected), "{all:?} {env:?}: expected {expected:?} in {stderr}");
    }
    // `run` (the default) refuses a bad configuration the same way.
    let (code, _, stderr) = diskwatch(&[], &[("DISKWATCH_EVENTS__RING_SIZE", "0")]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("events.ring_size"), "{stderr}");
}

#[test]
fn check_config_accepts_the_example_and_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let (code, stdout, stderr) = diskwatch(&["check-config", "--config", example], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    let (code, _, stderr) = diskwatch(&["-loglevel", "debug", "check-config"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) =
        diskwatch(&["-loglevel=warn", "check-config"], &[("DISKWATCH_MQTT__URL", "mqtt://broker:1883")]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = diskwatch(&["version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), format!("diskwatch {}", env!("CARGO_PKG_VERSION")));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn runs_serves_and_stops_cleanly_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["-loglevel", "debug", "--listen", &format!("127.0.0.1:{port}")])
        .env("DISKWATCH_STATE_DIR", state.path())
        .env("DISKWATCH_MQTT__ENABLED", "false")
        .env("DISKWATCH_UDEV__ENABLED", "false")
        .env("DISKWATCH_MOUNTS__ENABLED", "false")
        .env("DISKWATCH_SHARES__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        if let Some(text) = http_get(port, "/api/v1/health") {
            break text;
        }
        assert!(Instant::now() < deadline, "agent never served HTTP");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stopped = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let took = stopped.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("event emitted") && log.contains("agent.stopping"), "debug log shows the event flow: {log}");
    let journal = std::fs::read_to_string(state.path().join("events.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "agent.stopping", "journal flushed through the final event");
}
