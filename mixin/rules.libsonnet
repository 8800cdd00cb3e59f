// Recording rules (deploy/prometheus/rules.yml). The alerts and the
// dashboards use them.
local lib = import 'lib.libsonnet';
{
  prometheusRules+:: {
    local c = $._config,
    groups+: [{
      name: 'memlock.rules',
      rules: [
        // Locked bytes over the soft RLIMIT_MEMLOCK, per process. Left out:
        // processes that may lock past the limit (memlock_process_cap_ipc_lock
        // is 1 only for CAP_IPC_LOCK in the initial user namespace: a rootless
        // or user-namespaced container is held to its limit and stays in), an
        // unlimited limit (+Inf) and a limit of 0 (nothing may lock).
        {
          record: 'pid:memlock_process_locked_bytes:limit_ratio',
          expr: |||
            (
              memlock_process_locked_bytes
                / (memlock_process_limit_soft_bytes > 0 < +Inf)
            )
            unless
              memlock_process_cap_ipc_lock == 1
          |||,
        },
        // What io_uring charges to a user (an approximation: VmPin of the
        // user's processes without CAP_IPC_LOCK in the initial user namespace)
        // over the smallest finite soft limit among that user's reported
        // processes: io_uring checks the user's total against the registering
        // process's limit.
        {
          record: 'uid:memlock_user_charged_pinned_bytes:limit_ratio',
          expr: |||
            memlock_user_charged_pinned_bytes
              / on (%(by)s) group_left
            min by (%(by)s) (memlock_process_limit_soft_bytes > 0 < +Inf)
          ||| % { by: lib.by(c, ['instance', 'job', 'uid']) },
        },
        // The kernel's own per-user charge (user_struct->locked_vm, read by
        // the BPF task iterator: io_uring buffers and rings, perf, zerocopy,
        // AF_XDP, iommufd) over the smallest finite soft limit among the
        // user's processes that pin memory and may not exceed their limit
        // (no CAP_IPC_LOCK in the initial user namespace): each of them is
        // checked against the user's whole charge when it registers more.
        {
          record: 'uid:memlock_user_kernel_locked_vm_bytes:limit_ratio',
          expr: |||
            memlock_user_kernel_locked_vm_bytes
              / on (%(uid)s) group_left
            min by (%(uid)s) (
              (memlock_process_limit_soft_bytes > 0 < +Inf)
                and on (%(pid)s) (memlock_process_pinned_bytes > 0)
                unless on (%(pid)s) (memlock_process_cap_ipc_lock == 1)
            )
          ||| % { uid: lib.by(c, ['instance', 'job', 'uid']), pid: lib.by(c, ['instance', 'job', 'pid']) },
        },
        // The kernel's SHM_LOCK charge of a user (ucounts, per user
        // namespace; read by the BPF task iterator) over the smallest finite
        // soft limit among the user's reported processes without
        // CAP_IPC_LOCK in the initial user namespace: shmctl(SHM_LOCK) by any
        // of them checks the charge plus the segment against its own limit.
        {
          record: 'uid:memlock_user_kernel_shm_locked_bytes:limit_ratio',
          expr: |||
            memlock_user_kernel_shm_locked_bytes
              / on (%(uid)s) group_left
            min by (%(uid)s) (
              (memlock_process_limit_soft_bytes > 0 < +Inf)
                unless on (%(pid)s) (memlock_process_cap_ipc_lock == 1)
            )
          ||| % { uid: lib.by(c, ['instance', 'job', 'uid']), pid: lib.by(c, ['instance', 'job', 'pid']) },
        },
        // Share of the node's RAM that is mlocked.
        {
          record: 'instance:memlock_system_mlocked_bytes:memory_ratio',
          expr: |||
            memlock_system_mlocked_bytes / memlock_system_memory_total_bytes
          |||,
        },
        // Unevictable bytes of a cgroup and its descendants over its memory
        // limit, which they count against (cgroups without a limit are left
        // out).
        {
          record: 'cgroup:memlock_cgroup_subtree_unevictable_bytes:limit_ratio',
          expr: |||
            memlock_cgroup_subtree_unevictable_bytes
              / (memlock_cgroup_memory_limit_bytes > 0 < +Inf)
          |||,
        },
        // The memory limit of each cgroup's parent (the path without its last
        // component; "/" for a top-level cgroup), with the cgroup's own
        // labels: MemlockCgroupUnevictableNearLimit tells with it which of
        // nested limits binds. Reported cgroups have reported parents: the
        // exporter reports every cgroup whose subtree holds unevictable
        // memory. Over [3m], so that one missed scrape drops nothing.
        {
          record: 'cgroup:memlock_cgroup_parent_memory_limit_bytes',
          expr: |||
            label_replace(label_replace(
                last_over_time(memlock_cgroup_memory_limit_bytes[3m])
                  * on (%(keys)s) group_right
                label_replace(label_replace(label_replace(
                      last_over_time(memlock_cgroup_memory_limit_bytes{cgroup!="/"}[3m]) >= bool 0,
                    "child", "$1", "cgroup", "(.+)"),
                  "cgroup", "/", "cgroup", "/[^/]+"),
                "cgroup", "$1", "cgroup", "(/.+)/[^/]+"),
              "cgroup", "$1", "child", "(.+)"),
            "child", "", "", "")
          ||| % { keys: lib.by(c, ['instance', 'job', 'cgroup']) },
        },
        // 99th percentile of the whole probe duration over the last hour, per
        // target and mode (classic buckets, which Prometheus scrapes by
        // default). Every label of the bucket series but le is kept: the
        // target's own (instance, job, and those a ServiceMonitor or
        // relabelling adds: namespace, pod, node, the cluster label).
        {
          record: 'mode:memlock_probe_duration_seconds:p99_1h',
          expr: |||
            histogram_quantile(0.99,
              sum without () (rate(memlock_probe_duration_seconds_bucket[1h]))
            )
          |||,
        },
      ],
    }],
  },
}
