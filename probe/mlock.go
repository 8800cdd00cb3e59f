package probe

import (
	"context"
	"log/slog"

	"golang.org/x/sys/unix"
)

// probeMlock maps anonymous memory and locks it with mlock(2), which faults
// every page in: the lock phase is the cost of making the whole region
// resident and unevictable.
func probeMlock(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger) bool {
	return runLocal(ctx, env, m, res, logger, localSpec{
		lock: func(ctx context.Context, r *region, chunk int) error {
			return r.lockChunks(ctx, chunk, unix.Mlock)
		},
		want: lockedShape{huge: m.HugePages},
	})
}
