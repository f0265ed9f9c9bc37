/*
 * layerfs_exec: runs a command inside a running container, for `layerfs exec CONTAINER CMD...`.
 *
 * Node cannot enter a container itself: setns(CLONE_NEWNS) and setns(CLONE_NEWUSER) refuse a
 * multi-threaded process, and a chroot into /proc/PID/root would be escapable by a process
 * holding CAP_SYS_CHROOT. This small single-threaded program does the entering; the engine's CLI
 * prepares everything (the container's PID 1, its capabilities, the compiled seccomp program, a
 * pty for -t) and runs it, as root, with the stdio CMD is to get.
 *
 *   layerfs_exec --pid N --uid U --gid G --caps HEX --cwd DIR [--groups G1,G2,...]
 *                [--cgroup-procs FILE]... [--no-new-privs] [--seccomp-fd FD] [--tty] -- CMD [ARG...]
 *
 * --pid N            the container's PID 1 as the host sees it
 * --cgroup-procs F   (repeatable) a cgroup.procs file the helper writes its pid to, before it
 *                    enters any namespace: CMD is born in the container's cgroups
 * --uid/--gid        CMD's ids, in the container's user namespace
 * --groups LIST      CMD's supplementary groups ("" or absent: none); left alone when the
 *                    container's user namespace denies setgroups (as runc does)
 * --caps HEX         CMD's capabilities (bit N = capability N, as CapEff in /proc/PID/status):
 *                    bounding set = effective = permitted = HEX, inheritable and ambient empty.
 *                    For a uid other than 0 execve() then empties effective and permitted (no
 *                    ambient set): such a CMD keeps HEX as its bounding set only, as with docker.
 * --no-new-privs     PR_SET_NO_NEW_PRIVS (also set whenever --seccomp-fd is given)
 * --seccomp-fd FD    (FD >= 3) a raw classic-BPF program (struct sock_filter[], at most 4096),
 *                    read to EOF at the start; loaded last, right before execve()
 * --cwd DIR          absolute; CMD's working directory inside the container
 * --tty              fds 0/1/2 are a terminal: CMD gets it as its controlling terminal
 *
 * Steps: options checked (any problem: one line, exit 125, nothing done); every descriptor above 2
 * marked close-on-exec; the seccomp program read; /proc/N opened and every namespace file of it
 * opened through that directory, with N's start time (stat field 22) read before and after (a
 * change: the process is gone); the cgroup.procs files written; the namespaces that differ from
 * the helper's own joined (user, ipc, uts, net, pid, cgroup, time, mnt); chdir(DIR). Then a fork:
 * setns(pid) only places children in the container's PID namespace. The parent forwards SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to the child, waits for it and exits
 * with its status (128+N for signal N). The child (PR_SET_PDEATHSIG SIGKILL) takes the terminal,
 * drops to the container's rules (no_new_privs, bounding set, ambient set, groups, gid, uid,
 * capabilities), loads the seccomp filter and executes CMD, found in the PATH of this program's
 * environment (the environment CMD gets, as is), in the container's files.
 *
 * Exit status: CMD's; 125 when the container cannot be entered; 126 when DIR cannot be entered or
 * CMD cannot be executed; 127 when CMD does not exist (docker's statuses). Errors are one line on
 * stderr: `layerfs exec: <what>: <reason>`.
 *
 * Namespaces: with a user namespace to join, the others are joined first where the helper's own
 * capabilities allow it (root's do), then the user namespace, then the rest with the capabilities
 * it gives. The helper is non-dumpable until execve(), so the container's processes cannot ptrace
 * it while it still holds its privileges.
 *
 * C11 and libc only (Linux >= 5.11 for close_range), built by binding.gyp (target layerfs_exec)
 * into build/Release/.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_ENTER 125    /* the container could not be entered (or bad options) */
#define EXIT_CANNOT 126   /* CMD (or the working directory) cannot be used */
#define EXIT_NOTFOUND 127 /* CMD does not exist */
#define MAX_BPF_INSNS 4096 /* BPF_MAXINSNS */
#define MAX_GROUPS 65536   /* the kernel's NGROUPS_MAX */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

