package linux

import "testing"

// ParseCgroupMemoryValue reads memory.max, memory.current (v2) and
// memory.limit_in_bytes, memory.usage_in_bytes (v1); FuzzParseMemoryStat
// feeds it memory.stat files, this target the values those files hold.
func FuzzParseCgroupMemoryValue(f *testing.F) {
	// As on real hosts: v2's "max", v1's PAGE_COUNTER_MAX "no limit" with
	// 4 KiB pages, a limit, a usage, an empty cgroup.
	for _, s := range []string{"max\n", "9223372036854771712\n", "8589934592\n", "123456789\n", "0\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseCgroupMemoryValue(b)
		mustBeMalformed(t, err)
	})
}
