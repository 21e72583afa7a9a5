//! A tc classifier that drops packets at random: link loss on kernels
//! built without netem (they have cls_bpf and clsact). Eight eBPF
//! instruction slots, loaded with bpf(2): a random u32 below the threshold
//! takes the packet away (TC_ACT_STOLEN), anything else passes
//! (TC_ACT_OK). Stolen, not shot: a shot packet is an error the sending
//! socket sees (ENOBUFS, and ping sends again), a stolen one is lost on
//! the wire, as netem loses it.

use std::os::fd::{FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
#[error("loading the loss classifier (bpf(2) BPF_PROG_LOAD)")]
pub struct Error(#[source] pub std::io::Error);

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const FN_GET_PRANDOM_U32: i32 = 7;
const TC_ACT_OK: i32 = 0;
const TC_ACT_STOLEN: i32 = 4;

/// One instruction: opcode, registers (dst low nibble, src high), offset,
/// immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The program for a loss probability `threshold / 2^32` (message
/// building, no I/O).
pub fn loss_program(threshold: u32) -> Vec<u8> {
    let (call, ld_imm64, jge_reg, mov_imm, exit) = (0x85, 0x18, 0x3d, 0xb7, 0x95);
    [
        insn(call, 0, 0, 0, FN_GET_PRANDOM_U32),
        // r1 = threshold (a 64-bit immediate takes two slots).
        insn(ld_imm64, 1, 0, 0, threshold as i32),
        insn(0, 0, 0, 0, 0),
        // Unsigned: r0 >= r1 passes.
        insn(jge_reg, 0, 1, 2, 0),
        insn(mov_imm, 0, 0, 0, TC_ACT_STOLEN),
        insn(exit, 0, 0, 0, 0),
        insn(mov_imm, 0, 0, 0, TC_ACT_OK),
        insn(exit, 0, 0, 0, 0),
    ]
    .concat()
}

/// The threshold for `pct` percent.
pub fn threshold(pct: f64) -> u32 {
    ((pct / 100.0) * 4_294_967_296.0)
        .round()
        .min(f64::from(u32::MAX)) as u32
}

/// The percentage a threshold stands for, with the two decimals a user
/// gives.
pub fn percent(threshold: u32) -> f64 {
    (f64::from(threshold) / 4_294_967_296.0 * 10000.0).round() / 100.0
}

/// Loads the loss classifier; the kernel keeps it while a filter uses it.
pub fn load_loss_program(threshold: u32) -> Result<OwnedFd, Error> {
    let code = loss_program(threshold);
    let license = c"GPL";
    // union bpf_attr, the BPF_PROG_LOAD part: prog_type, insn_cnt, insns,
    // license; the rest (log, name, ifindex, ...) stays zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&((code.len() / 8) as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) reads `attr` (128 bytes, the size passed) and, through
    // the pointers in it, `code` and `license`, all alive until it returns;
    // it writes nothing of ours (no log buffer is given).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Error(std::io::Error::last_os_error()));
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_eight_slots_and_thresholds_scale_to_2_pow_32() {
        assert_eq!(loss_program(1).len(), 64);
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(50.0), 1 << 31);
        assert_eq!(threshold(100.0), u32::MAX);
        assert_eq!(percent(threshold(20.0)), 20.0);
    }
}
