/*
 * child: makes one kind of kernel memlock charge the tests know to the byte,
 * then waits. Built by the tests with gcc; run with the uid, capabilities and
 * limits the test gives it.
 *
 *   child lock BYTES          mmap + mlock BYTES
 *   child leader-exit BYTES   a thread mlocks BYTES, then the leader exits
 *   child uring BYTES         io_uring_setup; on "next": register one BYTES buffer
 *   child perf PAGES          perf_event_open (software); on "next": mmap 1+PAGES pages
 *   child shmlock SHMID       on "next": shmctl(SHMID, SHM_LOCK)
 *   child mlock BYTES         on "next": mlock one page, then BYTES more
 *   child fail-KIND ARG       on "next": one call expected to fail (mlock2,
 *                             mlockall after reserving ARG bytes, mmap
 *                             MAP_LOCKED of ARG bytes, SHM_LOCK
 *                             of segment ARG, io_uring buffer of ARG bytes,
 *                             uringv: 37 io_uring buffers of ARG bytes
 *                             registered with IORING_REGISTER_BUFFERS2,
 *                             setrlimit/prlimit: RLIMIT_MEMLOCK raised to
 *                             ARG bytes, soft and hard),
 *                             or ARG failing mlocks of 1 MiB (storm)
 *
 * CHILD_MEMLOCK="SOFT HARD" in the environment sets RLIMIT_MEMLOCK first.
 *
 * Protocol: after the set-up it prints "setup\n", waits for a line on stdin,
 * makes the charge, prints "ready\n" (or "error <errno>\n") and waits for EOF.
 * A mode without a second step prints "setup\n" then "ready\n" at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(3);
}

static void fail(void)
{
	char b[32];
	snprintf(b, sizeof(b), "error %d\n", errno);
	say(b);
}

/* Blocks until a line (or EOF) on stdin. */
static int wait_line(void)
{
	char c;
	for (;;) {
		ssize_t n = read(0, &c, 1);
		if (n <= 0)
			return -1;
		if (c == '\n')
			return 0;
	}
}

static void wait_eof(void)
{
	while (wait_line() == 0)
		;
}

static void *lock_bytes(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (mlock(p, n))
		return NULL;
	return p;
}

static size_t leader_bytes;

