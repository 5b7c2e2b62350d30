//! `diskwatch smartctl-helper`: serves one request on one connection (systemd's `Accept=yes`
//! hands the connection over as standard input and output). Reads the request, checks it
//! against the allow-list ([`super::helper`]), runs smartctl with a clean environment and a
//! timeout, and writes the answer. Synchronous and short-lived: one process per request, no
//! runtime, nothing kept between requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::helper::{check_args, check_node, Request, Response, MAX_REQUEST};
use super::run::MAX_OUTPUT;

/// How the helper runs smartctl; the paths are arguments so that tests use their own.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// smartctl: a path, or a name looked up on [`SEARCH_PATH`]. Never taken from a request.
    pub smartctl: PathBuf,
    /// The longest run allowed whatever the request asks.
    pub max_timeout: Duration,
    /// sysfs root, for the whole-disk check of the node.
    pub sys: PathBuf,
}

/// The environment smartctl runs with: nothing of the helper's own but these.
const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Reads one request from `input`, answers on `output`. An I/O error on the connection is
/// returned (the caller logs it); everything about the request itself is an answer.
pub fn serve(input: impl Read, mut output: impl Write, config: &HelperConfig) -> std::io::Result<Response> {
    let response = match read_request(input) {
        Ok(request) => answer(&request, config),
        Err(reason) => Response::Rejected { reason },
    };
    let mut line = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    output.write_all(&line)?;
    output.flush()?;
    Ok(response)
}

fn read_request(input: impl Read) -> Result<Request, String> {
    let mut line = Vec::new();
    BufReader::new(input.take(MAX_REQUEST + 1))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.len() as u64 > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(&line).map_err(|e| format!("not a request: {e}"))
}

fn answer(request: &Request, config: &HelperConfig) -> Response {
    let checked = match check_args(&request.args) {
        Ok(c) => c,
        Err(reason) => return Response::Rejected { reason },
    };
    if let Some(node) = &checked.devnode {
        if let Err(reason) = check_node(Path::new(node), &config.sys) {
            return Response::Rejected { reason };
        }
    }
    let timeout = Duration::from_millis(request.timeout_ms).min(config.max_timeout);
    run(&config.smartctl, &request.args, timeout)
}

/// Runs smartctl; on timeout kills it and answers only once it is really gone (the agent keeps
/// the disk's slot until the connection closes, as it keeps it for a child of its own).
fn run(smartctl: &Path, args: &[String], timeout: Duration) -> Response {
    let spawned = Command::new(smartctl)
        .args(args)
        .env_clear()
        .env("PATH", SEARCH_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Response::Spawn { message: format!("cannot run {}: {e}", smartctl.display()) },
    };
    let capture = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = capture(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = capture(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Response::Spawn { message: format!("waiting for {}: {e}", smartctl.display()) },
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Response::Timeout;
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status.code() {
        Some(status) => Response::Exited { status, stdout, stderr },
        None => Response::Signalled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(smartctl: PathBuf) -> HelperConfig {
        HelperConfig { smartctl, max_timeout: Duration::from_secs(5), sys: PathBuf::from("/nonexistent-sys") }
    }

    fn serve_line(line: &str, config: &HelperConfig) -> (Response, String) {
        let mut out = Vec::new();
        let r = serve(line.as_bytes(), &mut out, config).unwrap();
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn runs_an_allowed_request_with_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let bin =
            script(dir.path(), "echoer", "echo \"$@\"; echo \"LC_ALL=$LC_ALL HOME=$HOME\"; echo oops >&2; exit 4");
        let (r, line) = serve_line(r#"{"args":["--json","--version"],"timeout_ms":5000}"#, &config(bin));
        let want = Response::Exited {
            status: 4,
            stdout: "--json --version\nLC_ALL=C HOME=\n".into(),
            stderr: "oops\n".into(),
        };
        assert_eq!(r, want);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), want);
    }

    #[test]
    fn refuses_without_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "toucher", &format!("touch '{}'", dir.path().join("ran").display()));
        let c = config(bin);
        for line in [
            r#"{"args":["--json","-s","on","/dev/sda"],"timeout_ms":5000}"#,
            r#"{"args":["--json","-a","/dev/null"],"timeout_ms":5000}"#,
            r#"{"args":["--json","-a","/dev/../etc/passwd"],"timeout_ms":5000}"#,
            r#"{"args":["--json","--version"],"timeout_ms":5000,"smartctl":"/bin/sh"}"#,
            "not json\n",
            "",
        ] {
            let (r, _) = serve_line(line, &c);
            assert!(matches!(r, Response::Rejected { .. }), "{line}: {r:?}");
        }
        let long = format!(r#"{{"args":["{}"],"timeout_ms":1}}"#, "a".repeat(MAX_REQUEST as usize));
        assert!(matches!(serve_line(&long, &c).0, Response::Rejected { reason } if reason.contains("longer")));
        assert!(!dir.path().join("ran").exists(), "smartctl ran for a refused request");
    }

    #[test]
    fn times_out_kills_and_reports_missing_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(script(dir.path(), "sleeper", "exec sleep 30"));
        let start = Instant::now();
        let (r, _) = serve_line(r#"{"args":["--version"],"timeout_ms":200}"#, &c);
        assert_eq!(r, Response::Timeout);
        assert!(start.elapsed() < Duration::from_secs(10));
        // The helper's own cap wins over a longer request.
        c.max_timeout = Duration::from_millis(200);
        assert_eq!(serve_line(r#"{"args":["--version"],"timeout_ms":600000}"#, &c).0, Response::Timeout);
        let c = config(dir.path().join("missing"));
        let (r, _) = serve_line(r#"{"args":["--version"],"timeout_ms":1000}"#, &c);
        assert!(matches!(&r, Response::Spawn { message } if message.contains("missing")), "{r:?}");
        let c = config(script(dir.path(), "killer", "kill -9 $$"));
        assert_eq!(serve_line(r#"{"args":["--version"],"timeout_ms":5000}"#, &c).0, Response::Signalled);
    }
}
