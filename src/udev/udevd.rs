//! udev mode: systemd-udevd's processed events through the `udev` crate's
//! monitor (on a tokio AsyncFd), and its database for coldplug and re-reads.

use std::os::fd::AsRawFd;
use std::path::Path;

use tokio::io::unix::AsyncFd;

use super::error::UdevError;
use super::netlink::{set_receive_buffer, Received};
use super::uevent::{from_props, Props, Uevent};

/// Where udevd keeps its control socket: present while udevd runs.
pub const CONTROL: &str = "/run/udev/control";
/// udevd's database of device properties.
pub const DATABASE: &str = "/run/udev/data";

pub fn udevd_running() -> bool {
    Path::new(CONTROL).exists()
}

/// The `E:` properties of a udev database file.
pub fn parse_database(text: &str) -> Props {
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What udevd recorded for the block device `major:minor` (empty when nothing).
pub fn database_props(dev: &str) -> Props {
    std::fs::read_to_string(Path::new(DATABASE).join(format!("b{dev}"))).map(|t| parse_database(&t)).unwrap_or_default()
}

pub struct UdevMonitor {
    socket: AsyncFd<udev::MonitorSocket>,
}

impl UdevMonitor {
    pub fn open(receive_buffer: usize) -> Result<Self, UdevError> {
        let socket = udev::MonitorBuilder::new()
            .and_then(|b| b.match_subsystem("block"))
            .and_then(|b| b.listen())
            .map_err(UdevError::Monitor)?;
        // The crate has no setter for the buffer; the socket is ours to configure.
        set_receive_buffer(socket.as_raw_fd(), receive_buffer);
        Ok(Self {
            socket: {
                // SAFETY: the AsyncFd owns the monitor and with it the socket; nothing else closes it.
                unsafe { AsyncFd::register(socket) }.map_err(|e| UdevError::Monitor(e.into_parts().1))?
            },
        })
    }

    /// Waits for events and appends every queued one to `out`.
    pub async fn recv(&self, out: &mut Vec<Uevent>) -> Received {
        let mut guard = match self.socket.readable().await {
            Ok(g) => g,
            Err(e) => return Received::Failed(e),
        };
        loop {
            match guard.get_inner().iter().next() {
                Some(event) => {
                    let props: Props = event
                        .device()
                        .properties()
                        .map(|p| (p.name().to_string_lossy().into_owned(), p.value().to_string_lossy().into_owned()))
                        .collect();
                    if let Some(ev) = from_props(props) {
                        out.push(ev);
                    }
                }
                None => {
                    // libudev returns NULL and leaves the reason in errno.
                    let err = std::io::Error::last_os_error();
                    return match err.raw_os_error() {
                        Some(nix::libc::ENOBUFS) => Received::Overflow,
                        _ => {
                            guard.clear_ready();
                            Received::Ok
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_database_properties_only() {
        let db =
            "S:disk/by-uuid/4f1c\nW:12\nI:1234567\nE:ID_FS_TYPE=ext4\nE:ID_FS_LABEL=a=b\nG:systemd\nQ:systemd\nV:1\n";
        let p = parse_database(db);
        assert_eq!(p.len(), 2);
        assert_eq!(p["ID_FS_TYPE"], "ext4");
        assert_eq!(p["ID_FS_LABEL"], "a=b");
    }
}
