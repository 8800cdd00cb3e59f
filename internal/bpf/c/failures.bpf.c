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
#include "bpf/bpf_core_read.h"

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
#define IORING_REGISTER_USE_REGISTERED_RING (1U << 31)
#define IORING_MAX_REG_BUFFERS (1U << 14)	/* io_uring/rsrc.h */
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

/*
 * shmctl(SHM_LOCK) asks to lock the whole segment: shm_segsz, which
 * shmem_lock() charges (in pages) against the caller's RLIMIT_MEMLOCK. The
 * segment is found as ipc_obtain_object_check() finds it: the caller's IPC
 * namespace's SHM idr, indexed by the id's low ipc_mni_shift bits (15, or 24
 * with ipcmni_extend: both are tried, and the entry's own id must match).
 * Read only for a failed call; a segment removed meanwhile reads 0.
 */
#define IPC_SHM_IDS 2		/* ipc/util.h: sem 0, msg 1, shm 2 */
#define IPCMNI_SHIFT 15
#define IPCMNI_EXTEND_SHIFT 24
#define XA_CHUNK_MASK 63	/* include/linux/xarray.h, CONFIG_BASE_SMALL=n */
#define XA_MAX_DEPTH 6		/* 6 levels of 6 bits cover a 32-bit index */

static __always_inline bool xa_is_node(unsigned long e)
{
	return (e & 3) == 2 && e > 4096;	/* xa_is_internal, not a small value */
}

/* xas_load() on an xarray without multi-index entries (an idr). */
static __always_inline void *xa_lookup(void *head, unsigned long index)
{
	unsigned long e = (unsigned long)head, node;
	long slots = bpf_core_field_offset(struct xa_node, slots);
	unsigned char shift = 0;
	int i;

	if (!xa_is_node(e))
		return index ? NULL : head;
	for (i = 0; i < XA_MAX_DEPTH; i++) {
		node = e - 2;
		if (bpf_probe_read_kernel(&shift, 1, (void *)node + bpf_core_field_offset(struct xa_node, shift)))
			return NULL;
		if (i == 0 && (index >> shift) > XA_CHUNK_MASK)
			return NULL;	/* past the top node's range */
		if (bpf_probe_read_kernel(&e, sizeof(e),
					  (void *)node + slots + ((index >> shift) & XA_CHUNK_MASK) * sizeof(void *)))
			return NULL;
		if (shift == 0 || !xa_is_node(e))
			break;
	}
	return (e & 3) == 2 ? NULL : (void *)e;	/* an internal entry is no segment */
}

static __always_inline __u64 shm_segsz(int shmid)
{
	struct nsproxy *nsp = bpf_get_current_task_btf()->nsproxy;
	struct ipc_namespace *ns;
	struct idr *idr;
	void *head, *perm;
	unsigned int base = 0;
	unsigned long segsz = 0;
	int id, s;

	if (!nsp || shmid < 0)
		return 0;
	ns = nsp->ipc_ns;
	if (!ns)
		return 0;
	idr = (void *)ns + bpf_core_field_offset(struct ipc_namespace, ids) +
	      IPC_SHM_IDS * bpf_core_type_size(struct ipc_ids) + bpf_core_field_offset(struct ipc_ids, ipcs_idr);
	if (bpf_core_read(&head, sizeof(head), &idr->idr_rt.xa_head) ||
	    bpf_core_read(&base, sizeof(base), &idr->idr_base))
		return 0;
	for (s = 0; s < 2; s++) {
		unsigned long idx = shmid & ((1U << (s ? IPCMNI_EXTEND_SHIFT : IPCMNI_SHIFT)) - 1);

		if (idx < base)
			continue;
		perm = xa_lookup(head, idx - base);
		if (!perm || bpf_core_read(&id, sizeof(id), &((struct kern_ipc_perm *)perm)->id) || id != shmid)
			continue;
		if (bpf_core_read(&segsz, sizeof(segsz), &((struct shmid_kernel *)perm)->shm_segsz))
			return 0;
		return segsz;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_shmctl")
int exit_shmctl(struct sys_exit_ctx *ctx)
{
	struct pt_regs *r = regs();

	if ((ARG1(r) & 0xff) != SHM_LOCK)
		return 0;
	return leave(ctx, SC_SHMCTL, ctx->ret < 0 ? shm_segsz((int)ARG0(r)) : 0);
}

/*
 * io_uring buffer registration asks for the sum of its iovecs' lengths
 * (io_sqe_buffers_register() charges the pages they span, buffer by buffer,
 * to the user's locked_vm). The iovec array is in the caller's memory,
 * which the kernel has just read: 16 at a time, then the rest one by one.
 * Read only for a failed call; an array the program cannot read counts
 * what it read.
 */
struct iovec_u {
	__u64 base;
	__u64 len;
};

#define IOV_CHUNK 16

static __always_inline __u64 iov_bytes(__u64 uptr, __u32 n)
{
	struct iovec_u v[IOV_CHUNK];
	__u64 sum = 0;
	__u32 full, i, j;

	if (!uptr || n > IORING_MAX_REG_BUFFERS)
		return 0;	/* refused with EINVAL before any buffer is read */
	full = n / IOV_CHUNK;
#pragma clang loop unroll(disable)
	for (i = 0; i < IORING_MAX_REG_BUFFERS / IOV_CHUNK; i++) {
		if (i >= full)
			break;
		if (bpf_probe_read_user(v, sizeof(v), (void *)(uptr + i * sizeof(v))))
			return sum;
		for (j = 0; j < IOV_CHUNK; j++)
			sum += v[j].len;
	}
#pragma clang loop unroll(disable)
	for (j = 0; j < IOV_CHUNK - 1; j++) {
		i = full * IOV_CHUNK + j;
		if (i >= n || bpf_probe_read_user(&v[0], sizeof(v[0]), (void *)(uptr + i * sizeof(v[0]))))
			break;
		sum += v[0].len;
	}
	return sum;
}

/* include/uapi/linux/io_uring.h */
struct io_uring_rsrc_register_u {
	__u32 nr;
	__u32 flags;
	__u64 resv2;
	__u64 data;
	__u64 tags;
};

static __always_inline __u64 uring_buffer_bytes(struct pt_regs *r, __u32 op)
{
	struct io_uring_rsrc_register_u rr = {};

	if (op == IORING_REGISTER_BUFFERS)
		return iov_bytes(ARG2(r), (__u32)ARG3(r));
	/* IORING_REGISTER_BUFFERS2: arg is the register struct, nr_args its size. */
	if (ARG3(r) != sizeof(rr) || bpf_probe_read_user(&rr, sizeof(rr), (void *)ARG2(r)))
		return 0;
	return iov_bytes(rr.data, rr.nr);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int exit_io_uring_register(struct sys_exit_ctx *ctx)
{
	struct pt_regs *r = regs();
	__u32 op = (__u32)ARG1(r) & ~IORING_REGISTER_USE_REGISTERED_RING;

	if (op != IORING_REGISTER_BUFFERS && op != IORING_REGISTER_BUFFERS2)
		return 0;
	return leave(ctx, SC_IO_URING_REGISTER, ctx->ret < 0 ? uring_buffer_bytes(r, op) : 0);
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
