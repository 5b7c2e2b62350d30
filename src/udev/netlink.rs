//! kernel mode: the raw NETLINK_KOBJECT_UEVENT socket (kernel multicast group 1),
//! with a large receive buffer and overflow (ENOBUFS) reporting.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvfrom, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use super::error::UdevError;
use super::uevent::{parse_kernel_message, Uevent};

/// The kernel's uevent multicast group.
const KERNEL_GROUP: u32 = 1;
/// A uevent is at most 2 KiB (UEVENT_BUFFER_SIZE); leave room.
const MESSAGE_MAX: usize = 8192;

/// The outcome of one receive round.
#[derive(Debug)]
pub enum Received {
    Ok,
    /// The socket lost messages: re-enumerate.
    Overflow,
    Failed(std::io::Error),
}

/// Sets the receive buffer, forcing past rmem_max when we may (root), else as far as allowed.
pub fn set_receive_buffer(fd: RawFd, bytes: usize) {
    // SAFETY: the caller's socket outlives this call; BorrowedFd only lives inside it.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = setsockopt(&fd, sockopt::RcvBufForce, &bytes) {
        debug!(error = %e, "SO_RCVBUFFORCE refused, using SO_RCVBUF");
        if let Err(e) = setsockopt(&fd, sockopt::RcvBuf, &bytes) {
            warn!(error = %e, bytes, "cannot set the netlink receive buffer");
        }
    }
}

pub struct KernelSocket {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl KernelSocket {
    pub fn open(receive_buffer: usize) -> Result<Self, UdevError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(|e| UdevError::Netlink(e.into()))?;
        set_receive_buffer(fd.as_raw_fd(), receive_buffer);
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP)).map_err(|e| UdevError::Netlink(e.into()))?;
        Ok(Self {
            fd: {
                // SAFETY: the AsyncFd owns the socket; nothing else closes or replaces it.
                unsafe { AsyncFd::register(fd) }.map_err(|e| UdevError::Netlink(e.into_parts().1))?
            },
            buf: vec![0; MESSAGE_MAX],
        })
    }

    /// Waits for messages and appends every queued block-device uevent to `out`.
    pub async fn recv(&mut self, out: &mut Vec<Uevent>) -> Received {
        let mut guard = match self.fd.readable().await {
            Ok(g) => g,
            Err(e) => return Received::Failed(e),
        };
        loop {
            match recvfrom::<NetlinkAddr>(guard.get_inner().as_raw_fd(), &mut self.buf) {
                Ok((n, from)) => {
                    // Only the kernel (port 0) speaks on this group; anything else is spoofed.
                    if from.is_some_and(|a| a.pid() != 0) {
                        continue;
                    }
                    if let Some(ev) = parse_kernel_message(&self.buf[..n]) {
                        if ev.subsystem() == Some("block") {
                            out.push(ev);
                        }
                    }
                }
                Err(Errno::EAGAIN) => {
                    guard.clear_ready();
                    return Received::Ok;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ENOBUFS) => return Received::Overflow,
                Err(e) => return Received::Failed(e.into()),
            }
        }
    }
}
