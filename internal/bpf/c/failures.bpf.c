// SPDX-License-Identifier: GPL-2.0
/*
 * Prototype for issue 13: lock calls that fail, counted where they happen.
 * sys_enter_* of the memlock-related syscalls remembers the call (only the
 * interesting ones: mmap with MAP_LOCKED, shmctl SHM_LOCK, io_uring buffer
 * registration, RLIMIT_MEMLOCK changes) per thread; sys_exit_* counts a
 * failure by (process, syscall, errno) or a success by syscall. Every map is
 * bounded; what does not fit is counted in `dropped`.
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

/* Layout of the syscalls:sys_enter_* and sys_exit_* records
 * (/sys/kernel/tracing/events/syscalls/<name>/format). */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

struct inflight {
	__u32 syscall;
	__u32 _pad;
	__u64 bytes;	/* what the call asked for, where the arguments say */
};

struct failure_key {
	__u32 tgid;
	__u16 syscall;
	__u16 errno;
};

struct failure {
	__u64 count;
	__u64 last_bytes;
	__u64 last_ns;		/* bpf_ktime_get_boot_ns of the last failure */
	__u64 cgroup_id;
	__u32 uid;
	__u32 _pad;
	char comm[16];
};

enum { DROP_INFLIGHT, DROP_FAILURES, DROP_COUNT };

/* Calls between enter and exit, by thread id. LRU, so a thread that never
 * returns (exits inside the call) cannot pin a slot. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

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

static __always_inline int enter(__u32 sc, __u64 bytes)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight in = {.syscall = sc, .bytes = bytes};

	if (bpf_map_update_elem(&inflight, &tid, &in, BPF_ANY))
		count(&dropped, DROP_INFLIGHT);
	return 0;
}

static __always_inline int leave(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight *in = bpf_map_lookup_elem(&inflight, &tid);
	struct failure_key key = {};
	struct failure *f, nf = {};
	__u32 sc;
	__u64 bytes;

	if (!in)
		return 0;
	sc = in->syscall;
	bytes = in->bytes;
	bpf_map_delete_elem(&inflight, &tid);
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
		if (bpf_map_update_elem(&failures, &key, &nf, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&failures, &key)) {
			count(&dropped, DROP_FAILURES);
			return 0;
		}
		f = bpf_map_lookup_elem(&failures, &key);
		if (!f)
			return 0;
	}
	__sync_fetch_and_add(&f->count, 1);
	f->last_bytes = bytes;
	f->last_ns = bpf_ktime_get_boot_ns();
	return 0;
}

#define EXIT(name)                                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name)                   \
	int exit_##name(struct sys_exit_ctx *ctx) { return leave(ctx); }

SEC("tracepoint/syscalls/sys_enter_mlock")
int enter_mlock(struct sys_enter_ctx *ctx) { return enter(SC_MLOCK, ctx->args[1]); }
EXIT(mlock)

SEC("tracepoint/syscalls/sys_enter_mlock2")
int enter_mlock2(struct sys_enter_ctx *ctx) { return enter(SC_MLOCK2, ctx->args[1]); }
EXIT(mlock2)

SEC("tracepoint/syscalls/sys_enter_mlockall")
int enter_mlockall(struct sys_enter_ctx *ctx) { return enter(SC_MLOCKALL, 0); }
EXIT(mlockall)

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct sys_enter_ctx *ctx)
{
	if (!(ctx->args[3] & MAP_LOCKED))
		return 0;
	return enter(SC_MMAP, ctx->args[1]);
}
EXIT(mmap)

SEC("tracepoint/syscalls/sys_enter_shmctl")
int enter_shmctl(struct sys_enter_ctx *ctx)
{
	if ((ctx->args[1] & 0xff) != SHM_LOCK)
		return 0;
	return enter(SC_SHMCTL, 0);
}
EXIT(shmctl)

SEC("tracepoint/syscalls/sys_enter_io_uring_register")
int enter_io_uring_register(struct sys_enter_ctx *ctx)
{
	if (ctx->args[1] != IORING_REGISTER_BUFFERS && ctx->args[1] != IORING_REGISTER_BUFFERS2)
		return 0;
	return enter(SC_IO_URING_REGISTER, 0);
}
EXIT(io_uring_register)

SEC("tracepoint/syscalls/sys_enter_io_uring_setup")
int enter_io_uring_setup(struct sys_enter_ctx *ctx) { return enter(SC_IO_URING_SETUP, 0); }
EXIT(io_uring_setup)

SEC("tracepoint/syscalls/sys_enter_setrlimit")
int enter_setrlimit(struct sys_enter_ctx *ctx)
{
	if (ctx->args[0] != RLIMIT_MEMLOCK)
		return 0;
	return enter(SC_SETRLIMIT, 0);
}
EXIT(setrlimit)

SEC("tracepoint/syscalls/sys_enter_prlimit64")
int enter_prlimit64(struct sys_enter_ctx *ctx)
{
	if (ctx->args[1] != RLIMIT_MEMLOCK || !ctx->args[2])
		return 0;
	return enter(SC_PRLIMIT64, 0);
}
EXIT(prlimit64)

