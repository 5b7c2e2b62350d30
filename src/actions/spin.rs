//! Spinning a rotational disk down: ATA STANDBY IMMEDIATE through SG_IO (an ATA PASS-THROUGH
//! (16) command, as `hdparm -y` sends it). Non-rotational disks are refused: they have
//! nothing to spin, and a standby command to some SSD bridges drops them off the bus.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::machine::{file_dev, read_trimmed, Failure, Machine};
use crate::model::Disk;

/// `struct sg_io_hdr` of <scsi/sg.h> (interface id 'S').
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_NONE: libc::c_int = -1;
const ATA_STANDBY_IMMEDIATE: u8 = 0xE0;

/// The ATA PASS-THROUGH (16) CDB of a non-data command.
pub fn standby_cdb() -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x85; // ATA PASS-THROUGH (16)
    cdb[1] = 3 << 1; // protocol 3: non-data
    cdb[14] = ATA_STANDBY_IMMEDIATE;
    cdb
}

pub fn spin_down(machine: &Machine, disk: &Disk) -> Result<String, Failure> {
    let name = &disk.kernel_name;
    machine.same_device(name, &disk.dev)?;
    let rotational = read_trimmed(&machine.block(name).join("queue/rotational"));
    match rotational.as_deref() {
        Some("1") => {}
        Some(_) => {
            return Err(Failure::new(
                "not_rotational",
                format!("{name} is not a rotational disk: nothing to spin down"),
            ))
        }
        None => return Err(Failure::new("not_found", format!("{name} is gone"))),
    }
    let node = machine.node(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&node)
        .map_err(|e| Failure::os(&format!("open {}", node.display()), &e))?;
    if file_dev(&file).as_deref() != Some(disk.dev.as_str()) {
        return Err(Failure::new("changed", format!("{} is no longer the device {}", node.display(), disk.dev)));
    }
    let cdb = standby_cdb();
    let mut sense = [0u8; 32];
    let mut hdr = SgIoHdr {
        interface_id: b'S' as libc::c_int,
        dxfer_direction: SG_DXFER_NONE,
        cmd_len: cdb.len() as u8,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: 0,
        dxferp: std::ptr::null_mut(),
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: 30_000,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `hdr` points at `cdb` and `sense`, which outlive the call; no data is transferred.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                Failure::new("unsupported", format!("{name} takes no ATA commands (SG_IO: {e})"))
            }
            _ => Failure::os(&format!("SG_IO on {name}"), &e),
        });
    }
    if hdr.status != 0 || hdr.host_status != 0 || hdr.driver_status != 0 {
        return Err(Failure::new(
            "unsupported",
            format!(
                "{name} refused STANDBY IMMEDIATE (status {:#x}, host {:#x}, driver {:#x})",
                hdr.status, hdr.host_status, hdr.driver_status
            ),
        ));
    }
    Ok(format!("{name} is spinning down"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn standby_immediate_cdb() {
        // As hdparm -y builds it (sgio.c: ATA_OP_STANDBYNOW1 through ATA_16, non-data).
        let cdb = super::standby_cdb();
        assert_eq!(cdb[0], 0x85);
        assert_eq!(cdb[1], 0x06);
        assert_eq!(cdb[14], 0xE0);
        assert_eq!(std::mem::size_of::<super::SgIoHdr>(), 88);
    }
}
