// SPDX-License-Identifier: GPL-2.0
/*
 * iter/task: one fixed-size record per thread-group leader, written to the
 * iterator's seq file. The program only copies; Go deduplicates the per-user
 * counters (by the user_struct and ucounts pointers) and labels. No map: the
 * output is the seq file, so nothing grows with the task count in the kernel.
 *
 * A leader-exited process (leader a zombie, mm NULL, other threads live) gets
 * a second record from each of its live threads, flagged REC_THREAD; Go keeps
 * the first. The kernel's task iterator visits every thread in tid order.
 */
#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_core_read.h"

char LICENSE[] SEC("license") = "GPL";

#define RLIMIT_MEMLOCK 8	/* asm-generic/resource.h; x86 and arm64 */
#define PF_KTHREAD 0x00200000	/* include/linux/sched.h */
#define PROC_USER_INIT_INO 0xEFFFFFFDU	/* include/linux/proc_ns.h */

/* Record flags: what the record holds, and which fields this kernel has. */
#define REC_LEADER		(1U << 0)  /* task is its thread group's leader */
#define REC_THREAD		(1U << 1)  /* live thread standing in for an exited leader */
#define REC_MM			(1U << 2)  /* task has an mm: locked_vm, pinned_vm valid */
#define REC_KTHREAD		(1U << 3)  /* PF_KTHREAD */
#define REC_EXITED		(1U << 4)  /* exit_state != 0 (zombie or dead) */
#define REC_INIT_USERNS		(1U << 5)  /* cred->user_ns is the initial user namespace */
#define REC_PINNED_VM		(1U << 6)  /* kernel has mm->pinned_vm */
#define REC_USER_LOCKED_VM	(1U << 7)  /* kernel has user_struct->locked_vm */
#define REC_UCOUNTS_MEMLOCK	(1U << 8)  /* ucounts_memlock is the ucounts MEMLOCK count */
#define REC_LOCKED_SHM		(1U << 9)  /* pre-5.14: ucounts_memlock is user_struct->locked_shm */
#define REC_CGROUP		(1U << 10) /* cgroup_id is the default hierarchy's cgroup id */
#define REC_READ_ERROR		(1U << 11) /* a kernel read failed: some fields are 0 */
#define REC_MEMCG		(1U << 12) /* memcg_id is the memory controller's cgroup id */

/* Keep in step with record.go (TestRecordLayout checks). Counts are pages. */
struct task_record {
	__u32 tgid;
	__u32 tid;
	__u32 flags;
	__u32 uid;		/* cred->uid, as the initial user namespace sees it */
	__u32 user_ns_inum;	/* cred->user_ns->ns.inum */
	__u32 ucounts_ns_inum;	/* cred->ucounts->ns->ns.inum */
	__u32 ucounts_uid;	/* cred->ucounts->uid */
	__u32 nr_threads;	/* signal->nr_threads: the Threads line of status */
	__u64 cap_effective;	/* cred->cap_effective, bits 0..63 */
	__u64 locked_vm;	/* mm->locked_vm, pages */
	__u64 pinned_vm;	/* mm->pinned_vm, pages */
	__u64 rlim_cur;		/* signal->rlim[RLIMIT_MEMLOCK], bytes */
	__u64 rlim_max;
	__u64 cgroup_id;	/* cgroups->dfl_cgrp->kn->id */
	__u64 user;		/* cred->user: dedupe key, never exported */
	__u64 user_locked_vm;	/* cred->user->locked_vm, pages */
	__u64 ucounts;		/* cred->ucounts: dedupe key, never exported */
	__u64 ucounts_memlock;	/* ucounts rlimit[UCOUNT_RLIMIT_MEMLOCK], pages */
	__u64 memcg_id;		/* cgroups->subsys[memory_cgrp_id]->cgroup->kn->id */
	char comm[16];
};

/* Byte offset of the MEMLOCK counter inside struct ucounts, or -1. */
static __always_inline long ucounts_memlock_offset(void)
{
	if (bpf_core_field_exists(struct ucounts, rlimit) &&
	    bpf_core_enum_value_exists(enum rlimit_type, UCOUNT_RLIMIT_MEMLOCK))
		return bpf_core_field_offset(struct ucounts, rlimit) +
		       bpf_core_enum_value(enum rlimit_type, UCOUNT_RLIMIT_MEMLOCK) *
			       sizeof(atomic_long_t);
	if (bpf_core_field_exists(struct ucounts, ucount) &&
	    bpf_core_enum_value_exists(enum ucount_type___old, UCOUNT_RLIMIT_MEMLOCK___old))
		return bpf_core_field_offset(struct ucounts, ucount) +
		       bpf_core_enum_value(enum ucount_type___old, UCOUNT_RLIMIT_MEMLOCK___old) *
			       sizeof(atomic_long_t);
	return -1;
}

