//! Packaging: the systemd unit passes `systemd-analyze verify`, the Home
//! Assistant add-on validates and its run script writes a configuration the
//! agent accepts, and the .deb builds, installs, runs and purges cleanly.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unit with ExecStart pointing at the built binary (verify checks that it exists).
fn unit_for_verify(dir: &Path) -> PathBuf {
    let unit = fs::read_to_string(repo().join("systemd/diskwatch.service")).expect("read the unit");
    assert!(unit.contains("ExecStart=/usr/bin/diskwatch run"), "the unit runs the installed binary");
    let path = dir.join("diskwatch.service");
    fs::write(&path, unit.replace("/usr/bin/diskwatch", BIN)).expect("write the unit");
    path
}

#[test]
fn systemd_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_verify(dir.path());
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Warnings count as failures: verify prints them but still exits 0.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify warned:\n{stderr}");

    let unit_text = fs::read_to_string(&unit).expect("read");
    for required in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=diskwatch",
        "ConfigurationDirectory=diskwatch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        // SMART's capabilities are the smartctl helper's (docs/health.md), not the agent's.
        "\nCapabilityBoundingSet=CAP_DAC_READ_SEARCH\n",
        "\nEnvironment=DISKWATCH_HEALTH__SMARTCTL_SOCKET=/run/diskwatch/smartctl.sock\n",
        // Wake attribution (docs/sleep.md, "Permissions").
        "\nReadWritePaths=-/sys/kernel/tracing/instances\n",
        "\nProtectProc=default\n",
        "\nDevicePolicy=closed\nDeviceAllow=block-* r\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit_text.contains(required), "the unit lacks {required}");
    }
    // Read-only block devices are all smartctl opens; one bounding set, no other device.
    assert_eq!(unit_text.matches("CapabilityBoundingSet=").count(), 1);
    assert_eq!(unit_text.matches("DeviceAllow=").count(), 1);

    let security = run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&unit));
    let report = text(&security.stdout);
    let score = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("no exposure line");
    eprintln!("systemd-analyze security: {score}");
    let value: f64 = score
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure score from:\n{report}"));
    assert!(value < 4.0, "exposure {value} is above 'OK': {score}");
}

/// `systemd-analyze security --offline=yes` of `unit` in `dir`: the exposure score.
fn offline_exposure(dir: &Path, unit: &str) -> f64 {
    let out =
        run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager", unit]).current_dir(dir));
    let report = text(&out.stdout);
    report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}{}", text(&out.stderr)))
}

/// The smartctl helper's socket and template verify, the template holds exactly SMART's two
/// capabilities and no network, and rates below the agent's unit (docs/health.md).
#[test]
fn smartctl_helper_units_verify_and_are_stricter_than_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let helper = fs::read_to_string(repo().join("systemd/helper/diskwatch-smartctl@.service")).expect("read");
    assert!(helper.contains("ExecStart=/usr/bin/diskwatch smartctl-helper "), "the helper runs the installed binary");
    for required in [
        "\nCapabilityBoundingSet=CAP_SYS_RAWIO CAP_SYS_ADMIN\n",
        "\nPrivateNetwork=yes\n",
        "\nIPAddressDeny=any\n",
        "\nRestrictAddressFamilies=none\n",
        "\nDevicePolicy=closed\nDeviceAllow=block-* r\n",
        "\nStandardInput=socket\n",
    ] {
        assert!(helper.contains(required), "the helper unit lacks {required:?}");
    }
    // An instance name: verify and security load a template only through one.
    let built = helper.replace("/usr/bin/diskwatch", BIN);
    for name in ["diskwatch-smartctl@.service", "diskwatch-smartctl@check.service"] {
        fs::write(dir.path().join(name), &built).expect("write the helper");
    }
    let socket = fs::read_to_string(repo().join("systemd/helper/diskwatch-smartctl.socket")).expect("read");
    for required in ["\nListenStream=/run/diskwatch/smartctl.sock\n", "\nSocketMode=0600\n", "\nAccept=yes\n"] {
        assert!(socket.contains(required), "the socket unit lacks {required:?}");
    }
    fs::write(dir.path().join("diskwatch-smartctl.socket"), &socket).expect("write the socket");
    for unit in ["./diskwatch-smartctl.socket", "./diskwatch-smartctl@check.service"] {
        let out = run(Command::new("systemd-analyze").args(["verify", unit]).current_dir(dir.path()));
        let stderr = text(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {unit}:\n{stderr}");
    }
    let helper_score = offline_exposure(dir.path(), "diskwatch-smartctl@check.service");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    unit_for_verify(agent_dir.path());
    let agent_score = offline_exposure(agent_dir.path(), "diskwatch.service");
    eprintln!("systemd-analyze security --offline=yes: helper {helper_score}, agent {agent_score}");
    assert!(helper_score < agent_score, "the helper ({helper_score}) is not stricter than the agent ({agent_score})");
}

