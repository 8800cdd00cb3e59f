/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types task.bpf.c reads, hand-written instead of a
 * multi-megabyte bpftool dump. Every struct carries preserve_access_index:
 * clang records each field access as a CO-RE relocation and the loader
 * (cilium/ebpf) resolves it against the running kernel's BTF, so member
 * order and offsets here do not matter, only names and kinds. A field a
 * kernel lacks is tested with bpf_core_field_exists before it is read.
 * Layouts checked against Linux 6.18's BTF (/sys/kernel/btf/vmlinux).
 */
#ifndef __MEMLOCK_VMLINUX_H__
#define __MEMLOCK_VMLINUX_H__

typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };

typedef int pid_t;

/* UAPI constants (include/uapi/linux/bpf.h): fixed values, no CO-RE. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

typedef struct {
	__s64 counter;
} atomic64_t;
typedef atomic64_t atomic_long_t;

typedef struct {
	__u32 val;
} kuid_t;

/* 6.3+: a u64 mask; before, __u32 cap[2]. Both are 8 bytes with
 * capability 0..31 in the low word on little-endian, so the program reads the
 * member as 8 raw bytes. */
typedef struct {
	__u64 val;
} kernel_cap_t;

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct user_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

/* include/linux/sched/user.h: per-uid, charged by io_uring buffer
 * registration, perf mmap, MSG_ZEROCOPY, AF_XDP umem, iommufd. */
struct user_struct {
	kuid_t uid;
	atomic_long_t locked_vm;
} __attribute__((preserve_access_index));

/* Before 5.14 SysV SHM_LOCK charged user_struct->locked_shm (pages). */
struct user_struct___old {
	unsigned long locked_shm;
} __attribute__((preserve_access_index));

/* include/linux/user_namespace.h. 6.2+: rlimit counts in their own array,
 * indexed by enum rlimit_type; 5.14 to 6.1: in ucount[], indexed by enum
 * ucount_type. The array sizes here are placeholders: the program indexes by
 * the byte offset of the array plus the enumerator's value, both relocated. */
enum rlimit_type {
	UCOUNT_RLIMIT_MEMLOCK = 3,
};

enum ucount_type___old {
	UCOUNT_RLIMIT_MEMLOCK___old = 3,
};

struct ucounts {
	struct user_namespace *ns;
	kuid_t uid;
	atomic_long_t ucount[1];
	atomic_long_t rlimit[1];
} __attribute__((preserve_access_index));

struct cred {
	kuid_t uid;
	kernel_cap_t cap_effective;
	struct user_struct *user;
	struct user_namespace *user_ns;
	struct ucounts *ucounts;
} __attribute__((preserve_access_index));

struct rlimit {
	unsigned long rlim_cur;
	unsigned long rlim_max;
} __attribute__((preserve_access_index));

struct signal_struct {
	int nr_threads;
	struct rlimit rlim[16];
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long total_vm;	/* failures.bpf.c: what mlockall(MCL_CURRENT) compares */
	unsigned long locked_vm;
	atomic64_t pinned_vm;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	int exit_state;
	pid_t pid;
	pid_t tgid;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	const struct cred *cred;
	struct signal_struct *signal;
	struct css_set *cgroups;
	char comm[16];
	struct nsproxy *nsproxy;	/* failures.bpf.c: the caller's IPC namespace */
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

/* Issue 12, cost: the memory controller's cgroup of a task, which with the
 * default hierarchy's cgroup decides the pod and container identity the
 * collectors parse from /proc/<pid>/cgroup. css_set___memcg is css_set by
 * CO-RE's flavour rule (the ___ suffix is ignored); subsys is read at the
 * relocated offset plus the relocated memory_cgrp_id, never through the
 * array's declared size, which differs between kernel configurations. */
enum cgroup_subsys_id {
	memory_cgrp_id = 0,
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct css_set___memcg {
	struct cgroup_subsys_state *subsys[1];
} __attribute__((preserve_access_index));

/* Issue 13, the bytes a failed shmctl(SHM_LOCK) asked for: the segment's
 * size, found as ipc/shm.c finds it, through the caller's IPC namespace's
 * SHM idr (an xarray, include/linux/xarray.h). ipc_namespace's ids[] and
 * xa_node's slots[] are indexed by relocated offsets and sizes, never by
 * the sizes declared here. */
struct xarray {
	void *xa_head;
} __attribute__((preserve_access_index));

struct idr {
	struct xarray idr_rt;
	unsigned int idr_base;
} __attribute__((preserve_access_index));

struct ipc_ids {
	struct idr ipcs_idr;
} __attribute__((preserve_access_index));

struct ipc_namespace {
	struct ipc_ids ids[1];
} __attribute__((preserve_access_index));

struct nsproxy {
	struct ipc_namespace *ipc_ns;
} __attribute__((preserve_access_index));

struct xa_node {
	unsigned char shift;
	void *slots[1];
} __attribute__((preserve_access_index));

struct kern_ipc_perm {
	int id;
} __attribute__((preserve_access_index));

/* ipc/shm.c: shm_perm is the first member, the pointer the idr holds. */
struct shmid_kernel {
	struct kern_ipc_perm shm_perm;
	unsigned long shm_segsz;
} __attribute__((preserve_access_index));

#endif /* __MEMLOCK_VMLINUX_H__ */