static __always_inline void read_cred(struct task_record *r, const struct cred *cred)
{
	struct user_namespace *ns;
	struct user_struct *user;
	struct ucounts *uc;
	long off;

	if (!cred) {
		r->flags |= REC_READ_ERROR;
		return;
	}
	/* Direct loads through BTF pointers: the verifier turns them into
	 * fault-safe loads (a fault reads 0), far cheaper than a
	 * bpf_probe_read_kernel call each. */
	r->uid = cred->uid.val;
	r->cap_effective = cred->cap_effective.val;

	ns = cred->user_ns;
	if (ns) {
		r->user_ns_inum = ns->ns.inum;
		if (r->user_ns_inum == PROC_USER_INIT_INO)
			r->flags |= REC_INIT_USERNS;
	} else {
		r->flags |= REC_READ_ERROR;
	}

	user = cred->user;
	r->user = (__u64)(unsigned long)user;
	if (user && bpf_core_field_exists(struct user_struct, locked_vm)) {
		r->user_locked_vm = user->locked_vm.counter;
		r->flags |= REC_USER_LOCKED_VM;
	}

	if (bpf_core_field_exists(struct cred, ucounts)) {
		uc = cred->ucounts;
		r->ucounts = (__u64)(unsigned long)uc;
		off = ucounts_memlock_offset();
		if (uc && off >= 0) {
			if (bpf_probe_read_kernel(&r->ucounts_memlock, sizeof(r->ucounts_memlock),
						  (void *)uc + off))
				r->flags |= REC_READ_ERROR;
			else
				r->flags |= REC_UCOUNTS_MEMLOCK;
		}
		if (uc) {
			r->ucounts_uid = uc->uid.val;
			ns = uc->ns;
			if (ns)
				r->ucounts_ns_inum = ns->ns.inum;
		}
	} else if (user && bpf_core_field_exists(struct user_struct___old, locked_shm)) {
		/* Before ucounts, SHM_LOCK charged the per-uid user_struct. */
		r->ucounts = r->user;
		r->ucounts_uid = r->uid;
		r->ucounts_memlock = ((struct user_struct___old *)user)->locked_shm;
		r->flags |= REC_LOCKED_SHM;
	}
}

/* The memory controller's cgroup (on cgroup v1 its own hierarchy's, on v2
 * the nearest ancestor with the controller enabled): with cgroup_id it keys
 * the collectors' cache of pod and container identities. */
static __always_inline void read_memcg(struct task_record *r, struct css_set *cgroups)
{
	struct cgroup_subsys_state *css = NULL;
	struct cgroup *cgrp;
	struct kernfs_node *kn;
	long off;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id) ||
	    !bpf_core_field_exists(struct css_set___memcg, subsys))
		return;
	off = bpf_core_field_offset(struct css_set___memcg, subsys) +
	      bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id) * sizeof(void *);
	if (bpf_probe_read_kernel(&css, sizeof(css), (void *)cgroups + off) || !css)
		return;
	if (bpf_probe_read_kernel(&cgrp, sizeof(cgrp), &css->cgroup) || !cgrp)
		return;
	if (bpf_probe_read_kernel(&kn, sizeof(kn), &cgrp->kn) || !kn)
		return;
	if (bpf_probe_read_kernel(&r->memcg_id, sizeof(r->memcg_id), &kn->id))
		return;
	r->flags |= REC_MEMCG;
}

/* Not inlined, so the record type reaches BTF and bpf2go -type can mirror it
 * in Go. */
static __noinline int emit(struct seq_file *seq, struct task_record *r)
{
	return bpf_seq_write(seq, r, sizeof(*r));
}

SEC("iter/task")
int memlock_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct task_struct *leader;
	struct signal_struct *sig;
	struct mm_struct *mm;
	struct css_set *cgroups;
	struct task_record r = {};

	if (!task)
		return 0;

	/* Each task_struct cache line the program touches costs about 0.1 us
	 * a task cold, which is most of a pass: the leader is told by
	 * pid == tgid (true of the leader only, exec by a thread included,
	 * which swaps the pids), so group_leader is read only for the other
	 * threads, and exit_state only without an mm (exit_mm comes before
	 * exit_state is set, so a task with an mm is not a zombie). */
	mm = task->mm;
	if (task->pid == task->tgid) {
		r.flags |= REC_LEADER;
	} else {
		/* A thread speaks only for a leader that has lost its mm. */
		leader = task->group_leader;
		if (!mm || !leader || leader->mm)
			return 0;
		r.flags |= REC_THREAD;
	}

	r.tgid = task->tgid;
	r.tid = task->pid;
	__builtin_memcpy(r.comm, task->comm, sizeof(r.comm));
	if (task->flags & PF_KTHREAD)
		r.flags |= REC_KTHREAD;
	if (!mm && task->exit_state)
		r.flags |= REC_EXITED;

	if (mm) {
		r.flags |= REC_MM;
		r.locked_vm = mm->locked_vm;
		if (bpf_core_field_exists(struct mm_struct, pinned_vm)) {
			r.pinned_vm = mm->pinned_vm.counter;
			r.flags |= REC_PINNED_VM;
		}
	}

	sig = task->signal;
	if (sig) {
		r.rlim_cur = sig->rlim[RLIMIT_MEMLOCK].rlim_cur;
		r.rlim_max = sig->rlim[RLIMIT_MEMLOCK].rlim_max;
		r.nr_threads = sig->nr_threads;
	} else {
		r.flags |= REC_READ_ERROR;
	}

	read_cred(&r, task->cred);

	if (bpf_core_field_exists(struct task_struct, cgroups)) {
		cgroups = task->cgroups;
		if (cgroups && cgroups->dfl_cgrp && cgroups->dfl_cgrp->kn) {
			r.cgroup_id = cgroups->dfl_cgrp->kn->id;
			r.flags |= REC_CGROUP;
		}
		if (cgroups)
			read_memcg(&r, cgroups);
	}

	emit(seq, &r);
	return 0;
}