fn python() -> &'static str {
    // Debian's interpreter, where python3-yaml and python3-voluptuous are installed by scripts/setup.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn check_addon(dir: &Path) -> Output {
    run(Command::new(python()).arg(repo().join("packaging/homeassistant/check_addon.py")).arg(dir))
}

#[test]
fn ha_addon_config_validates_against_the_supervisor_schema() {
    let addon = repo().join("packaging/homeassistant");
    let out = check_addon(&addon);
    assert!(out.status.success(), "add-on invalid:\n{}{}", text(&out.stdout), text(&out.stderr));

    // The checker must reject what the Supervisor rejects.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("addon");
    assert!(Command::new("cp").arg("-r").arg(&addon).arg(&copy).status().expect("cp").success());
    let config = fs::read_to_string(copy.join("config.yaml")).expect("read");
    for (broken, why) in [
        (config.replace("slug: diskwatch\n", ""), "slug"),
        (config.replace("\"mqtt:want\"", "\"mqtt:maybe\""), "services"),
        (config.replace("log_level: info\n", "log_level: loud\n"), "log_level"),
        (config.replace("  api_on_lan: bool\n", ""), "api_on_lan"),
        (config.replace("boot: auto", "boot: sometimes"), "boot"),
        // The Supervisor ignores a device list beside full_access (and warns): so does the check.
        (config.replace("privileged:\n", "full_access: true\nprivileged:\n"), "full_access"),
        (config.replace("  - /dev/sdz\n", "  - /dev/sdz:/dev/sdz:rwm\n"), "devices"),
    ] {
        fs::write(copy.join("config.yaml"), &broken).expect("write");
        let out = check_addon(&copy);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "a config.yaml without a valid {why} passed");
        assert!(stderr.contains(why), "the error does not name {why}: {stderr}");
    }
}

/// The rating check_addon.py computes with the Supervisor's rules for the add-on in `dir`.
fn addon_rating(dir: &Path) -> u32 {
    let out = check_addon(dir);
    assert!(out.status.success(), "add-on invalid:\n{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    stdout
        .rsplit_once("security rating ")
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rating in: {stdout}"))
}

/// What the store shows stays in step with what the add-on is: its version heads the
/// changelog, which names the agent it runs (Cargo.toml's version), the docs name it too and
/// document every option, and the ratings the docs state are the ones the Supervisor's rules give.
#[test]
fn ha_addon_version_changelog_and_docs_in_step() {
    let addon = repo().join("packaging/homeassistant");
    let config = fs::read_to_string(addon.join("config.yaml")).expect("read config.yaml");
    let version = config
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("config.yaml has a version");
    let changelog = fs::read_to_string(addon.join("CHANGELOG.md")).expect("read CHANGELOG.md");
    let (top, rest) = changelog.split_once("\n## ").and_then(|(_, r)| r.split_once('\n')).expect("a changelog entry");
    assert_eq!(top.trim(), version, "the changelog's newest entry is not the add-on's version");
    let entry = rest.split("\n## ").next().unwrap_or_default();
    let agent = env!("CARGO_PKG_VERSION");
    assert!(entry.contains(&format!("Agent: diskwatch {agent}.")), "the {version} entry does not name agent {agent}");
    let docs = fs::read_to_string(addon.join("DOCS.md")).expect("read DOCS.md");
    assert!(docs.contains(&format!("runs the diskwatch agent {agent}")), "DOCS.md does not name agent {agent}");

    // Every option in the schema has a row in the docs' options table.
    let schema = config.split("\nschema:\n").nth(1).expect("a schema");
    for key in schema.lines().filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_once(':')).map(|(k, _)| k)) {
        assert!(
            docs.lines().any(|l| l.starts_with('|') && l.contains(&format!("`{key}`"))),
            "option {key} is not in DOCS.md's table"
        );
    }

    // The ratings in the docs' SMART table are the computed ones.
    let plain = addon_rating(&addon);
    let dir = tempfile::tempdir().expect("tempdir");
    let variant = dir.path().join("diskwatch_actions");
    let out = run(Command::new(python()).arg(addon.join("actions_variant.py")).arg(&variant));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let full = addon_rating(&variant);
    assert_eq!((plain, full), (5, 1), "ratings changed: update DOCS.md and this test");
    let row = |marker: &str| docs.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("no row {marker}"));
    assert!(row("(this add-on)").contains(&format!("| **{plain}** |")), "{}", row("(this add-on)"));
    assert!(
        row("**diskwatch (with actions)**").contains(&format!("| {full} |")),
        "{}",
        row("**diskwatch (with actions)**")
    );
    assert!(entry.contains(&format!("Security rating {plain}")), "the changelog does not state rating {plain}");

    // SMART reaches whole SATA/SAS/USB disks only: no partitions, no NVMe (that needs SYS_ADMIN).
    let devices: Vec<&str> = config.lines().filter_map(|l| l.strip_prefix("  - /dev/")).collect();
    assert_eq!(devices.len(), 26, "{devices:?}");
    assert!(devices.iter().all(|d| d.len() == 3 && d.starts_with("sd")), "{devices:?}");
}