/* One line on stderr, in one write() where memory allows; then _exit(status). */
static _Noreturn void die(int status, const char *fmt, ...) {
  va_list ap;
  char *msg = NULL;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n >= 0) dprintf(STDERR_FILENO, "layerfs exec: %s\n", msg);
  else dprintf(STDERR_FILENO, "layerfs exec: %s (and out of memory)\n", fmt);
  _exit(status);
}

/* ------------------------------------------------------------------ options */

struct options {
  long pid;
  const char **cgroup_procs;
  size_t n_cgroup_procs;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t n_groups;
  uint64_t caps;
  bool no_new_privs, tty;
  int seccomp_fd;
  const char *cwd;
  char **cmd;
};

/* A decimal number 0..max, digits only. */
static bool parse_dec(const char *s, unsigned long long max, unsigned long long *out) {
  if (!*s) return false;
  unsigned long long v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* The decimal number at the start of s (up to a space or the end). */
static bool parse_dec_prefix(const char *s, unsigned long long *out) {
  size_t n = strcspn(s, " \n");
  char num[24];
  if (n >= sizeof num) return false;
  memcpy(num, s, n);
  num[n] = '\0';
  return parse_dec(num, ULLONG_MAX, out);
}

/* 1 to 16 hex digits, with or without 0x. */
static bool parse_hex64(const char *s, uint64_t *out) {
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  size_t n = strlen(s);
  if (n < 1 || n > 16) return false;
  uint64_t v = 0;
  for (; *s; s++) {
    int d = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10 : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return true;
}

/* "G1,G2,..." (or "": none) into a malloc'd array. */
static bool parse_groups(const char *s, gid_t **out, size_t *n) {
  size_t count = *s ? 1 : 0;
  for (const char *p = s; *p; p++) count += *p == ',';
  if (count > MAX_GROUPS) return false;
  gid_t *g = calloc(count ? count : 1, sizeof *g);
  if (!g) die(EXIT_ENTER, "out of memory");
  for (size_t i = 0; i < count; i++) {
    const char *end = strchrnul(s, ',');
    char num[16];
    unsigned long long v;
    if (end - s < 1 || (size_t)(end - s) >= sizeof num) return free(g), false;
    memcpy(num, s, (size_t)(end - s));
    num[end - s] = '\0';
    if (!parse_dec(num, 4294967294ULL, &v)) return free(g), false;
    g[i] = (gid_t)v;
    s = *end ? end + 1 : end;
  }
  *out = g;
  *n = count;
  return true;
}

static void parse_options(int argc, char **argv, struct options *o) {
  enum { PID = 1, UID = 2, GID = 4, GROUPS = 8, CAPS = 16, NNP = 32, SECCOMP = 64, CWD = 128, TTY = 256 };
  unsigned seen = 0;
  memset(o, 0, sizeof *o);
  o->seccomp_fd = -1;
  o->cgroup_procs = calloc((size_t)argc, sizeof *o->cgroup_procs);
  if (!o->cgroup_procs) die(EXIT_ENTER, "out of memory");
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *name = argv[i];
    static const struct { const char *name; unsigned bit; bool value; } known[] = {
        {"--pid", PID, true},      {"--uid", UID, true},   {"--gid", GID, true},
        {"--groups", GROUPS, true}, {"--caps", CAPS, true}, {"--no-new-privs", NNP, false},
        {"--seccomp-fd", SECCOMP, true}, {"--cwd", CWD, true}, {"--tty", TTY, false},
        {"--cgroup-procs", 0, true}};
    size_t k = 0, nk = sizeof known / sizeof known[0];
    while (k < nk && strcmp(name, known[k].name) != 0) k++;
    if (k == nk) die(EXIT_ENTER, "unknown option '%s' (the command goes after --)", name);
    if (known[k].bit & seen) die(EXIT_ENTER, "%s given twice", name);
    seen |= known[k].bit;
    const char *v = NULL;
    if (known[k].value) {
      if (i + 1 >= argc) die(EXIT_ENTER, "%s needs a value", name);
      v = argv[++i];
    }
    unsigned long long n;
    switch (known[k].bit) {
    case PID:
      if (!parse_dec(v, INT32_MAX, &n) || n < 1) die(EXIT_ENTER, "--pid: '%s' is not a process id", v);
      o->pid = (long)n;
      break;
    case UID:
      if (!parse_dec(v, 4294967294ULL, &n)) die(EXIT_ENTER, "--uid: '%s' is not a user id", v);
      o->uid = (uid_t)n;
      break;
    case GID:
      if (!parse_dec(v, 4294967294ULL, &n)) die(EXIT_ENTER, "--gid: '%s' is not a group id", v);
      o->gid = (gid_t)n;
      break;
    case GROUPS:
      if (!parse_groups(v, &o->groups, &o->n_groups)) die(EXIT_ENTER, "--groups: '%s' is not a list of group ids", v);
      break;
    case CAPS:
      if (!parse_hex64(v, &o->caps)) die(EXIT_ENTER, "--caps: '%s' is not a 64-bit hex mask", v);
      break;
    case NNP: o->no_new_privs = true; break;
    case SECCOMP:
      if (!parse_dec(v, INT32_MAX, &n) || n < 3) die(EXIT_ENTER, "--seccomp-fd: '%s' is not a descriptor number of 3 or more", v);
      o->seccomp_fd = (int)n;
      break;
    case CWD:
      if (v[0] != '/') die(EXIT_ENTER, "--cwd: '%s' is not an absolute path", v);
      o->cwd = v;
      break;
    case TTY: o->tty = true; break;
    default: o->cgroup_procs[o->n_cgroup_procs++] = v; /* --cgroup-procs */
    }
  }
  static const struct { unsigned bit; const char *name; } required[] = {
      {PID, "--pid"}, {UID, "--uid"}, {GID, "--gid"}, {CAPS, "--caps"}, {CWD, "--cwd"}};
  for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
    if (!(seen & required[k].bit)) die(EXIT_ENTER, "%s is required", required[k].name);
  if (i >= argc) die(EXIT_ENTER, "no -- before the command");
  if (i + 1 >= argc) die(EXIT_ENTER, "no command after --");
  o->cmd = argv + i + 1;
}

/* ------------------------------------------------------------------ files */

/* All of fd up to max bytes (more: errno EFBIG), malloc'd and NUL-terminated; NULL with errno.
 * A non-blocking descriptor (a pipe the caller filled from its event loop) is waited for. */
static char *read_all(int fd, size_t max, size_t *len) {
  size_t cap = 512, n = 0; /* n <= max < cap / 2 after any growth: no overflow */
  char *p = malloc(cap);
  if (!p) return NULL;
  for (;;) {
    if (n + 1 >= cap) {
      char *q = realloc(p, cap * 2);
      if (!q) {
        free(p);
        errno = ENOMEM;
        return NULL;
      }
      p = q;
      cap *= 2;
    }
    ssize_t r = read(fd, p + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {fd, POLLIN, 0};
      if (poll(&pfd, 1, -1) >= 0 || errno == EINTR) continue;
    }
    if (r < 0) {
      int e = errno;
      free(p);
      errno = e;
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n > max) {
      free(p);
      errno = EFBIG;
      return NULL;
    }
  }
  p[n] = '\0';
  if (len) *len = n;
  return p;
}

/* A small file under dir (at most 64 KiB), malloc'd; NULL with errno. */
static char *read_file_at(int dir, const char *path) {
  int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  char *s = read_all(fd, 65536, NULL);
  int e = errno;
  close(fd);
  errno = e;
  return s;
}

/* Field 22 of /proc/N/stat (the start time), read through /proc/N; false when it cannot be read
 * (the process is gone). */
static bool start_time(int procfd, unsigned long long *t) {
  char *s = read_file_at(procfd, "stat");
  if (!s) return false;
  char *p = strrchr(s, ')'); /* the name (field 2) may hold anything */
  bool found = false;
  for (int field = 2; p && *p; p++) /* fields are separated by single spaces */
    if (*p == ' ' && ++field == 22) {
      found = parse_dec_prefix(p + 1, t);
      break;
    }
  free(s);
  return found;
}

static bool same_process(int procfd, unsigned long long started) {
  unsigned long long now;
  return start_time(procfd, &now) && now == started;
}

/* ------------------------------------------------------------------ namespaces */

struct ns {
  const char *name;
  int type;
  int fd;     /* the container's, until joined */
  bool enter; /* it differs from the helper's own */
};

/* The user namespace first, the mount namespace last (it changes the root). */
enum { NS_USER, NS_IPC, NS_UTS, NS_NET, NS_PID, NS_CGROUP, NS_TIME, NS_MNT };
static struct ns namespaces[] = {
    {"user", CLONE_NEWUSER, -1, false}, {"ipc", CLONE_NEWIPC, -1, false},       {"uts", CLONE_NEWUTS, -1, false},
    {"net", CLONE_NEWNET, -1, false},   {"pid", CLONE_NEWPID, -1, false},       {"cgroup", CLONE_NEWCGROUP, -1, false},
    {"time", CLONE_NEWTIME, -1, false}, {"mnt", CLONE_NEWNS, -1, false}};
#define N_NS (sizeof namespaces / sizeof namespaces[0])

static void join(struct ns *n, bool may_wait_for_userns) {
  if (!n->enter || n->fd < 0) return;
  if (setns(n->fd, n->type) < 0) {
    if (may_wait_for_userns && errno == EPERM) return; /* again once in the user namespace */
    die(EXIT_ENTER, "cannot join the container's %s namespace: %s", n->name, strerror(errno));
  }
  if (close(n->fd) < 0) die(EXIT_ENTER, "close: %s", strerror(errno));
  n->fd = -1;
}

/* ------------------------------------------------------------------ the child: CMD */

static _Noreturn void exec_failed(const char *cmd, int e) {
  die(e == ENOENT || e == ENOTDIR ? EXIT_NOTFOUND : EXIT_CANNOT, "%s: %s", cmd, strerror(e));
}

/* execvp() without its fallbacks (no /bin/sh for ENOEXEC): PATH from our environment. */
static _Noreturn void exec_cmd(char **argv) {
  const char *cmd = argv[0];
  if (strchr(cmd, '/')) {
    execve(cmd, argv, environ);
    exec_failed(cmd, errno);
  }
  const char *path = getenv("PATH");
  if (!path) path = DEFAULT_PATH;
  bool denied = false;
  size_t clen = strlen(cmd);
  for (const char *dir = path;;) {
    const char *end = strchrnul(dir, ':');
    size_t dlen = (size_t)(end - dir);
    char *full = malloc(dlen + clen + 3);
    if (!full) die(EXIT_CANNOT, "out of memory");
    if (dlen == 0) strcpy(full, "./"); /* an empty entry is the working directory */
    else {
      memcpy(full, dir, dlen);
      full[dlen] = '/';
      full[dlen + 1] = '\0';
    }
    strcat(full, cmd);
    execve(full, argv, environ);
    int e = errno;
    free(full);
    if (e == EACCES) denied = true;
    else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT && e != ELOOP && e != ENAMETOOLONG)
      exec_failed(cmd, e); /* found, but it cannot run (ENOEXEC, E2BIG, ...) */
    if (!*end) break;
    dir = end + 1;
  }
  if (denied) exec_failed(cmd, EACCES);
  die(EXIT_NOTFOUND, "%s: executable file not found in $PATH", cmd);
}

