//! MQTT over TLS through the real binary: a Mosquitto TLS listener that requires client
//! certificates, with a CA, a server and a client certificate made here by openssl. The agent
//! connects with `mqtts://`, `mqtt.ca_file`, `mqtt.client_cert` and `mqtt.client_key`; a wrong
//! CA or a missing client certificate keeps it out, and says why in its health.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (apt package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `name` (name.key, name.pem) and, signed by it, a leaf `leaf` with `san`.
fn ca(dir: &Path, name: &str) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{name}.key")]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-sha256",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    // PKCS#8 keys (what `genpkey` writes): the form most tools hand out.
    openssl(
        dir,
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &format!("{name}.key")],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed by its PID on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path(), "ca");
        ca(dir.path(), "other-ca");
        leaf(dir.path(), "ca", "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        leaf(dir.path(), "ca", "client", "extendedKeyUsage=clientAuth\n");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Mosquitto with one TLS listener that requires a client certificate from the CA. It keeps
    /// running as root (`user root`): dropped to `mosquitto` it could not read the 0600 key in
    /// this test's private directory.
    fn broker(&self) -> (Proc, u16) {
        let port = free_port();
        let conf = self.path("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 cafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n\
                 user root\n\
                 log_dest stderr\nlog_type error\n",
                ca = self.path("ca.pem").display(),
                cert = self.path("server.pem").display(),
                key = self.path("server.key").display(),
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let broker = Proc(child.expect("run mosquitto (apt package mosquitto)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        (broker, port)
    }

    /// The agent (sources off) pointed at the broker with `tls` TOML lines under `[mqtt]`.
    fn agent(&self, broker_port: u16, tls: &str) -> (Proc, u16, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        let http = free_port();
        let conf = state.path().join("config.toml");
        std::fs::write(
            &conf,
            format!(
                "node_id = \"tls\"\nstate_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
                 [udev]\nenabled = false\n[mounts]\nenabled = false\n[shares]\nenabled = false\n\
                 [mqtt]\nurl = \"mqtts://localhost:{broker_port}\"\n{tls}\n",
                state.path().join("s").display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start diskwatch");
        (Proc(child), http, state)
    }

    fn tls_lines(&self, ca: &str, with_client: bool) -> String {
        let mut lines = format!("ca_file = \"{}\"\n", self.path(ca).display());
        if with_client {
            lines += &format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                self.path("client.pem").display(),
                self.path("client.key").display()
            );
        }
        lines
    }
}

/// The MQTT sink's entry of the agent's health, once it settles on `want` (or the last seen).
async fn mqtt_health(http: u16, want: &str, wait: Duration) -> serde_json::Value {
    let deadline = Instant::now() + wait;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/api/v1/health")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if let Some(sink) = v["sinks"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "mqtt")) {
                    last = sink.clone();
                    if sink["status"] == want {
                        return last;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// A retained message read back over TLS with the client certificate (mosquitto_sub).
fn retained(pki: &Pki, port: u16, topic: &str) -> String {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-t", topic, "-C", "1", "-W", "10"])
        .args(["--cafile", pki.path("ca.pem").to_str().unwrap()])
        .args(["--cert", pki.path("client.pem").to_str().unwrap(), "--key", pki.path("client.key").to_str().unwrap()])
        .output()
        .expect("run mosquitto_sub (apt package mosquitto-clients)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn agent_publishes_over_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let (_broker, port) = pki.broker();
    let (_agent, http, _state) = pki.agent(port, &pki.tls_lines("ca.pem", true));
    let sink = mqtt_health(http, "connected", Duration::from_secs(20)).await;
    assert_eq!(sink["status"], "connected", "{sink}");
    assert_eq!(retained(&pki, port, "diskwatch/tls/availability"), "online");
    let discovery = retained(&pki, port, "homeassistant/device/diskwatch_tls/config");
    let doc: serde_json::Value = serde_json::from_str(&discovery).expect("discovery JSON over TLS");
    assert!(doc["cmps"].is_object(), "{doc}");
}

#[tokio::test]
async fn a_wrong_ca_or_no_client_certificate_keeps_the_agent_out() {
    let pki = Pki::new();
    let (_broker, port) = pki.broker();
    // The broker's certificate is not from this CA: the agent must not trust it.
    let (_agent, http, _state) = pki.agent(port, &pki.tls_lines("other-ca.pem", true));
    let sink = mqtt_health(http, "disconnected", Duration::from_secs(20)).await;
    assert_eq!(sink["status"], "disconnected", "{sink}");
    let message = sink["message"].as_str().unwrap_or("").to_lowercase();
    assert!(message.contains("certificate") || message.contains("tls"), "{sink}");
    drop(_agent);
    // Right CA, but the broker requires a client certificate the agent does not have.
    let (_agent, http, _state) = pki.agent(port, &pki.tls_lines("ca.pem", false));
    let sink = mqtt_health(http, "connected", Duration::from_secs(8)).await;
    assert_ne!(sink["status"], "connected", "{sink}");
    // Nothing of the agent reached the broker.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-t", "diskwatch/#", "-C", "1", "-W", "2"])
        .args(["--cafile", pki.path("ca.pem").to_str().unwrap()])
        .args(["--cert", pki.path("client.pem").to_str().unwrap(), "--key", pki.path("client.key").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn check_config_names_a_bad_pem_file() {
    let pki = Pki::new();
    let state = tempfile::tempdir().unwrap();
    let conf = state.path().join("c.toml");
    let check = |tls: &str| {
        std::fs::write(
            &conf,
            format!("state_dir = \"{}\"\n[mqtt]\nurl = \"mqtts://localhost:1\"\n{tls}", state.path().display()),
        )
        .unwrap();
        let out = Command::new(BIN).args(["check-config", "--config", conf.to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A key where the certificate belongs: refused at start-up with the key and the file's name.
    let swapped = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        pki.path("ca.pem").display(),
        pki.path("client.key").display(),
        pki.path("client.key").display()
    );
    let (code, stderr) = check(&swapped);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("mqtt.client_cert") && stderr.contains("client.key"), "{stderr}");
    let (code, stderr) = check(&format!("client_cert = \"{}\"\n", pki.path("client.pem").display()));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("mqtt.client_key"), "{stderr}");
    let (code, stderr) = check(&format!("ca_file = \"{}\"\n", pki.path("missing.pem").display()));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("mqtt.ca_file") && stderr.contains("missing.pem"), "{stderr}");
    let (code, stderr) = check(&pki.tls_lines("ca.pem", true));
    assert_eq!(code, Some(0), "{stderr}");
}
