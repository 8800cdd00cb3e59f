package linux

import "testing"

// TestUnescapeMount: show_mountinfo (fs/proc_namespace.c, mangle) writes
// space, tab, newline and backslash in a mount point as \040, \011, \012 and
// \134; each is undone wherever it stands, the last four bytes included.
func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`:         "/sys/fs/cgroup",
		`/mnt/with\040space`:     "/mnt/with space",
		`/mnt/a\011b\012c`:       "/mnt/a\tb\nc",
		`/mnt/back\134slash\040`: `/mnt/back\slash `,
		`/mnt/end\134`:           `/mnt/end\`,
		`/mnt/short\04`:          `/mnt/short\04`,
		`/mnt/not\999octal`:      `/mnt/not\999octal`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
