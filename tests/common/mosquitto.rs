//! A real Mosquitto broker on a free loopback port (stopped by PID on drop),
//! an MQTT recorder built on rumqttc, and builders for storage objects.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diskwatch::model::{Disk, Mount, Partition, Protocol, Share, Usage};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// A Mosquitto process this test started; killed by its PID on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker on a free port of 127.0.0.1 without persistence.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// With `persistent`, sessions and retained messages survive a SIGKILL (saved every second),
    /// so a recorder's subscription outlives a broker restart.
    pub fn start_with(persistent: bool) -> Self {
        Self::start_configured(persistent, "")
    }

    /// `extra` is appended to the generated mosquitto.conf (e.g. `set_tcp_nodelay true`).
    pub fn start_configured(persistent: bool, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = dir.path().join("mosquitto.conf");
        let persistence = if persistent {
            // Started as root, Mosquitto drops to its own user: it must be able to write here.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod broker dir");
            format!("persistence true\npersistence_location {}/\nautosave_interval 1\n", dir.path().display())
        } else {
            "persistence false\n".to_owned()
        };
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}log_dest stderr\nlog_type error\n{extra}"
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut this = Self { port, child: None, config, _dir: dir };
        this.restart();
        this
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto (apt package mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    pub at: Instant,
}

/// Records every message on `filters`, resubscribing after reconnects; stops on drop.
pub struct Recorder {
    pub messages: Arc<Mutex<Vec<Received>>>,
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(port: u16, client_id: &str, filters: &[&str]) -> Self {
        Self::start_with(port, client_id, filters, true, QoS::AtLeastOnce).await
    }

    /// With `clean_session` false the broker keeps the subscription (and queues QoS 1
    /// messages) while this client is away.
    pub async fn start_with(port: u16, client_id: &str, filters: &[&str], clean_session: bool, qos: QoS) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_clean_session(clean_session);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        let task = {
            let messages = messages.clone();
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for f in &filters {
                                client.subscribe(f.clone(), qos).await.expect("subscribe");
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            messages.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                retain: p.retain,
                                at: Instant::now(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await.expect("subscribed in time").ok();
        Self { messages, client, task }
    }

    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// Waits until `check` holds on the messages so far, or panics after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, what: &str, check: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.messages.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; got {:#?}", self.last(20));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The latest payload seen on `topic`.
    pub fn latest(&self, topic: &str) -> Option<String> {
        self.messages.lock().unwrap().iter().rev().find(|m| m.topic == topic).map(|m| m.payload.clone())
    }

    fn last(&self, n: usize) -> Vec<Received> {
        let m = self.messages.lock().unwrap();
        m[m.len().saturating_sub(n)..].to_vec()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the broker retains under `filters` now, read by a fresh client (settles
/// when nothing new arrived for 300 ms). Empty payloads are not retained.
pub async fn retained(port: u16, filters: &[&str]) -> BTreeMap<String, String> {
    let id = format!("retained-{}", rand_suffix());
    let rec = Recorder::start(port, &id, filters).await;
    let mut last = (usize::MAX, Instant::now());
    loop {
        let n = rec.len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rec.all().into_iter().filter(|m| m.retain).map(|m| (m.topic, m.payload)).collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

// ---- storage objects for facts (derived fields are left for the state to fill) ----

pub fn disk(id: &str, kernel: &str, dev: &str, size: u64) -> Disk {
    Disk {
        id: id.into(),
        stable: true,
        kernel_name: kernel.into(),
        devpath: format!("/devices/virtual/block/{kernel}"),
        devnode: format!("/dev/{kernel}"),
        dev: dev.into(),
        vendor: Some("diskwatch".into()),
        model: Some("Test Disk".into()),
        serial: Some(format!("SER-{id}")),
        firmware: None,
        wwn: None,
        bus: Some("virtual".into()),
        size_bytes: size,
        removable: false,
        rotational: false,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
    }
}

pub fn partition(id: &str, disk_id: &str, kernel: &str, dev: &str, label: &str) -> Partition {
    Partition {
        id: id.into(),
        stable: true,
        kernel_name: kernel.into(),
        devpath: format!("/devices/virtual/block/x/{kernel}"),
        devnode: format!("/dev/{kernel}"),
        dev: dev.into(),
        disk_id: disk_id.into(),
        number: 1,
        size_bytes: 1 << 30,
        read_only: false,
        fs_type: Some("ext4".into()),
        fs_label: Some(label.into()),
        fs_uuid: Some(format!("uuid-{id}")),
        part_label: None,
        part_uuid: Some(id.into()),
        mounts: vec![],
        arrays: Vec::new(),
    }
}

pub fn mount(point: &str, source: &str, dev: &str, used_percent: f64) -> Mount {
    Mount {
        id: diskwatch::model::mount_id(point),
        mount_point: point.into(),
        source: source.into(),
        dev: dev.into(),
        fs_type: "ext4".into(),
        options: vec!["rw".into(), "relatime".into()],
        super_options: vec!["rw".into()],
        read_only: false,
        root: "/".into(),
        network: false,
        partition_id: None,
        disk_id: None,
        shares: vec![],
        usage: Some(Usage {
            total_bytes: 1 << 30,
            used_bytes: ((1u64 << 30) as f64 * used_percent / 100.0) as u64,
            available_bytes: ((1u64 << 30) as f64 * (100.0 - used_percent) / 100.0) as u64,
            percent: used_percent,
            inodes_total: 1000,
            inodes_used: 10,
            inodes_free: 990,
        }),
        stale: false,
        forecast: None,
        array_id: None,
        attention: None,
    }
}

pub fn share(name: &str, path: &str) -> Share {
    Share {
        id: Share::make_id(Protocol::Smb, name),
        protocol: Protocol::Smb,
        name: name.into(),
        path: path.into(),
        enabled: true,
        read_only: false,
        guest_ok: false,
        browseable: true,
        users: vec![],
        comment: None,
        special: None,
        clients: vec![],
        config_file: "/etc/samba/smb.conf".into(),
        resolved_path: path.into(),
        path_exists: true,
        mount_id: None,
        partition_id: None,
        disk_id: None,
        available: false,
    }
}
