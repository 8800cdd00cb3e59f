package probe

import (
	"context"
	"log/slog"

	"golang.org/x/sys/unix"
)

// probeOnfault locks with mlock2(MLOCK_ONFAULT), then touches a known part
// of the region. The kernel must count the whole range in VmLck at once,
// while smaps Locked, Rss and mincore show only the touched pages.
func probeOnfault(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger) bool {
	return runLocal(ctx, env, m, res, logger, localSpec{
		lock: func(ctx context.Context, r *region, chunk int) error {
			return r.lockChunks(ctx, chunk, func(b []byte) error { return mlock2(b, unix.MLOCK_ONFAULT) })
		},
		want:       lockedShape{onfault: true, huge: m.HugePages},
		touchPages: func(pages int) int { return onfaultTouchPages(m, pages, env.page) },
	})
}

// onfaultTouchPages is how many leading pages the onfault probe writes:
// touch_size when the module sets it, else half the region (at least one).
func onfaultTouchPages(m Module, pages, page int) int {
	if m.TouchSize > 0 {
		return min(pages, int(m.TouchSize)/page)
	}
	return max(1, pages/2)
}
