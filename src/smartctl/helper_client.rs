//! The agent's side of the smartctl helper ([`super::helper`]): one connection per run, the
//! request out, the answer back. The run's timeout covers connecting, asking and the answer; on
//! timeout the disk's slot stays taken until the helper closes the connection, which it does
//! once its smartctl is really gone, as [`super::run`] keeps it for a child of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::debug;

use super::helper::{Request, Response};
use super::run::{Output, RunError, Slot, MAX_OUTPUT};

/// The longest answer read: stdout and stderr, each capped by the helper, JSON-escaped.
const MAX_ANSWER: u64 = 6 * MAX_OUTPUT;

/// What error messages call the helper's smartctl.
fn through(socket: &Path) -> PathBuf {
    PathBuf::from(format!("smartctl (through {})", socket.display()))
}

pub(super) async fn run(socket: &Path, args: &[String], timeout: Duration, slot: Slot) -> Result<Output, RunError> {
    let request = Request { args: args.to_vec(), timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) };
    let mut line = serde_json::to_vec(&request)
        .map_err(|e| RunError::Read { path: through(socket), source: std::io::Error::other(e) })?;
    line.push(b'\n');
    let mut stream = match tokio::time::timeout(timeout, UnixStream::connect(socket)).await {
        Err(_) => return Err(RunError::Timeout { path: through(socket), timeout }),
        Ok(Err(source)) => {
            let absent = matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused);
            let socket = socket.to_path_buf();
            return Err(if absent {
                RunError::HelperAbsent { socket, source }
            } else {
                RunError::Connect { socket, source }
            });
        }
        Ok(Ok(stream)) => stream,
    };
    let work = async {
        stream.write_all(&line).await?;
        let mut buf = Vec::new();
        // The helper answers once and closes: the answer ends at end of file.
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let answer = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(buf)) => {
            drop(slot);
            buf
        }
        Ok(Err(source)) => return Err(RunError::Read { path: through(socket), source }),
        Err(_) => {
            // The helper kills its smartctl at the same timeout and closes the connection when
            // the process is gone; until then the disk's slot stays taken.
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                drop(slot);
            });
            return Err(RunError::Timeout { path: through(socket), timeout });
        }
    };
    let response: Response = serde_json::from_slice(&answer).map_err(|e| RunError::Read {
        path: through(socket),
        source: std::io::Error::other(format!("not an answer ({e}): {:?}", String::from_utf8_lossy(&answer))),
    })?;
    match response {
        Response::Exited { status, stdout, stderr } => {
            if !stderr.is_empty() {
                debug!(stderr = %stderr.trim_end(), "smartctl (helper) wrote to stderr");
            }
            Ok(Output { status, stdout })
        }
        Response::Signalled => Err(RunError::Signalled { path: through(socket) }),
        Response::Rejected { reason } => Err(RunError::Refused { reason }),
        Response::Spawn { message } => Err(RunError::Helper { message }),
        Response::Timeout => Err(RunError::Timeout { path: through(socket), timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::helper_serve::{serve, HelperConfig};
    use super::super::Runner;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A listener that serves each connection with the real helper code in a thread, as
    /// systemd's `Accept=yes` starts one helper per connection.
    fn helper(dir: &Path, smartctl: PathBuf) -> PathBuf {
        let socket = dir.join("smartctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let config = HelperConfig { smartctl, max_timeout: Duration::from_secs(30), sys: PathBuf::from("/sys") };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let config = config.clone();
                std::thread::spawn(move || {
                    let input = conn.try_clone().unwrap();
                    let _ = serve(input, conn, &config);
                });
            }
        });
        socket
    }

    #[tokio::test]
    async fn runs_through_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        let socket = helper(dir.path(), script(dir.path(), "smartctl", "echo \"$@\"; echo err >&2; exit 4"));
        let r = Runner::new("smartctl".into(), Duration::from_secs(5)).via_socket(Some(socket));
        let out = r.run("--version", &["--json".into(), "--version".into()]).await.unwrap();
        assert_eq!(out.status, 4);
        assert_eq!(out.stdout, "--json --version\n");
        assert_eq!(r.in_flight(), 0);
        // Refused by the allow-list: an error naming the reason, nothing run.
        let e = r.run("sda", &["--json".into(), "-s".into(), "on".into(), "/dev/sda".into()]).await.unwrap_err();
        assert!(matches!(&e, RunError::Refused { reason } if reason.contains("-s")), "{e}");
        assert_eq!(r.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_missing_socket_says_how_to_enable_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner::new("smartctl".into(), Duration::from_secs(5)).via_socket(Some(dir.path().join("none.sock")));
        let e = r.run("sda", &["--version".into()]).await.unwrap_err();
        assert!(matches!(e, RunError::HelperAbsent { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("none.sock") && text.contains("systemctl enable --now diskwatch-smartctl.socket"),
            "{text}"
        );
        assert_eq!(r.in_flight(), 0);
        // A socket file nobody listens on (the socket unit stopped) is the same.
        let bound = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&bound).unwrap());
        let r = r.via_socket(Some(bound));
        assert!(matches!(r.run("sda", &["--version".into()]).await, Err(RunError::HelperAbsent { .. })));
    }

    #[tokio::test]
    async fn timeout_holds_the_slot_until_the_helper_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let socket = helper(dir.path(), script(dir.path(), "smartctl", "exec sleep 2"));
        let r = Runner::new("smartctl".into(), Duration::from_millis(300)).via_socket(Some(socket));
        let args = ["--version".to_owned()];
        let (a, b) = tokio::join!(r.run("--version", &args), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.run("--version", &args).await
        });
        assert!(matches!(a, Err(RunError::Timeout { .. })), "{a:?}");
        assert!(matches!(b, Err(RunError::Busy)), "{b:?}");
        // The helper killed smartctl at the same timeout and closed: the slot is free again.
        for _ in 0..100 {
            if r.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(r.in_flight(), 0);
    }
}
