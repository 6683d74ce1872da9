//! The pause program: a static x86-64 Linux ELF executable, emitted byte by
//! byte (ELF header, one program header, hand-assembled machine code), so
//! no compiler or download is needed and the bytes never change.
//!
//! What it does, as Kubernetes' pause does: SIGINT and SIGTERM make it exit
//! 0, SIGCHLD makes it reap every exited child (it is PID 1 of the pod's
//! sandbox), and otherwise it sleeps in pause(2) forever. If a handler cannot
//! be installed it exits 1.

use std::collections::BTreeMap;

/// Where the one loadable segment (the whole file) is mapped.
const BASE: u64 = 0x40_0000;
const ELF_HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;
const CODE_OFFSET: usize = ELF_HEADER_SIZE + PROGRAM_HEADER_SIZE;

// Linux x86-64 system call numbers and constants.
const SYS_RT_SIGRETURN: u32 = 15;
const SYS_RT_SIGACTION: u32 = 13;
const SYS_PAUSE: u32 = 34;
const SYS_WAIT4: u32 = 61;
const SYS_EXIT_GROUP: u32 = 231;
const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;
const SIGCHLD: u8 = 17;
const WNOHANG: u32 = 1;
const SA_NOCLDSTOP: u64 = 0x1;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_RESTART: u64 = 0x1000_0000;

