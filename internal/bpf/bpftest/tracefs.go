package bpftest

import "github.com/memlock-exporter/memlock_exporter/internal/linux"

// WithTracefs runs fn on an OS thread that sees tracefs at
// /sys/kernel/tracing, mounted in a private mount namespace of that thread
// where the host mounts none there (linux.WithPrivateTracefs).
func WithTracefs(fn func() error) error { return linux.WithPrivateTracefs(fn) }
