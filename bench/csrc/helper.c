/*
 * memlock-bench helper: one "spawner" process that forks N tiny children and
 * keeps them alive, some of them holding locked, on-fault locked, shared
 * locked or pinned memory, and on request kills and replaces children at a
 * given rate (churn). The Go harness (bench/) compiles this with gcc at run
 * time and talks to it over stdin/stdout:
 *
 *   argv:    helper N
 *   stdout:  "S <pid> <role>" a child was started and is ready
 *            "X <pid>"        a child exited and was reaped
 *            "F <role> <errno>" a child could not set up its role
 *            "R <n>"          all N first children are ready
 *            "Q"              every child is gone; the helper exits
 *   stdin:   "churn <per-second>\n", "quit\n" (EOF means quit)
 *
 * Every child has PR_SET_PDEATHSIG=SIGKILL, and the harness starts the
 * spawner with the same, so nothing outlives the harness even on SIGKILL.
 * A child is a static C process of about 100 KiB of private memory; a Go
 * child would cost megabytes and several threads (pids) each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

enum { PLAIN, LOCKER, ONFAULT, SHARED, PINNED, NROLES };
static const char *rolename[NROLES] = {"plain", "locker", "onfault", "shared", "pinned"};

#define SHARED_SIZE (64 << 10)
#define PAGE 4096

static int n, memfd = -1, shmid = -1, devnull = -1, readyr = -1, readyw = -1;
static pid_t spawner, *pids;
static unsigned char *roles;
static volatile sig_atomic_t stop;

/* role of child i: 3% plain lockers, 1% on-fault, 1% shared, 0.5% pinned. */
static int role_of(int i) {
	int r = i % 200;
	if (r < 6) return LOCKER;
	if (r < 8) return ONFAULT;
	if (r < 10) return SHARED;
	if (r < 11) return PINNED;
	return PLAIN;
}

static void *anon(size_t len) {
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* setup gives the child its role; it returns 0 or an errno. */
static int setup(int role, int i) {
	switch (role) {
	case LOCKER: {
		size_t len = (size_t)(4 + i % 13) * PAGE; /* 16 to 64 KiB */
		void *p = anon(len);
		if (!p || mlock(p, len)) return errno;
		return 0;
	}
	case ONFAULT: {
		size_t len = 64 * PAGE; /* VmLck 256 KiB, only 2 pages resident */
		char *p = anon(len);
		if (!p || syscall(SYS_mlock2, p, len, MLOCK_ONFAULT)) return errno;
		p[0] = 1;
		p[PAGE] = 1;
		return 0;
	}
	case SHARED: {
		/* A SysV SHM_LOCK segment and a shared memfd mapping, both attached
		 * and mlocked by every SHARED child: Locked in smaps is their
		 * proportional share. */
		void *s = shmat(shmid, NULL, 0);
		if (s == (void *)-1 || mlock(s, SHARED_SIZE)) return errno;
		void *m = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		if (m == MAP_FAILED || mlock(m, SHARED_SIZE)) return errno;
		return 0;
	}
	case PINNED: {
		/* io_uring registered buffers: the kernel pins them (VmPin). */
		struct io_uring_params params;
		memset(&params, 0, sizeof params);
		int fd = syscall(SYS_io_uring_setup, 1, &params);
		if (fd < 0) return errno;
		struct iovec iov = {anon(4 * PAGE), 4 * PAGE};
		if (!iov.iov_base) return errno;
		memset(iov.iov_base, 1, iov.iov_len);
		if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1)) return errno;
		return 0;
	}
	}
	return 0;
}

static pid_t start_child(int i) {
	pid_t pid = fork();
	if (pid != 0) return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != spawner) _exit(1);
	prctl(PR_SET_NAME, "memlock-child");
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	dup2(devnull, 0);
	dup2(devnull, 1);
	close(readyr);
	char msg[8];
	int err = setup(roles[i], i);
	msg[0] = roles[i];
	memcpy(msg + 1, &err, sizeof err);
	if (write(readyw, msg, 1 + sizeof err) < 0) _exit(1);
	close(readyw);
	for (;;) pause();
}

/* wait_ready reads one readiness record and reports a failed setup. */
static void wait_ready(void) {
	char msg[8];
	ssize_t got = 0;
	while (got < (ssize_t)(1 + sizeof(int))) {
		ssize_t m = read(readyr, msg + got, 1 + sizeof(int) - got);
		if (m < 0 && errno == EINTR) continue;
		if (m <= 0) return;
		got += m;
	}
	int err;
	memcpy(&err, msg + 1, sizeof err);
	if (err) printf("F %s %d\n", rolename[(int)msg[0]], err);
}

