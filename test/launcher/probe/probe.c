/*
 * What a container may do, seen from inside: one syscall a row, each with arguments chosen so
 * that nothing changes whether or not the call is permitted. A call that the kernel reached
 * fails on its arguments (EINVAL, EFAULT, EBADF, ENOENT, ...) or succeeds as a no-op; one that a
 * seccomp filter or a missing capability stopped fails with EPERM, EACCES, EROFS or ENOSYS.
 *
 * Output, one line a row (test/launcher/probe.test.ts parses it, probe.sh prints the rest):
 *
 *     ROW <TAB> denied|allowed|n/a <TAB> detail
 *
 * Built by the test with `gcc -static -O2`; needs nothing inside the container.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int denied_errno(int e) {
  return e == EPERM || e == EACCES || e == EROFS || e == ENOSYS;
}

static void row(const char *name, const char *verdict, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void row(const char *name, const char *verdict, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  for (char *p = detail; *p; p++)
    if (*p == '\t' || *p == '\n') *p = ' ';
  printf("%s\t%s\t%s\n", name, verdict, detail);
  fflush(stdout);
}

/* The verdict for a call that returned r (errno e): what the call does is in `what`. */
static void verdict(const char *name, long r, int e, const char *what) {
  if (r >= 0)
    row(name, "allowed", "%s: succeeded (%ld)", what, r);
  else
    row(name, denied_errno(e) ? "denied" : "allowed", "%s: %s (%s)", what, strerrorname_np(e) ? strerrorname_np(e) : "?", strerror(e));
}

#define CALL(name, what, expr)        \
  do {                                \
    errno = 0;                        \
    long r_ = (long)(expr);           \
    verdict(name, r_, errno, what);   \
  } while (0)

/*
 * Run fn in a child process and report its result: for calls whose success changes the
 * calling process (namespaces, I/O permissions), so that the probe itself stays as it was.
 * The child returns 0 for success or the errno through its exit status.
 */
static void in_child(const char *name, const char *what, int (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    row(name, "n/a", "%s: fork: %s", what, strerror(errno));
    return;
  }
  if (pid == 0) {
    errno = 0;
    int r = fn();
    _exit(r < 0 ? (errno & 0xff) : 0);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st)) {
    row(name, "n/a", "%s: child did not exit normally (status %#x)", what, st);
    return;
  }
  int e = WEXITSTATUS(st);
  verdict(name, e ? -1 : 0, e, what);
}

static int do_unshare_ns(void) { return unshare(CLONE_NEWNS); }
static int do_unshare_user(void) { return unshare(CLONE_NEWUSER); }
#if defined(__x86_64__) || defined(__i386__)
static int do_ioperm(void) { return (int)syscall(SYS_ioperm, 0x80UL, 1UL, 1); }
static int do_iopl(void) { return (int)syscall(SYS_iopl, 3); }
#endif

int main(void) {
  char tmpl[] = "/tmp/probe.XXXXXX";
  const char *scratch = mkdtemp(tmpl);
  if (!scratch) {
    fprintf(stderr, "probe: mkdtemp /tmp: %s\n", strerror(errno));
  }

  /* Keys: invalid arguments (a NULL type / description) fail with EFAULT once reached. */
  CALL("add_key", "add_key(NULL type)", syscall(SYS_add_key, NULL, NULL, NULL, 0, 0));
  CALL("keyctl", "keyctl(unknown op 0x7fff)", syscall(SYS_keyctl, 0x7fff, 0, 0, 0, 0));
  CALL("request_key", "request_key(NULL type)", syscall(SYS_request_key, NULL, NULL, NULL, 0));

  /* bpf: an unknown command (EINVAL once reached). */
  CALL("bpf", "bpf(cmd -1, NULL, 0)", syscall(SYS_bpf, -1, NULL, 0));
  /* perf_event_open: NULL attr (EFAULT once reached). */
  CALL("perf_event_open", "perf_event_open(NULL attr)", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));

  /*
   * kexec: after the capability check, flags outside KEXEC_FLAGS (0x8000) and too many
   * segments both fail with EINVAL before anything is loaded or unloaded.
   */
  CALL("kexec_load", "kexec_load(65535 segments, bad flags)", syscall(SYS_kexec_load, 0UL, 0xffffUL, NULL, 0x8000UL));
#ifdef SYS_kexec_file_load
  CALL("kexec_file_load", "kexec_file_load(-1, -1, bad flags)", syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0x8000UL));
#else
  row("kexec_file_load", "n/a", "no such syscall on this architecture");
