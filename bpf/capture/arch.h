/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Per-architecture syscall numbers and the syscall's arguments in the
 * saved user registers (struct pt_regs from bpf_task_pt_regs). Only the
 * socket data syscalls authprobe reads buffers of are named; any other
 * number is socket I/O from a syscall it cannot read. */
#ifndef AUTHPROBE_ARCH_H
#define AUTHPROBE_ARCH_H

#if defined(__TARGET_ARCH_x86)

#define SYS_READ 0
#define SYS_WRITE 1
#define SYS_READV 19
#define SYS_WRITEV 20
#define SYS_SENDTO 44
#define SYS_RECVFROM 45
#define SYS_SENDMSG 46
#define SYS_RECVMSG 47

#define SYSCALL_NR(regs) ((long)(regs)->orig_ax)
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG2(regs) ((regs)->si)
#define SYSCALL_ARG3(regs) ((regs)->dx)
#define SYSCALL_ARG4(regs) ((regs)->r10)
/* Go's register ABI keeps the running goroutine's g in R14; integer
 * arguments go in AX, BX, CX, DI, ..., results in AX, BX, ... */
#define GO_G(regs) ((regs)->r14)
#define GO_ARG1(regs) ((regs)->ax)
#define GO_ARG2(regs) ((regs)->bx)
#define GO_ARG3(regs) ((regs)->cx)
#define GO_RET1(regs) ((regs)->ax)

#elif defined(__TARGET_ARCH_arm64)

#define SYS_READ 63
#define SYS_WRITE 64
#define SYS_READV 65
#define SYS_WRITEV 66
#define SYS_SENDTO 206
#define SYS_RECVFROM 207
#define SYS_SENDMSG 211
#define SYS_RECVMSG 212

/* x0 is overwritten by the return value on the way out; orig_x0 keeps
 * the first argument. */
#define SYSCALL_NR(regs) ((long)(regs)->syscallno)
#define SYSCALL_ARG1(regs) ((regs)->orig_x0)
#define SYSCALL_ARG2(regs) ((regs)->regs[1])
#define SYSCALL_ARG3(regs) ((regs)->regs[2])
#define SYSCALL_ARG4(regs) ((regs)->regs[3])
/* Go's register ABI keeps the running goroutine's g in x28; integer
 * arguments and results go in x0, x1, ... */
#define GO_G(r) ((r)->regs[28])
#define GO_ARG1(r) ((r)->regs[0])
#define GO_ARG2(r) ((r)->regs[1])
#define GO_ARG3(r) ((r)->regs[2])
#define GO_RET1(r) ((r)->regs[0])

#else
#error "authprobe: unsupported target architecture"
#endif

/* 32-bit compat syscalls use other numbers (and their socket I/O numbers
 * do not collide with the ones above), so they are reported unreadable. */

#endif /* AUTHPROBE_ARCH_H */
