package bpf

import "github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"

// The children and their helpers live in bpftest, shared with the
// collectors' tests.
type (
	childOpts = bpftest.Opts
	child     = bpftest.Child
)

var (
	startChild  = bpftest.Start
	procStatus  = bpftest.ProcStatus
	procLimit   = bpftest.ProcLimit
	freshUID    = bpftest.FreshUID
	requireRoot = bpftest.RequireRoot
)