#endif

  /* Modules: an empty image (ENOEXEC), fd -1 (EBADF), a module that does not exist (ENOENT). */
  CALL("init_module", "init_module(empty image)", syscall(SYS_init_module, "", 0UL, ""));
  CALL("finit_module", "finit_module(-1)", syscall(SYS_finit_module, -1, "", 0));
  CALL("delete_module", "delete_module(no such module)", syscall(SYS_delete_module, "layerfs_probe_no_such_module", O_NONBLOCK));

  /* open_by_handle_at: mount fd -1 (EBADF) or NULL handle (EFAULT) once past the capability. */
  CALL("open_by_handle_at", "open_by_handle_at(-1, NULL)", syscall(SYS_open_by_handle_at, -1, NULL, O_RDONLY));
  CALL("name_to_handle_at", "name_to_handle_at(/, NULL)", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));

  /* userfaultfd: a new fd, closed at once. */
  {
    errno = 0;
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    if (fd >= 0) close((int)fd);
    verdict("userfaultfd", fd, e, "userfaultfd(O_CLOEXEC)");
  }

  /* Swap: a path that does not exist (ENOENT once past CAP_SYS_ADMIN). */
  CALL("swapon", "swapon(nonexistent path)", syscall(SYS_swapon, "/layerfs-probe-no-such-swap", 0));
  CALL("swapoff", "swapoff(nonexistent path)", syscall(SYS_swapoff, "/layerfs-probe-no-such-swap"));

  /* reboot: wrong magic numbers fail with EINVAL after the capability check. */
  CALL("reboot", "reboot(bad magic)", syscall(SYS_reboot, 0, 0, 0, NULL));

  /* Time: a clock id that does not exist (EINVAL); settimeofday(NULL, NULL) sets nothing. */
  {
    struct timespec ts = {0, 0};
    CALL("clock_settime", "clock_settime(clock 100)", syscall(SYS_clock_settime, 100, &ts));
  }
  CALL("settimeofday", "settimeofday(NULL, NULL)", syscall(SYS_settimeofday, NULL, NULL));

  /* syslog: SYSLOG_ACTION_SIZE_BUFFER (10) only returns the buffer's size. */
  CALL("syslog", "syslog(SIZE_BUFFER)", syscall(SYS_syslog, 10, NULL, 0));

  /* Mounts, all inside the container's own mount namespace. */
  if (scratch) {
    char dir[256], file[256];
    snprintf(dir, sizeof dir, "%s/mnt", scratch);
    mkdir(dir, 0700);
    errno = 0;
    long r = mount("none", dir, "tmpfs", 0, "size=4k");
    int e = errno;
    if (r == 0) umount2(dir, MNT_DETACH);
    verdict("mount", r, e, "mount(tmpfs on a dir in /tmp)");
    /* The dir is not a mount point: EINVAL once past the capability check. */
    CALL("umount2", "umount2(not a mount point)", umount2(dir, 0));
    rmdir(dir);

    snprintf(file, sizeof file, "%s/null", scratch);
    errno = 0;
    r = mknod(file, S_IFCHR | 0600, makedev(1, 3));
    e = errno;
    if (r == 0) unlink(file);
    verdict("mknod", r, e, "mknod(c 1 3 in /tmp)");
  } else {
    row("mount", "n/a", "no scratch dir in /tmp");
    row("umount2", "n/a", "no scratch dir in /tmp");
    row("mknod", "n/a", "no scratch dir in /tmp");
  }
  /* The new mount API: a filesystem context, closed at once. */
#ifdef SYS_fsopen
  {
    errno = 0;
    long fd = syscall(SYS_fsopen, "tmpfs", 0x1 /* FSOPEN_CLOEXEC */);
    int e = errno;
    if (fd >= 0) close((int)fd);
    verdict("fsopen", fd, e, "fsopen(tmpfs)");
  }
#else
  row("fsopen", "n/a", "no such syscall in these headers");
#endif
  CALL("pivot_root", "pivot_root(nonexistent paths)", syscall(SYS_pivot_root, "/layerfs-probe-no-such-a", "/layerfs-probe-no-such-b"));

  /* Namespaces: unshare in a child (that then exits); setns with fd -1 (EBADF). */
  in_child("unshare(CLONE_NEWNS)", "unshare(CLONE_NEWNS) in a child", do_unshare_ns);
  in_child("unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWUSER) in a child", do_unshare_user);
  CALL("setns", "setns(-1, 0)", syscall(SYS_setns, -1, 0));

  /* personality: READ_IMPLIES_EXEC, then back to what it was. */
  {
    int old = personality(0xffffffff);
    errno = 0;
    long r = personality(READ_IMPLIES_EXEC);
    int e = errno;
    if (r != -1) personality((unsigned long)old);
    verdict("personality(READ_IMPLIES_EXEC)", r == -1 ? -1 : 0, e, "personality(0x0400000)");
  }

  /* A device node from the image (1:11, /dev/kmsg): the device cgroup (or nodev) must refuse it. */
  {
    const char *node = "/probe/dev-kmsg";
    struct stat st;
    if (lstat(node, &st) != 0 || !S_ISCHR(st.st_mode)) {
      row("open(image char dev 1:11)", "n/a", "%s is not a character device in the image", node);
    } else {
      errno = 0;
      int fd = open(node, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      int e = errno;
      if (fd < 0) {
        verdict("open(image char dev 1:11)", -1, e, "open(/probe/dev-kmsg, O_RDONLY)");
      } else {
        char c;
        errno = 0;
        ssize_t n = read(fd, &c, 1);
        e = errno;
        close(fd);
        row("open(image char dev 1:11)", "allowed", "opened; read: %zd%s%s", n, n < 0 ? " " : "", n < 0 ? strerrorname_np(e) : "");
      }
    }
  }

  /* sethostname to the name it has already: a no-op (the UTS namespace is the container's). */
  {
    char name[256] = {0};
    if (gethostname(name, sizeof name - 1) != 0) {
      row("sethostname(same name)", "n/a", "gethostname: %s", strerror(errno));
    } else {
      CALL("sethostname(same name)", "sethostname(its own name)", sethostname(name, strlen(name)));
    }
  }

#if defined(__x86_64__) || defined(__i386__)
  /* Port I/O permissions, in a child that exits at once without any I/O. */
  in_child("ioperm", "ioperm(0x80, 1, on) in a child", do_ioperm);
  in_child("iopl", "iopl(3) in a child", do_iopl);
#else
  row("ioperm", "n/a", "not x86");
  row("iopl", "n/a", "not x86");
#endif

  if (scratch) rmdir(scratch);
  return 0;
}