static void *leader_exit_thread(void *arg)
{
	(void)arg;
	sleep(0);
	if (!lock_bytes(leader_bytes)) {
		fail();
		_exit(1);
	}
	/* The leader has called pthread_exit by now or soon; the test waits
	 * for it to become a zombie before it reads. */
	say("ready\n");
	wait_eof();
	_exit(0);
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);

	if (argc != 3) {
		fprintf(stderr, "usage: child MODE ARG\n");
		return 2;
	}
	unsigned long arg = strtoul(argv[2], NULL, 0);
	const char *lim = getenv("CHILD_MEMLOCK");
	if (lim) {
		struct rlimit rl;
		char *end;
		rl.rlim_cur = strtoull(lim, &end, 0);
		rl.rlim_max = strtoull(end, NULL, 0);
		if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
			fail();
			return 1;
		}
	}

	if (!strcmp(argv[1], "lock")) {
		if (arg && !lock_bytes(arg)) {
			fail();
			return 1;
		}
		say("setup\nready\n");
	} else if (!strcmp(argv[1], "leader-exit")) {
		pthread_t t;
		leader_bytes = arg;
		say("setup\n");
		if (pthread_create(&t, NULL, leader_exit_thread, NULL))
			return 1;
		pthread_exit(NULL);
	} else if (!strcmp(argv[1], "uring")) {
		struct io_uring_params params;
		memset(&params, 0, sizeof(params));
		int fd = syscall(SYS_io_uring_setup, 4, &params);
		if (fd < 0) {
			fail();
			return 1;
		}
		void *buf = mmap(NULL, arg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf == MAP_FAILED) {
			fail();
			return 1;
		}
		memset(buf, 1, arg);
		say("setup\n");
		if (wait_line())
			return 0;
		struct iovec iov = {.iov_base = buf, .iov_len = arg};
		if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1)) {
			fail();
			wait_eof();
			return 1;
		}
		say("ready\n");
	} else if (!strcmp(argv[1], "perf")) {
		struct perf_event_attr attr;
		memset(&attr, 0, sizeof(attr));
		attr.size = sizeof(attr);
		attr.type = PERF_TYPE_SOFTWARE;
		attr.config = PERF_COUNT_SW_DUMMY;
		attr.exclude_kernel = 1;
		attr.exclude_hv = 1;
		int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
		if (fd < 0) {
			fail();
			return 1;
		}
		say("setup\n");
		if (wait_line())
			return 0;
		if (mmap(NULL, (1 + arg) * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED) {
			fail();
			wait_eof();
			return 1;
		}
		say("ready\n");
	} else if (!strcmp(argv[1], "mlock")) {
		say("setup\n");
		if (wait_line())
			return 0;
		if (!lock_bytes(page) || !lock_bytes(arg)) {
			fail();
			wait_eof();
			return 1;
		}
		say("ready\n");
	} else if (!strncmp(argv[1], "fail-", 5)) {
		const char *kind = argv[1] + 5;
		long r = 0;
		int fd = -1;
		void *buf = NULL;
		say("setup\n");
		if (!strcmp(kind, "mlockall") && arg) {
			/* Address space reserved and never touched, as a JVM
			 * reserves its heap: mlockall(MCL_CURRENT) compares all
			 * of total_vm with the limit. */
			if (mmap(NULL, arg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED)
				fail();
		}
		if (!strcmp(kind, "uring") || !strcmp(kind, "uringv")) {
			struct io_uring_params params;
			memset(&params, 0, sizeof(params));
			fd = syscall(SYS_io_uring_setup, 4, &params);
			buf = mmap(NULL, 37 * arg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		}
		if (wait_line())
			return 0;
		errno = 0;
		if (!strcmp(kind, "mlock2")) {
			void *p = mmap(NULL, arg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			r = syscall(SYS_mlock2, p, arg, 0);
		} else if (!strcmp(kind, "mlockall")) {
			r = mlockall(MCL_CURRENT);
		} else if (!strcmp(kind, "mmap")) {
			r = mmap(NULL, arg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0) == MAP_FAILED ? -1 : 0;
		} else if (!strcmp(kind, "shm")) {
			r = shmctl((int)arg, SHM_LOCK, NULL);
		} else if (!strcmp(kind, "uring")) {
			struct iovec iov = {.iov_base = buf, .iov_len = arg};
			r = syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1);
		} else if (!strcmp(kind, "uringv")) {
			struct iovec iov[37];
			struct io_uring_rsrc_register rr;
			for (int i = 0; i < 37; i++) {
				iov[i].iov_base = (char *)buf + i * arg;
				iov[i].iov_len = arg;
			}
			memset(&rr, 0, sizeof(rr));
			rr.nr = 37;
			rr.data = (unsigned long)iov;
			r = syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS2, &rr, sizeof(rr));
		} else if (!strcmp(kind, "setrlimit")) {
			struct rlimit rl = {.rlim_cur = arg, .rlim_max = arg};
			r = syscall(SYS_setrlimit, RLIMIT_MEMLOCK, &rl); /* glibc would call prlimit64 */
		} else if (!strcmp(kind, "prlimit")) {
			struct rlimit rl = {.rlim_cur = arg, .rlim_max = arg};
			r = syscall(SYS_prlimit64, 0, RLIMIT_MEMLOCK, &rl, NULL);
		} else if (!strcmp(kind, "storm")) {
			void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			for (unsigned long i = 0; i < arg; i++)
				if (!mlock(p, 1 << 20))
					r = -2;
			if (r == 0) {
				r = -1;
				errno = ENOMEM;
			}
		}
		if (r == -1)
			fail();
		else
			say("ready\n");
		wait_eof();
		return 0;
	} else if (!strcmp(argv[1], "shmlock")) {
		say("setup\n");
		if (wait_line())
			return 0;
		if (shmctl((int)arg, SHM_LOCK, NULL)) {
			fail();
			wait_eof();
			return 1;
		}
		say("ready\n");
	} else {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	wait_eof();
	return 0;
}
