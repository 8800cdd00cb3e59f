package probe

import (
	"context"
	"log/slog"

	"golang.org/x/sys/unix"
)

// probePopulate maps the region with MAP_LOCKED|MAP_POPULATE, so the lock
// phase is the mmap call that faults in and locks every page. Large regions
// are mapped chunk by chunk over a reservation; the chunks merge into one
// locked mapping. Over RLIMIT_MEMLOCK the kernel answers EAGAIN here, not
// ENOMEM as mlock does.
func probePopulate(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger) bool {
	return runLocal(ctx, env, m, res, logger, localSpec{
		populate: true,
		lock: func(ctx context.Context, r *region, chunk int) error {
			for off := 0; off < len(r.mem); off += chunk {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := r.mapFixed(off, min(chunk, len(r.mem)-off), unix.MAP_LOCKED|unix.MAP_POPULATE); err != nil {
					return err
				}
			}
			return nil
		},
	})
}
