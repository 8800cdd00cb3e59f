package bpf

// The committed task_{x86,arm64}_bpfel.{go,o} come from c/task.bpf.c and
// failures_{x86,arm64}_bpfel.{go,o} from c/failures.bpf.c; `make
// generate` reruns this with Debian bookworm's clang-14 and `make
// check-generate` (CI) fails when the committed files differ from what the
// sources generate.
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -go-package bpf -target amd64,arm64 -type task_record task c/task.bpf.c -- -Wall -Werror -Ic -Ic/include
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -go-package bpf -target amd64,arm64 -type failure_key -type failure failures c/failures.bpf.c -- -Wall -Werror -Ic -Ic/include