/// The pause program's bytes.
pub(crate) fn pause_program() -> Vec<u8> {
    let mut asm = Assembler::default();

    // _start: install the one handler for each signal, then pause forever.
    for signal in [SIGINT, SIGTERM, SIGCHLD] {
        asm.mov_edi(u32::from(signal));
        asm.call("install");
    }
    asm.label("pause");
    asm.mov_eax(SYS_PAUSE);
    asm.syscall();
    asm.jmp8("pause");

    // install(edi = signal): rt_sigaction(signal, &action, NULL, 8), or exit 1.
    asm.label("install");
    asm.lea_rsi_rip("action");
    asm.bytes(&[0x31, 0xD2]); // xor edx, edx
    asm.bytes(&[0x41, 0xBA]); // mov r10d, imm32: sizeof(sigset_t)
    asm.bytes(&8u32.to_le_bytes());
    asm.mov_eax(SYS_RT_SIGACTION);
    asm.syscall();
    asm.bytes(&[0x48, 0x85, 0xC0]); // test rax, rax
    asm.jcc8(0x78, "fail"); // js
    asm.bytes(&[0xC3]); // ret
    asm.label("fail");
    asm.mov_edi(1);
    asm.mov_eax(SYS_EXIT_GROUP);
    asm.syscall();

    // handler(edi = signal): SIGCHLD reaps; anything else exits 0.
    asm.label("handler");
    asm.bytes(&[0x83, 0xFF, SIGCHLD]); // cmp edi, SIGCHLD
    asm.jcc8(0x75, "exit"); // jne
    asm.label("reap");
    asm.mov_edi(u32::MAX); // pid -1: any child
    asm.bytes(&[0x31, 0xF6]); // xor esi, esi: no status
    asm.bytes(&[0xBA]); // mov edx, imm32
    asm.bytes(&WNOHANG.to_le_bytes());
    asm.bytes(&[0x45, 0x31, 0xD2]); // xor r10d, r10d: no rusage
    asm.mov_eax(SYS_WAIT4);
    asm.syscall();
    asm.bytes(&[0x48, 0x85, 0xC0]); // test rax, rax
    asm.jcc8(0x7F, "reap"); // jg: a child was reaped, look for another
    asm.bytes(&[0xC3]); // ret, into the restorer
    asm.label("exit");
    asm.bytes(&[0x31, 0xFF]); // xor edi, edi
    asm.mov_eax(SYS_EXIT_GROUP);
    asm.syscall();

    // The restorer a returning handler comes back to (x86-64 requires one).
    asm.label("restorer");
    asm.mov_eax(SYS_RT_SIGRETURN);
    asm.syscall();

    // struct kernel_sigaction { handler, flags, restorer, mask }.
    asm.align(8);
    asm.label("action");
    asm.address("handler");
    asm.bytes(&(SA_RESTORER | SA_RESTART | SA_NOCLDSTOP).to_le_bytes());
    asm.address("restorer");
    asm.bytes(&0u64.to_le_bytes());

    let code = asm.finish();
    let file_size = (CODE_OFFSET + code.len()) as u64;
    let mut elf = Vec::with_capacity(CODE_OFFSET + code.len());
    // ELF header: 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&0x3Eu16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + CODE_OFFSET as u64).to_le_bytes()); // e_entry
    elf.extend_from_slice(&(ELF_HEADER_SIZE as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(ELF_HEADER_SIZE as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PROGRAM_HEADER_SIZE as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // Program header: the whole file, loaded read + execute at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: PF_R | PF_X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&code);
    elf
}

/// Just enough of an assembler: raw bytes, labels, and references to labels
/// (8-bit and 32-bit relative, 64-bit absolute) resolved at the end.
#[derive(Default)]
struct Assembler {
    code: Vec<u8>,
    labels: BTreeMap<&'static str, usize>,
    fixups: Vec<(usize, Fixup, &'static str)>,
}

#[derive(Clone, Copy)]
enum Fixup {
    /// A signed byte, relative to the end of that byte.
    Relative8,
    /// A signed 32-bit value, relative to its end.
    Relative32,
    /// The label's 64-bit virtual address.
    Absolute64,
}

impl Assembler {
    fn bytes(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }

    fn label(&mut self, name: &'static str) {
        self.labels.insert(name, self.code.len());
    }

    fn reference(&mut self, kind: Fixup, label: &'static str) {
        self.fixups.push((self.code.len(), kind, label));
        let width = match kind {
            Fixup::Relative8 => 1,
            Fixup::Relative32 => 4,
            Fixup::Absolute64 => 8,
        };
        self.code.resize(self.code.len() + width, 0);
    }

    fn mov_eax(&mut self, value: u32) {
        self.bytes(&[0xB8]);
        self.bytes(&value.to_le_bytes());
    }

    fn mov_edi(&mut self, value: u32) {
        self.bytes(&[0xBF]);
        self.bytes(&value.to_le_bytes());
    }

    fn syscall(&mut self) {
        self.bytes(&[0x0F, 0x05]);
    }

    fn call(&mut self, label: &'static str) {
        self.bytes(&[0xE8]);
        self.reference(Fixup::Relative32, label);
    }

    fn jmp8(&mut self, label: &'static str) {
        self.jcc8(0xEB, label);
    }

    /// A short jump: `opcode` is 0xEB (always) or a 0x7x condition code.
    fn jcc8(&mut self, opcode: u8, label: &'static str) {
        self.bytes(&[opcode]);
        self.reference(Fixup::Relative8, label);
    }

    /// `lea rsi, [rip + label]`.
    fn lea_rsi_rip(&mut self, label: &'static str) {
        self.bytes(&[0x48, 0x8D, 0x35]);
        self.reference(Fixup::Relative32, label);
    }

    fn address(&mut self, label: &'static str) {
        self.reference(Fixup::Absolute64, label);
    }

    fn align(&mut self, alignment: usize) {
        // `CODE_OFFSET` is a multiple of 8, so aligning the code aligns the file.
        self.code
            .resize(self.code.len().next_multiple_of(alignment), 0xCC);
    }

    /// The code with every reference resolved.
    ///
    /// # Panics
    ///
    /// On an undefined label or a short jump out of range: both are mistakes
    /// in the fixed program above, caught by its tests.
    fn finish(mut self) -> Vec<u8> {
        for (at, kind, label) in &self.fixups {
            let target = *self
                .labels
                .get(label)
                .unwrap_or_else(|| panic!("undefined label {label}"));
            match kind {
                Fixup::Relative8 => {
                    let offset = target as i64 - (*at as i64 + 1);
                    let offset = i8::try_from(offset).expect("short jump in range");
                    self.code[*at] = offset.to_le_bytes()[0];
                }
                Fixup::Relative32 => {
                    let offset = target as i64 - (*at as i64 + 4);
                    let offset = i32::try_from(offset).expect("near reference in range");
                    self.code[*at..*at + 4].copy_from_slice(&offset.to_le_bytes());
                }
                Fixup::Absolute64 => {
                    let address = BASE + (CODE_OFFSET + target) as u64;
                    self.code[*at..*at + 8].copy_from_slice(&address.to_le_bytes());
                }
            }
        }
        self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_small_static_x86_64_executable() {
        let elf = pause_program();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 0x3E);
        assert!(elf.len() < 512, "{} bytes", elf.len());
        assert_eq!(elf, pause_program());
    }
}
