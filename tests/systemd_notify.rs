//! The real binary under a fake service manager: READY=1 with a STATUS= line
//! once started, WATCHDOG=1 pings from the core loop, STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn notifies_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // WATCHDOG_PID must be the agent's own pid: the shell execs the agent, keeping its pid.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run --listen \"$1\"")
        .arg(env!("CARGO_BIN_EXE_diskwatch"))
        .arg(format!("127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env("DISKWATCH_STATE_DIR", dir.path().join("state"))
        .env("DISKWATCH_MQTT__ENABLED", "false")
        .env("DISKWATCH_UDEV__ENABLED", "false")
        .env("DISKWATCH_MOUNTS__ENABLED", "false")
        .env("DISKWATCH_SHARES__ENABLED", "false")
        .spawn()
        .expect("start diskwatch");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    struct Stop(nix::unistd::Pid);
    impl Drop for Stop {
        fn drop(&mut self) {
            // Only the agent this test started, by its PID.
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::SIGKILL);
        }
    }
    let _stop = Stop(pid);

    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pings = 0;
    while pings < 3 {
        assert!(Instant::now() < deadline, "no READY and 3 watchdog pings; got {messages:#?}");
        let n = socket.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("WATCHDOG=1") && messages.iter().any(|m: &String| m.contains("READY=1")) {
            pings += 1;
        }
        messages.push(msg);
    }
    let ready = messages.iter().find(|m| m.contains("READY=1")).expect("READY=1");
    assert!(ready.contains("STATUS=watching") && ready.contains(&format!("127.0.0.1:{port}")), "{ready}");

    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no STOPPING=1; got {messages:#?}");
        let n = socket.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("STOPPING=1") {
            break;
        }
        messages.push(msg);
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
