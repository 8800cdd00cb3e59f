// SPDX-License-Identifier: GPL-2.0
/*
 * Lock calls that fail, counted where they happen (issue 13).
 *
 * Only syscalls:sys_exit_* of the memlock-related syscalls, no sys_enter_*
 * program: at the exit the syscall's arguments are still in the task's
 * saved user registers (bpf_task_pt_regs), so one program per syscall sees
 * arguments and return value, no per-thread in-flight map is needed, and
 * with no sys_enter_* event enabled the kernel's sys_enter tracepoint has
 * no probe at all. The exit program keeps only the interesting calls (mmap
 * with MAP_LOCKED, shmctl SHM_LOCK, io_uring buffer registration,
 * RLIMIT_MEMLOCK changes) and counts a failure by (process, syscall,
 * errno) or a success by syscall. Every map is bounded; a failure that
 * does not fit is counted in `dropped`.
 */
#include "vmlinux.h"
#include "bpf/bpf_helpers.h"

char LICENSE[] SEC("license") = "GPL";

/* Syscalls counted; keep in step with failures.go. */
enum lock_syscall {
	SC_MLOCK,
	SC_MLOCK2,
	SC_MLOCKALL,
	SC_MMAP,
	SC_SHMCTL,
	SC_IO_URING_REGISTER,
	SC_IO_URING_SETUP,
	SC_SETRLIMIT,
	SC_PRLIMIT64,
	SC_COUNT,
};

#define MAP_LOCKED 0x2000		/* x86 and arm64 (asm-generic/mman-common.h) */
#define SHM_LOCK 11
#define IORING_REGISTER_BUFFERS 0
#define IORING_REGISTER_BUFFERS2 15
#define RLIMIT_MEMLOCK 8

/*
 * The saved user registers, which hold the syscall's arguments until it
 * returns (the kernel writes only the return value, into ax / x0).
 * x86_64: di, si, dx, r10, r8, r9. arm64: x0 is overwritten by the return
 * value, so argument 0 is orig_x0; arguments 1 to 5 are regs[1..5].
 * preserve_access_index: the loader finds the fields in the running
 * kernel's BTF (on arm64 inside pt_regs' anonymous union).
 */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
} __attribute__((preserve_access_index));
#define ARG0(r) ((r)->di)
#define ARG1(r) ((r)->si)
#define ARG2(r) ((r)->dx)
#define ARG3(r) ((r)->r10)
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	__u64 regs[31];
	__u64 orig_x0;
} __attribute__((preserve_access_index));
#define ARG0(r) ((r)->orig_x0)
#define ARG1(r) ((r)->regs[1])
#define ARG2(r) ((r)->regs[2])
#define ARG3(r) ((r)->regs[3])
#else
#error "failures.bpf.c: only x86_64 and arm64"
#endif

/* Layout of the syscalls:sys_exit_* records
 * (/sys/kernel/tracing/events/syscalls/sys_exit_<name>/format). */
struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

struct failure_key {
	__u32 tgid;
	__u16 syscall;
	__u16 errno;
};

struct failure {
	__u64 count;
	__u64 bytes;		/* sum of the lengths the failed calls asked for */
	__u64 last_ns;		/* bpf_ktime_get_boot_ns of the last failure */
	__u64 cgroup_id;
	__u32 uid;
	__u32 _pad;
	char comm[16];
};

enum { DROP_FAILURES, DROP_COUNT };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct failure_key);
	__type(value, struct failure);
} failures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SC_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} successes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

static __always_inline void count(void *map, __u32 i)
{
	__u64 *v = bpf_map_lookup_elem(map, &i);
	if (v)
		(*v)++;
}

static __always_inline struct pt_regs *regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

static __always_inline int leave(struct sys_exit_ctx *ctx, __u32 sc, __u64 bytes)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct failure_key key = {};
	struct failure *f, nf = {};

	if (ctx->ret >= 0) {
		count(&successes, sc);
		return 0;
	}
	key.tgid = id >> 32;
	key.syscall = sc;
	key.errno = (__u16)-ctx->ret;
	f = bpf_map_lookup_elem(&failures, &key);
	if (!f) {
		nf.uid = (__u32)bpf_get_current_uid_gid();
		nf.cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(nf.comm, sizeof(nf.comm));
		/* NOEXIST: another thread of the process may have won the race;
		 * then its entry is there and this failure is added to it. */
		bpf_map_update_elem(&failures, &key, &nf, BPF_NOEXIST);
		f = bpf_map_lookup_elem(&failures, &key);
		if (!f) {
			count(&dropped, DROP_FAILURES);
			return 0;
		}
	}
	__sync_fetch_and_add(&f->count, 1);
	__sync_fetch_and_add(&f->bytes, bytes);
	f->last_ns = bpf_ktime_get_boot_ns();
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mlock")
int exit_mlock(struct sys_exit_ctx *ctx)
{
	return leave(ctx, SC_MLOCK, ARG1(regs()));
}

SEC("tracepoint/syscalls/sys_exit_mlock2")
int exit_mlock2(struct sys_exit_ctx *ctx)
{
	return leave(ctx, SC_MLOCK2, ARG1(regs()));
}

/* The page size's shift, set by the loader (failures.go) before loading. */
volatile const __u32 page_shift = 12;

#define MCL_CURRENT 1

SEC("tracepoint/syscalls/sys_exit_mlockall")
int exit_mlockall(struct sys_exit_ctx *ctx)
{
	__u64 bytes = 0;

	/* mm/mlock.c: with MCL_CURRENT the kernel holds the whole address
	 * space, mm->total_vm, against RLIMIT_MEMLOCK: that is what the call
	 * asked to lock. MCL_FUTURE alone asks for nothing yet. */
	if (ARG0(regs()) & MCL_CURRENT) {
		struct mm_struct *mm = bpf_get_current_task_btf()->mm;

		if (mm)
			bytes = mm->total_vm << page_shift;
	}
	return leave(ctx, SC_MLOCKALL, bytes);
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct sys_exit_ctx *ctx)
{
	struct pt_regs *r = regs();

	if (!(ARG3(r) & MAP_LOCKED))
		return 0;
	return leave(ctx, SC_MMAP, ARG1(r));
}

SEC("tracepoint/syscalls/sys_exit_shmctl")
int exit_shmctl(struct sys_exit_ctx *ctx)
{
	if ((ARG1(regs()) & 0xff) != SHM_LOCK)
		return 0;
	return leave(ctx, SC_SHMCTL, 0);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int exit_io_uring_register(struct sys_exit_ctx *ctx)
{
	__u64 op = ARG1(regs());

	if (op != IORING_REGISTER_BUFFERS && op != IORING_REGISTER_BUFFERS2)
		return 0;
	return leave(ctx, SC_IO_URING_REGISTER, 0);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_setup")
int exit_io_uring_setup(struct sys_exit_ctx *ctx)
{
	return leave(ctx, SC_IO_URING_SETUP, 0);
}

SEC("tracepoint/syscalls/sys_exit_setrlimit")
int exit_setrlimit(struct sys_exit_ctx *ctx)
{
	if (ARG0(regs()) != RLIMIT_MEMLOCK)
		return 0;
	return leave(ctx, SC_SETRLIMIT, 0);
}

SEC("tracepoint/syscalls/sys_exit_prlimit64")
int exit_prlimit64(struct sys_exit_ctx *ctx)
{
	struct pt_regs *r = regs();

	if (ARG1(r) != RLIMIT_MEMLOCK || !ARG2(r))
		return 0;
	return leave(ctx, SC_PRLIMIT64, 0);
}