static int index_of(pid_t pid) {
	for (int i = 0; i < n; i++)
		if (pids[i] == pid) return i;
	return -1;
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc != 2 || (n = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	spawner = getpid();
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);

	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int rp[2];
	if (pipe(rp)) return 1;
	readyr = rp[0];
	readyw = rp[1];
	memfd = syscall(SYS_memfd_create, "memlock-bench", 0);
	if (memfd < 0 || ftruncate(memfd, SHARED_SIZE)) perror("memfd");
	shmid = shmget(IPC_PRIVATE, SHARED_SIZE, IPC_CREAT | 0600);
	if (shmid < 0 || shmctl(shmid, SHM_LOCK, NULL)) perror("shm");
	/* Attached by the spawner and marked for removal at once: the segment
	 * disappears with the last process, whatever happens to the harness.
	 * Linux lets children attach a segment marked for removal. */
	if (shmid >= 0 && shmat(shmid, NULL, SHM_RDONLY) != (void *)-1) shmctl(shmid, IPC_RMID, NULL);

	pids = calloc(n, sizeof *pids);
	roles = calloc(n, 1);
	for (int i = 0; i < n && !stop; i++) {
		roles[i] = role_of(i);
		pids[i] = start_child(i);
		if (pids[i] < 0) {
			perror("fork");
			stop = 1;
			break;
		}
	}
	for (int i = 0; i < n && pids[i] > 0; i++) {
		wait_ready();
		printf("S %d %s\n", pids[i], rolename[roles[i]]);
	}
	if (!stop) printf("R %d\n", n);
	fflush(stdout);

	double rate = 0, owed = 0, last = now();
	char line[128];
	size_t used = 0;
	unsigned seed = (unsigned)spawner;
	while (!stop) {
		struct pollfd pfd = {0, POLLIN, 0};
		int pr = poll(&pfd, 1, rate > 0 ? 10 : 200);
		if (pr > 0) {
			ssize_t m = read(0, line + used, sizeof line - 1 - used);
			if (m <= 0) break; /* EOF: the harness is gone */
			used += m;
			line[used] = 0;
			char *nl;
			while ((nl = strchr(line, '\n'))) {
				*nl = 0;
				if (!strncmp(line, "churn ", 6)) rate = atof(line + 6);
				else if (!strcmp(line, "quit")) stop = 1;
				size_t rest = used - (size_t)(nl + 1 - line);
				memmove(line, nl + 1, rest);
				used = rest;
				line[used] = 0;
			}
			if (used == sizeof line - 1) used = 0;
		}
		/* Children that died on their own are reaped and replaced too. */
		int st;
		pid_t dead;
		while ((dead = waitpid(-1, &st, WNOHANG)) > 0) {
			printf("X %d\n", dead);
			int i = index_of(dead);
			if (i >= 0 && !stop) {
				pids[i] = start_child(i);
				wait_ready();
				printf("S %d %s\n", pids[i], rolename[roles[i]]);
			}
		}
		double t = now();
		if (rate > 0) {
			/* Kill every child owed this tick, then start their
			 * replacements, then wait for all of them: a batch costs one
			 * round of fork and set-up latency, not one per child. */
			owed += rate * (t - last);
			int batch[1024], nb = 0;
			while (owed >= 1 && nb < 1024 && !stop) {
				owed -= 1;
				seed = seed * 1103515245 + 12345;
				int i = (int)((seed >> 8) % (unsigned)n);
				int dup = 0;
				for (int k = 0; k < nb; k++) dup |= batch[k] == i;
				if (dup) continue;
				kill(pids[i], SIGKILL);
				batch[nb++] = i;
			}
			for (int k = 0; k < nb; k++) {
				int i = batch[k];
				waitpid(pids[i], &st, 0);
				printf("X %d\n", pids[i]);
			}
			for (int k = 0; k < nb; k++) pids[batch[k]] = start_child(batch[k]);
			for (int k = 0; k < nb; k++) wait_ready();
			for (int k = 0; k < nb; k++) printf("S %d %s\n", pids[batch[k]], rolename[roles[batch[k]]]);
		} else {
			owed = 0;
		}
		last = t;
		fflush(stdout);
	}
	for (int i = 0; i < n; i++)
		if (pids[i] > 0) kill(pids[i], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	printf("Q\n");
	fflush(stdout);
	return 0;
}