struct child_setup {
  const struct options *o;
  const sigset_t *mask;        /* to restore */
  pid_t parent;                /* the parent's pid as the child sees it (0: outside its PID ns) */
  bool skip_setgroups;         /* the container's user namespace denies setgroups */
  bool chdir_as_user;          /* DIR was not accessible to root: try again as the user (runc) */
  struct sock_fprog *filter;   /* or NULL */
  int last_cap;
};

static _Noreturn void child(const struct child_setup *c) {
  const struct options *o = c->o;
  if (sigprocmask(SIG_SETMASK, c->mask, NULL) < 0) die(EXIT_ENTER, "sigprocmask: %s", strerror(errno));
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_ENTER, "PR_SET_PDEATHSIG: %s", strerror(errno));
  if (getppid() != c->parent) _exit(EXIT_ENTER); /* the parent is gone already */
  if (o->tty) {
    if (setsid() < 0) die(EXIT_ENTER, "setsid: %s", strerror(errno));
    if (ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0) die(EXIT_ENTER, "cannot take the terminal (TIOCSCTTY): %s", strerror(errno));
  }
  if ((o->no_new_privs || c->filter) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die(EXIT_ENTER, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
  for (int cap = 0; cap <= c->last_cap; cap++)
    if (!(o->caps >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      die(EXIT_ENTER, "cannot drop capability %d from the bounding set: %s", cap, strerror(errno));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die(EXIT_ENTER, "cannot clear the ambient capabilities: %s", strerror(errno));
  if (!c->skip_setgroups && setgroups(o->n_groups, o->groups) < 0)
    die(EXIT_ENTER, "cannot set the supplementary groups: %s", strerror(errno));
  if (setresgid(o->gid, o->gid, o->gid) < 0) die(EXIT_ENTER, "cannot set gid %u: %s", (unsigned)o->gid, strerror(errno));
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die(EXIT_ENTER, "PR_SET_KEEPCAPS: %s", strerror(errno));
  if (setresuid(o->uid, o->uid, o->uid) < 0) die(EXIT_ENTER, "cannot set uid %u: %s", (unsigned)o->uid, strerror(errno));
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = (uint32_t)o->caps;
  data[1].effective = data[1].permitted = (uint32_t)(o->caps >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) die(EXIT_ENTER, "cannot set the capabilities %llx: %s", (unsigned long long)o->caps, strerror(errno));
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) die(EXIT_ENTER, "PR_SET_KEEPCAPS: %s", strerror(errno));
  if (c->chdir_as_user && chdir(o->cwd) < 0) die(EXIT_CANNOT, "working directory %s: %s", o->cwd, strerror(errno));
  /* A change of credentials cleared the parent-death signal. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_ENTER, "PR_SET_PDEATHSIG: %s", strerror(errno));
  if (getppid() != c->parent) _exit(EXIT_ENTER);
  /* Last: from here on every syscall goes through the container's filter (write(2) and exit
   * included, which the error paths below need). */
  if (c->filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c->filter, 0, 0) < 0)
    die(EXIT_ENTER, "cannot load the seccomp filter: %s", strerror(errno));
  exec_cmd(o->cmd);
}

/* ------------------------------------------------------------------ the parent */

static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

/* Waits for the child, passing it the signals we get; exits with its status. */
static _Noreturn void parent(pid_t pid, const sigset_t *waited) {
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(waited, &si);
    if (sig < 0) {
      if (errno == EINTR) continue;
      kill(pid, SIGKILL);
      die(EXIT_ENTER, "sigwaitinfo: %s", strerror(errno));
    }
    if (sig != SIGCHLD) {
      if (kill(pid, sig) < 0 && errno != ESRCH) die(EXIT_ENTER, "cannot forward signal %d: %s", sig, strerror(errno));
      continue;
    }
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR) {}
    if (r < 0) die(EXIT_ENTER, "waitpid: %s", strerror(errno));
    if (r == pid) exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  struct options o;
  parse_options(argc, argv, &o);

  /* Nothing of the caller's but stdio reaches CMD; no ptrace by the container until execve(). */
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) die(EXIT_ENTER, "close_range: %s", strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die(EXIT_ENTER, "PR_SET_DUMPABLE: %s", strerror(errno));
  if (o.tty && !isatty(STDIN_FILENO)) die(EXIT_ENTER, "--tty: standard input is not a terminal");

  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  char *s = fd < 0 ? NULL : read_all(fd, 64, NULL);
  if (!s || close(fd) < 0) die(EXIT_ENTER, "/proc/sys/kernel/cap_last_cap: %s", strerror(errno));
  unsigned long long last;
  if (!parse_dec_prefix(s, &last) || last > 63) die(EXIT_ENTER, "/proc/sys/kernel/cap_last_cap: unexpected content");
  free(s);
  int last_cap = (int)last;
  if (last_cap < 63 && o.caps >> (last_cap + 1))
    die(EXIT_ENTER, "--caps: %llx names capabilities above %d, the last this kernel has", (unsigned long long)o.caps, last_cap);

  struct sock_fprog filter = {0, NULL}, *filterp = NULL;
  if (o.seccomp_fd >= 0) {
    size_t len;
    char *prog = read_all(o.seccomp_fd, MAX_BPF_INSNS * sizeof(struct sock_filter), &len);
    if (!prog) die(EXIT_ENTER, "cannot read the seccomp program from descriptor %d: %s", o.seccomp_fd, errno == EFBIG ? "more than 4096 instructions" : strerror(errno));
    if (close(o.seccomp_fd) < 0) die(EXIT_ENTER, "close(%d): %s", o.seccomp_fd, strerror(errno));
    if (len == 0 || len % sizeof(struct sock_filter)) die(EXIT_ENTER, "the seccomp program is %zu bytes, not a positive multiple of 8", len);
    filter.len = (unsigned short)(len / sizeof(struct sock_filter));
    filter.filter = (struct sock_filter *)prog;
    filterp = &filter;
  }

  /* The container's process, and its namespaces through it: all opened before any is joined. */
  char procpath[32];
  snprintf(procpath, sizeof procpath, "/proc/%ld", o.pid);
  int procfd = open(procpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) die(EXIT_ENTER, "the container's process %ld: %s", o.pid, strerror(errno));
  unsigned long long started;
  if (!start_time(procfd, &started)) die(EXIT_ENTER, "the container's process is gone");
  bool user_setgroups_denied = false;
  for (size_t i = 0; i < N_NS; i++) {
    struct ns *n = &namespaces[i];
    char path[16], self[32];
    snprintf(path, sizeof path, "ns/%s", n->name);
    n->fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (n->fd < 0 && errno == ENOENT && n->type == CLONE_NEWTIME) continue; /* a kernel without them */
    if (n->fd < 0) {
      int e = errno;
      if (!same_process(procfd, started)) die(EXIT_ENTER, "the container's process is gone");
      die(EXIT_ENTER, "%s/%s: %s", procpath, path, strerror(e));
    }
    struct stat theirs, ours;
    snprintf(self, sizeof self, "/proc/self/ns/%s", n->name);
    if (fstat(n->fd, &theirs) < 0) die(EXIT_ENTER, "%s/%s: %s", procpath, path, strerror(errno));
    if (stat(self, &ours) < 0) die(EXIT_ENTER, "%s: %s", self, strerror(errno));
    n->enter = theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino;
  }
  if (namespaces[NS_USER].enter) {
    char *sg = read_file_at(procfd, "setgroups");
    if (!sg) die(EXIT_ENTER, "%s/setgroups: %s", procpath, strerror(errno));
    user_setgroups_denied = strncmp(sg, "deny", 4) == 0;
    free(sg);
  }
  if (!same_process(procfd, started)) die(EXIT_ENTER, "the container's process is gone");
  if (close(procfd) < 0) die(EXIT_ENTER, "close: %s", strerror(errno));

  /* The container's cgroups, while the host's files are still ours. */
  for (size_t i = 0; i < o.n_cgroup_procs; i++) {
    char num[24];
    int len = snprintf(num, sizeof num, "%d", (int)getpid());
    int cfd = open(o.cgroup_procs[i], O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (cfd < 0 || write(cfd, num, (size_t)len) != len) die(EXIT_ENTER, "cgroup %s: %s", o.cgroup_procs[i], strerror(errno));
    if (close(cfd) < 0) die(EXIT_ENTER, "cgroup %s: %s", o.cgroup_procs[i], strerror(errno));
  }

  /* Signals wait until there is a child to pass them to (sigwaitinfo in parent()). */
  sigset_t waited, old;
  sigemptyset(&waited);
  for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++) sigaddset(&waited, FORWARDED[i]);
  sigaddset(&waited, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &waited, &old) < 0) die(EXIT_ENTER, "sigprocmask: %s", strerror(errno));
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  if (sigaction(SIGCHLD, &dfl, NULL) < 0) die(EXIT_ENTER, "sigaction: %s", strerror(errno)); /* not SIG_IGN: we reap */

  bool user = namespaces[NS_USER].enter;
  if (user) {
    for (size_t i = 1; i < N_NS; i++) join(&namespaces[i], true);
    join(&namespaces[NS_USER], false);
  }
  for (size_t i = 1; i < N_NS; i++) join(&namespaces[i], false);

  bool chdir_as_user = false;
  if (chdir(o.cwd) < 0) {
    if (errno != EACCES) die(EXIT_CANNOT, "working directory %s: %s", o.cwd, strerror(errno));
    chdir_as_user = true;
  }

  struct child_setup c = {&o, &old, namespaces[NS_PID].enter ? 0 : getpid(), user && user_setgroups_denied, chdir_as_user, filterp, last_cap};
  pid_t pid = fork();
  if (pid < 0) die(EXIT_ENTER, "fork: %s", strerror(errno));
  if (pid == 0) child(&c);
  parent(pid, &waited);
}
