package linux

import "bytes"

// ProcHidesPids reports whether the procfs mounted at mountPoint, as
// /proc/self/mountinfo b lists it, hides other users' pids or files
// (hidepid=1, 2, 4 or their names noaccess, invisible, ptraceable): a
// listing of it may then lack processes that exist. The last mount at
// mountPoint is the one seen; a mount point not in b reports true, the
// cautious answer.
func ProcHidesPids(b []byte, mountPoint string) bool {
	hides, found := true, false
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := bytes.Cut(line, []byte(" - "))
		if !ok {
			continue
		}
		f := bytes.Fields(pre)
		p := bytes.Fields(post)
		if len(f) < 5 || len(p) < 3 || unescapeMount(string(f[4])) != mountPoint || string(p[0]) != "proc" {
			continue
		}
		found = true
		hides = false
		for _, o := range bytes.Split(p[2], []byte{','}) {
			if v, ok := bytes.CutPrefix(o, []byte("hidepid=")); ok && string(v) != "0" && string(v) != "off" {
				hides = true
			}
		}
	}
	return hides || !found
}
