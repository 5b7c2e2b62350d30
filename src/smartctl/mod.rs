//! smartctl, the one room for the outside tool (SPEC §8/§9): every run of it, by the health
//! source and by the udev source's sleep check, goes through [`Smartctl`].
//!
//! - [`run`]: the process: a timeout, at most one run per disk, bounded output.
//! - [`helper`], [`helper_serve`], [`helper_client`]: the smartctl helper, which runs smartctl
//!   for the agent with the capabilities SMART needs (systemd/diskwatch-smartctl@.service),
//!   against an allow-list of the forms below.
//! - [`version`]: which smartmontools is installed, asked once.
//! - [`power`]: the `-n` form that version accepts, the arguments, runtime PM.
//! - [`parse`]: what `--json` printed, as a typed [`parse::Answer`].
//! - [`selftest`]: starting self-tests and reading the drive's self-test log.

pub mod helper;
mod helper_client;
pub mod helper_serve;
pub mod parse;
pub mod power;
pub mod run;
pub mod selftest;
pub mod version;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::OnceCell;
use tracing::{info, warn};

pub use parse::{interpret, interpret_for, Answer, Reading};
pub use power::{args, runtime_suspended, Ask, Nocheck};
pub use run::{Output, RunError, Runner};
pub use version::Version;

/// The key the version query takes in the runner's at-most-one-per-disk set.
const VERSION_KEY: &str = "--version";

/// smartctl as diskwatch runs it: the binary, the timeout, the `-d` type, the version.
#[derive(Clone)]
pub struct Smartctl {
    runner: Runner,
    device_type: Option<String>,
    /// Asked at the first run; `None` inside when the output named no version.
    version: std::sync::Arc<OnceCell<Option<Version>>>,
}

impl Smartctl {
    /// `device_type`: smartctl's `-d` for every disk ("" or None: autodetection).
    pub fn new(binary: PathBuf, timeout: Duration, device_type: Option<String>) -> Self {
        Smartctl {
            runner: Runner::new(binary, timeout),
            device_type: device_type.filter(|t| !t.is_empty()),
            version: std::sync::Arc::new(OnceCell::new()),
        }
    }

    /// Sends every run to the smartctl helper at `socket` (`[health] smartctl_socket`; None or
    /// empty: smartctl runs as the agent's child).
    pub fn via_socket(mut self, socket: Option<PathBuf>) -> Self {
        self.runner = self.runner.via_socket(socket);
        self
    }

    pub fn binary(&self) -> &Path {
        self.runner.binary()
    }

    /// Disks with a smartctl process alive right now.
    pub fn in_flight(&self) -> usize {
        self.runner.in_flight()
    }

    /// The installed version, asked once (`smartctl --json --version`). A binary that cannot
    /// be run is asked again next time; one whose answer names no version is taken for the
    /// oldest supported release.
    pub async fn version(&self) -> Option<Version> {
        let asked = self
            .version
            .get_or_try_init(|| async {
                let out = self.runner.run(VERSION_KEY, &["--json".to_owned(), "--version".to_owned()]).await?;
                let version = Version::parse(&out.stdout);
                match version {
                    Some(v) => info!(smartctl = %self.binary().display(), version = %v, "smartctl version"),
                    None => warn!(
                        smartctl = %self.binary().display(),
                        "smartctl --version named no version: using the -n form of 7.0-7.2"
                    ),
                }
                Ok::<_, RunError>(version)
            })
            .await;
        asked.ok().copied().flatten()
    }

    /// The `-n` form of the installed version.
    pub async fn nocheck(&self) -> Nocheck {
        Nocheck::for_version(self.version().await)
    }

    /// Asks `disk` (the at-most-one key) at `devnode`: the power mode only, or SMART too.
    /// Every run carries `-n standby…`: a disk in standby answers that and nothing else.
    pub async fn ask(&self, disk: &str, devnode: &str, ask: Ask) -> Result<Answer, RunError> {
        let nocheck = self.nocheck().await;
        let out = self.runner.run(disk, &args(ask, nocheck, devnode, self.device_type.as_deref())).await?;
        Ok(interpret_for(out.status, &out.stdout, nocheck.has_unsupported_exit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A smartctl that logs its arguments and answers `--version` as `version`, else a standby.
    fn fake(dir: &Path, version: &str, body: &str) -> PathBuf {
        let path = dir.join("smartctl");
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> '{log}'\ncase \"$*\" in *--version*) echo '{version}'; exit 0;; esac\n{body}\n",
            log = dir.join("calls").display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn calls(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn old_smartctl_gets_the_old_form_and_the_version_is_asked_once() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake(
            dir.path(),
            "smartctl 7.2 2020-12-30 r5155 [x86_64-linux] (local build)",
            "echo 'Device is in STANDBY mode, exit(2)'; exit 2",
        );
        let s = Smartctl::new(bin, Duration::from_secs(5), Some("sat".into()));
        for _ in 0..3 {
            let a = s.ask("sdb", "/dev/sdb", Ask::PowerCheck).await.unwrap();
            assert_eq!(a, Answer::LowPower(crate::model::PowerState::Standby));
        }
        assert_eq!(
            calls(dir.path()),
            [
                "--json --version",
                "--json -i -n standby,2 -d sat /dev/sdb",
                "--json -i -n standby,2 -d sat /dev/sdb",
                "--json -i -n standby,2 -d sat /dev/sdb"
            ]
        );
    }

    #[tokio::test]
    async fn current_smartctl_gets_the_unsupported_exit() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"json_format_version":[1,0],"smartctl":{"version":[7,4],"exit_status":0}}"#;
        let s = Smartctl::new(fake(dir.path(), json, "exit 3"), Duration::from_secs(5), None);
        assert_eq!(s.ask("sdb", "/dev/sdb", Ask::Smart).await.unwrap(), Answer::PowerCheckUnsupported);
        assert_eq!(calls(dir.path())[1], "--json -a -n standby,2,3 /dev/sdb");
    }

    /// smartctl 7.2 given `-n standby,2,3` (the bug this module fixes): exit status 1 is a
    /// command-line error, never "unsupported"; the same exit 3 from an old version is not
    /// "no CHECK POWER MODE" either.
    #[tokio::test]
    async fn bad_command_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let body = "echo '=======> INVALID ARGUMENT TO -n: standby,2,3'; exit 1";
        let s = Smartctl::new(fake(dir.path(), "smartctl 7.2", body), Duration::from_secs(5), None);
        assert!(
            matches!(s.ask("sdb", "/dev/sdb", Ask::Smart).await.unwrap(), Answer::BadCommandLine(m) if m.contains("INVALID ARGUMENT"))
        );
        assert!(matches!(interpret_for(3, "", false), Answer::BadCommandLine(_)));
    }
}