/// Runs the add-on's run script as `check-config`, with its options file and, when given,
/// the Supervisor's MQTT service from a stub of the Supervisor API (tests/common/addon.rs);
/// returns (exit status, written configuration, log).
fn run_addon_script(options: &str, mqtt_service: Option<&str>) -> (std::process::ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options_path = dir.path().join("options.json");
    fs::write(&options_path, options).expect("write options");
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("packaging/homeassistant/rootfs/run.sh"))
        .env("ADDON_OPTIONS", &options_path)
        .env("ADDON_CONFIG_PATH", dir.path().join("diskwatch.toml"))
        .env("ADDON_STATE_DIR", dir.path().join("state"))
        .env("ADDON_BIN", BIN)
        .env("ADDON_COMMAND", "check-config")
        .env_remove("SUPERVISOR_TOKEN")
        .env_remove("SUPERVISOR_API");
    let _stub = mqtt_service.map(|service| {
        let service: serde_json::Value = serde_json::from_str(service).expect("service JSON");
        let stub = common::addon::SupervisorStub::start("addon-token", vec![("/services/mqtt", service)]);
        cmd.env("SUPERVISOR_TOKEN", "addon-token").env("SUPERVISOR_API", stub.url());
        stub
    });
    let out = run(&mut cmd);
    let config = fs::read_to_string(dir.path().join("diskwatch.toml")).unwrap_or_default();
    (out.status, config, text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn ha_run_script_writes_a_configuration_the_agent_accepts() {
    // Defaults plus the Supervisor's MQTT service (with a password that needs escaping).
    let (status, config, log) = run_addon_script(
        r#"{"log_level":"debug","emit_initial":false,"include_loop_devices":true,"api_on_lan":false,"discovery_prefix":"homeassistant"}"#,
        Some(r#"{"host":"core-mosquitto","port":1883,"ssl":false,"username":"addons","password":"p\"w\\x"}"#),
    );
    assert!(status.success(), "check-config rejected:\n{config}\n{log}");
    assert!(log.contains("configuration OK"), "{log}");
    assert!(config.contains(r#"url = "mqtt://core-mosquitto:1883""#), "{config}");
    assert!(config.contains(r#"password = "p\"w\\x""#), "{config}");
    assert!(config.contains(r#"include = ["loop*"]"#), "{config}");
    assert!(config.contains(r#"listen = "172.30.32.1:8377""#), "{config}");
    // Only the ingress proxy may ask, without a token.
    assert!(config.contains("allow_anonymous = true\nallow_from = [\"172.30.32.2\"]"), "{config}");

    // On the LAN the token is required: without one the script stops before the agent runs.
    let (status, _, log) = run_addon_script(
        r#"{"log_level":"info","emit_initial":false,"include_loop_devices":false,"api_on_lan":true,"discovery_prefix":"ha"}"#,
        None,
    );
    assert!(!status.success());
    assert!(log.contains("api_on_lan needs api_token"), "{log}");
    // A token shorter than the agent accepts is refused by the agent itself (78).
    let (status, _, log) = run_addon_script(
        r#"{"log_level":"info","emit_initial":false,"include_loop_devices":false,"api_on_lan":true,"api_token":"short","discovery_prefix":"ha"}"#,
        None,
    );
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("http.auth_token_file") && !log.contains("short\""), "{log}");

    // A custom broker wins over the service; no service and no broker turns MQTT off.
    let (status, config, log) = run_addon_script(
        r#"{"log_level":"info","emit_initial":true,"include_loop_devices":false,"api_on_lan":true,"api_token":"0123456789abcdef0123456789abcdef","discovery_prefix":"ha","mqtt_url":"mqtts://broker.lan:8883","mqtt_username":"me","node_id":"nas-1"}"#,
        Some(r#"{"host":"core-mosquitto","port":1883,"ssl":false,"username":"a","password":"b"}"#),
    );
    assert!(status.success(), "check-config rejected:\n{config}\n{log}");
    assert!(config.contains(r#"url = "mqtts://broker.lan:8883""#) && config.contains(r#"username = "me""#));
    assert!(config.contains(r#"listen = "0.0.0.0:8377""#) && config.contains(r#"node_id = "nas-1""#));
    assert!(config.contains("anonymous_from = [\"172.30.32.2\"]") && !config.contains("allow_anonymous"), "{config}");
    assert!(!config.contains("0123456789abcdef"), "the token belongs in its own file: {config}");
    let (status, config, log) = run_addon_script(
        r#"{"log_level":"warn","emit_initial":false,"include_loop_devices":false,"api_on_lan":false,"discovery_prefix":"homeassistant"}"#,
        None,
    );
    assert!(status.success(), "check-config rejected:\n{config}\n{log}");
    assert!(config.contains("[mqtt]\nenabled = false"), "{config}");

    // SMART off: the health source (every smartctl run) is off.
    let (status, config, log) = run_addon_script(
        r#"{"log_level":"info","emit_initial":false,"include_loop_devices":false,"api_on_lan":false,"discovery_prefix":"homeassistant","smart":false}"#,
        None,
    );
    assert!(status.success(), "check-config rejected:\n{config}\n{log}");
    assert!(config.contains("[health]\nenabled = false"), "{config}");

    // The agent really checks what the script wrote: a bad value is refused with 78.
    let (status, _, log) = run_addon_script(
        r#"{"log_level":"loud","emit_initial":false,"include_loop_devices":false,"api_on_lan":false,"discovery_prefix":"homeassistant"}"#,
        None,
    );
    assert_eq!(status.code(), Some(78), "{log}");
}

/// The variant's device access needs protection mode off; when the Supervisor withholds it,
/// the start log says so (the agent still starts).
#[test]
fn ha_run_script_warns_when_protection_mode_withholds_full_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = dir.path().join("options.json");
    fs::write(&options, r#"{"log_level":"info","emit_initial":false,"include_loop_devices":false,"api_on_lan":false,"discovery_prefix":"homeassistant"}"#)
        .expect("write options");
    let run_with = |protected: bool| {
        let info =
            serde_json::json!({"full_access": true, "protected": protected, "privileged": ["SYS_ADMIN", "SYS_RAWIO"]});
        let stub = common::addon::SupervisorStub::start("tok", vec![("/addons/self/info", info)]);
        let out = run(Command::new("bash")
            .arg(repo().join("packaging/homeassistant/rootfs/run.sh"))
            .env("ADDON_OPTIONS", &options)
            .env("ADDON_CONFIG_PATH", dir.path().join("diskwatch.toml"))
            .env("ADDON_STATE_DIR", dir.path().join("state"))
            .env("ADDON_BIN", BIN)
            .env("ADDON_COMMAND", "check-config")
            .env("SUPERVISOR_TOKEN", "tok")
            .env("SUPERVISOR_API", stub.url()));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let log = run_with(true);
    assert!(
        log.contains("Supervisor grants: privileged SYS_ADMIN,SYS_RAWIO, full_access true, protected true"),
        "{log}"
    );
    assert!(log.contains("Protection mode is on"), "{log}");
    let log = run_with(false);
    assert!(!log.contains("Protection mode is on"), "{log}");
}

/// Builds the .deb (one release build), then installs, runs, removes and purges it.
#[test]
fn deb_builds_installs_runs_and_purges() {
    if !common::require_root("deb_builds_installs_runs_and_purges") {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // Built before taking the machine lock: the release build is slow and touches nothing shared.
    let out = run(Command::new(&cargo).args(["deb", "--locked"]).current_dir(repo()));
    assert!(
        out.status.success(),
        "cargo deb failed (is cargo-deb installed? scripts/setup does it):\n{}",
        text(&out.stderr)
    );
    let deb = text(&out.stdout).lines().rev().find(|l| l.trim().ends_with(".deb")).map(|l| l.trim().to_owned());
    let deb = deb.unwrap_or_else(|| panic!("cargo deb printed no .deb path:\n{}", text(&out.stdout)));
    let size = fs::metadata(repo().join("target/release/diskwatch")).expect("release binary").len();
    eprintln!("release binary (stripped): {size} bytes ({:.1} MiB)", size as f64 / (1 << 20) as f64);
    assert!(size <= 10 << 20, "the release binary is {size} bytes, over the 10 MiB budget");

    // `make install` into a staging root installs the same files.
    let stage = tempfile::tempdir().expect("tempdir");
    let make =
        run(Command::new("make").arg("install").arg(format!("DESTDIR={}", stage.path().display())).current_dir(repo()));
    assert!(make.status.success(), "make install failed:\n{}", text(&make.stderr));
    for path in [
        "usr/bin/diskwatch",
        "usr/lib/systemd/system/diskwatch.service",
        "usr/lib/systemd/system/diskwatch-smartctl.socket",
        "usr/lib/systemd/system/diskwatch-smartctl@.service",
        "etc/diskwatch/config.toml",
    ] {
        assert!(stage.path().join(path).is_file(), "make install did not install {path}");
    }

    let _lock = common::machine_lock();
    let contents = run(Command::new("dpkg-deb").args(["--contents", &deb]));
    let listing = text(&contents.stdout);
    for path in [
        "./usr/bin/diskwatch",
        "./etc/diskwatch/config.toml",
        "diskwatch.service",
        "diskwatch-smartctl.socket",
        "diskwatch-smartctl@.service",
    ] {
        assert!(listing.contains(path), "{path} missing from the package:\n{listing}");
    }
    let conffiles = run(Command::new("dpkg-deb").args(["--info", &deb, "conffiles"]));
    assert!(text(&conffiles.stdout).contains("/etc/diskwatch/config.toml"), "the config is not a conffile");
    let recommends = text(&run(Command::new("dpkg-deb").args(["--field", &deb, "Recommends"])).stdout);
    assert!(recommends.contains("smartmontools"), "SMART needs smartctl: Recommends is {recommends:?}");

    let install = run(Command::new("dpkg").args(["-i", &deb]));
    assert!(install.status.success(), "dpkg -i failed:\n{}{}", text(&install.stdout), text(&install.stderr));
    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = Command::new("dpkg").args(["--purge", "diskwatch"]).output();
        }
    }
    let _purge = Purge;

    let version = run(Command::new("/usr/bin/diskwatch").arg("version"));
    assert!(version.status.success());
    assert_eq!(text(&version.stdout).trim(), format!("diskwatch {}", env!("CARGO_PKG_VERSION")));
    let check =
        run(Command::new("/usr/bin/diskwatch").args(["check-config", "--config", "/etc/diskwatch/config.toml"]));
    assert!(check.status.success(), "check-config on the installed config failed:\n{}", text(&check.stderr));
    assert!(
        Path::new("/usr/lib/systemd/system/diskwatch.service").exists()
            || Path::new("/lib/systemd/system/diskwatch.service").exists()
    );
    assert!(Path::new("/var/lib/diskwatch").is_dir(), "postinst creates the state directory");

    let remove = run(Command::new("dpkg").args(["-r", "diskwatch"]));
    assert!(remove.status.success(), "dpkg -r failed:\n{}", text(&remove.stderr));
    assert!(!Path::new("/usr/bin/diskwatch").exists(), "the binary survived dpkg -r");
    assert!(Path::new("/etc/diskwatch/config.toml").exists(), "dpkg -r keeps the conffile");

    let purge = run(Command::new("dpkg").args(["--purge", "diskwatch"]));
    assert!(purge.status.success(), "dpkg --purge failed:\n{}", text(&purge.stderr));
    assert!(!Path::new("/etc/diskwatch").exists(), "purge leaves /etc/diskwatch");
    assert!(!Path::new("/var/lib/diskwatch").exists(), "purge leaves /var/lib/diskwatch");
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "diskwatch"]));
    assert!(!text(&status.stdout).contains("installed"), "dpkg still lists diskwatch: {}", text(&status.stdout));
}
