/*
 * layerfs_client: the `layerfs` command's native front (bin/layerfs execs it when it is built).
 *
 * Node takes 70-90 ms to start, and `layerfs mount`/`umount` must take a few ms: podman runs
 * `layerfs -o lowerdir=...,upperdir=...,workdir=... MNT` as its mount_program for every
 * container. The engine, the long-running daemon that serves every FUSE mount, answers an
 * HTTP/1.1+JSON API on a unix socket; this program forwards its command line there
 * (POST /v1/cli {"argv":[...],"cwd":"..."}) and reproduces the answer: the engine's stdout and
 * stderr bytes, its exit status.
 *
 * It runs the Node CLI (R/bin/layerfs.mjs, R three levels above /proc/self/exe, which is
 * R/build/Release/layerfs_client) with the same arguments instead when the engine cannot take
 * the command, silently:
 *   - the socket cannot be reached (no engine, refused, permission denied, path too long);
 *   - the command line cannot be sent as JSON text (not UTF-8, over 1 MiB, no cwd);
 *   - the engine answers {"fallback": true} (it did nothing).
 * Once the request is on its way it never runs node: the engine may have acted (mounted)
 * already. An answer lost after that is one line on stderr, `layerfs: lost the engine's answer
 * (<reason>)`, and exit status 1.
 *
 * The engine's directory: $LAYERFS_ENGINE_DIR, else /run/layerfs for root, else
 * $XDG_RUNTIME_DIR/layerfs, else /tmp/layerfs-<uid>/layerfs; the socket is engine.sock in it.
 *
 * C11 and libc only, built by binding.gyp (target layerfs_client) into build/Release/.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_ARGV_BYTES ((size_t)1 << 20)   /* a longer command line goes to node */
#define MAX_ANSWER_BYTES ((size_t)16 << 20) /* a longer answer is an error */
#define MAX_JSON_DEPTH 64                   /* nesting of the values skipped in the answer */

static int g_argc;
static char **g_argv;
static struct sigaction g_old_sigpipe;
static bool g_sigpipe_changed;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdprintf(STDERR_FILENO, fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------------ the Node CLI fallback */

/* R, the repository root: /proc/self/exe without its last three components (malloc'd). */
static char *repo_root(void) {
  for (size_t cap = 256; cap <= ((size_t)1 << 16); cap *= 2) {
    char *p = malloc(cap);
    if (!p) return NULL;
    ssize_t n = readlink("/proc/self/exe", p, cap);
    if (n < 0) {
      int e = errno;
      free(p);
      errno = e;
      return NULL;
    }
    if ((size_t)n < cap) {
      p[n] = '\0';
      for (int i = 0; i < 3; i++) {
        char *slash = strrchr(p, '/');
        if (!slash) {
          free(p);
          errno = ENOENT;
          return NULL;
        }
        *slash = '\0';
      }
      return p; /* "" when R is / */
    }
    free(p);
  }
  errno = ENAMETOOLONG;
  return NULL;
}

/* execv node -- R/bin/layerfs.mjs ARGS...; only returns by exiting 127. The "--" keeps node from
 * taking options of ours for its own (Node 20 takes --env-file even after the script name). */
static _Noreturn void run_node(void) {
  /* An ignored signal stays ignored across execve: give node SIGPIPE as it was given to us. */
  if (g_sigpipe_changed) sigaction(SIGPIPE, &g_old_sigpipe, NULL);
  const char *node = getenv("LAYERFS_NODE");
  if (!node || !*node) node = "/usr/bin/node";
  static const char tail[] = "/bin/layerfs.mjs";
  char *root = repo_root();
  char *script = root ? malloc(strlen(root) + sizeof tail) : NULL;
  char **argv = script ? calloc((size_t)g_argc + 3, sizeof *argv) : NULL;
  if (argv) {
    strcpy(stpcpy(script, root), tail);
    argv[0] = (char *)node;
    argv[1] = "--";
    argv[2] = script;
    for (int i = 1; i < g_argc; i++) argv[i + 2] = g_argv[i];
    argv[g_argc + 2] = NULL;
    execv(node, argv);
  }
  say("layerfs: cannot start node (%s)\n", strerror(errno));
  _exit(127);
}

/* ------------------------------------------------------------------ a growable buffer */

struct buf {
  char *p;
  size_t len, cap;
  bool oom; /* an allocation failed: the content is incomplete */
};

/* Room for n more bytes; false (and oom set) when it cannot be had. */
static bool buf_reserve(struct buf *b, size_t n) {
  if (b->oom) return false;
  if (n <= b->cap - b->len) return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < n && cap <= SIZE_MAX / 2) cap *= 2;
  char *p = cap - b->len < n ? NULL : realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

static void buf_add(struct buf *b, const void *s, size_t n) {
  if (!buf_reserve(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* ------------------------------------------------------------------ the request */

static bool valid_utf8(const unsigned char *s) {
  while (*s) {
    unsigned c = *s, len, cp, min;
    if (c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    for (unsigned k = 1; k < len; k++) { /* the NUL at the end is no continuation byte */
      if ((s[k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    s += len;
  }
  return true;
}

/* s as a JSON string: `"` and `\` escaped, control characters as their short forms or \u00XX. */
static void json_string_out(struct buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  buf_add(b, "\"", 1);
  const char *run = s;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    buf_add(b, run, (size_t)(s - run));
    run = s + 1;
    char esc[7] = {'\\', 0};
    switch (c) {
    case '"': case '\\': esc[1] = (char)c; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default: memcpy(esc + 1, "u00", 3), esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
    }
    buf_str(b, esc);
  }
  buf_add(b, run, (size_t)(s - run));
  buf_add(b, "\"", 1);
}

/* The whole request, or false when it is for node (not UTF-8, too long, no cwd, no memory). */
static bool build_request(struct buf *req) {
  size_t total = 0;
  for (int i = 1; i < g_argc; i++) {
    total += strlen(g_argv[i]);
    if (total > MAX_ARGV_BYTES || !valid_utf8((const unsigned char *)g_argv[i])) return false;
  }
  char *cwd = getcwd(NULL, 0);
  if (!cwd || !valid_utf8((const unsigned char *)cwd)) {
    free(cwd);
    return false;
  }
  struct buf body = {0};
  buf_str(&body, "{\"argv\":[");
  for (int i = 1; i < g_argc; i++) {
    if (i > 1) buf_add(&body, ",", 1);
    json_string_out(&body, g_argv[i]);
  }
  buf_str(&body, "],\"cwd\":");
  json_string_out(&body, cwd);
  buf_add(&body, "}", 1);
  free(cwd);
  char head[200];
  int n = snprintf(head, sizeof head,
                   "POST /v1/cli HTTP/1.1\r\nHost: layerfs\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   body.len);
  if (!body.oom && n > 0 && (size_t)n < sizeof head) {
    buf_add(req, head, (size_t)n);
    buf_add(req, body.p, body.len);
  }
  free(body.p);
  return !body.oom && !req->oom && req->len > 0;
}

/* The engine's socket address; false when its path does not fit in sun_path. */
static bool engine_address(struct sockaddr_un *sa) {
  const char *dir = getenv("LAYERFS_ENGINE_DIR"), *sub = "";
  char tmp[64];
  if (!dir || !*dir) {
    sub = "/layerfs";
    if (getuid() == 0) dir = "/run";
    else if ((dir = getenv("XDG_RUNTIME_DIR")) == NULL || !*dir) {
      snprintf(tmp, sizeof tmp, "/tmp/layerfs-%u", (unsigned)getuid());
      dir = tmp;
    }
  }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s%s/engine.sock", dir, sub);
  return n > 0 && (size_t)n < sizeof sa->sun_path;
}

/* ------------------------------------------------------------------ the answer */

static _Noreturn void lost(const char *fmt, ...) {
  char reason[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  say("layerfs: lost the engine's answer (%s)\n", reason);
  exit(1);
}

/* Writes all of p, retrying on EINTR and short writes; 0 or an errno. */
static int write_all(int fd, const char *p, size_t n, int flags) {
  while (n > 0) {
    ssize_t w = flags < 0 ? write(fd, p, n) : send(fd, p, n, flags);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Everything until EOF, at most MAX_ANSWER_BYTES. */
static void read_answer(int fd, struct buf *b) {
  for (;;) {
    if (!buf_reserve(b, 65536)) lost("out of memory");
    size_t room = b->cap - b->len, left = MAX_ANSWER_BYTES + 1 - b->len;
    ssize_t n = read(fd, b->p + b->len, room < left ? room : left);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      lost("reading: %s", strerror(errno));
    }
    b->len += (size_t)n;
    if (b->len > MAX_ANSWER_BYTES) lost("it is larger than 16 MiB");
  }
}

struct str {
  const char *p;
  size_t len;
  bool set;
};

struct answer {
  int http;        /* the status code */
  bool fallback;   /* "fallback": true */
  bool has_status;
  int status;      /* "status", clamped to 0..255 */
  struct str out, err, message;
};

struct json {
  char *p, *end, *start;
};

static void ws(struct json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static bool eat(struct json *j, char c) {
  ws(j);
  if (j->p < j->end && *j->p == c) return j->p++, true;
  return false;
}

static bool literal(struct json *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return false;
  j->p += n;
  return true;
}

static long hex4(struct json *j) {
  if (j->end - j->p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    char c = *j->p++;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

static char *put_utf8(char *w, long cp) {
  if (cp < 0x80) *w++ = (char)cp;
  else if (cp < 0x800) *w++ = (char)(0xc0 | cp >> 6), *w++ = (char)(0x80 | (cp & 0x3f));
  else if (cp < 0x10000)
    *w++ = (char)(0xe0 | cp >> 12), *w++ = (char)(0x80 | (cp >> 6 & 0x3f)), *w++ = (char)(0x80 | (cp & 0x3f));
  else
    *w++ = (char)(0xf0 | cp >> 18), *w++ = (char)(0x80 | (cp >> 12 & 0x3f)), *w++ = (char)(0x80 | (cp >> 6 & 0x3f)),
    *w++ = (char)(0x80 | (cp & 0x3f));
  return w;
}

/* A JSON string, decoded to UTF-8 in place (the decoded form is never longer). A lone surrogate
 * becomes U+FFFD, as Node writes it. */
static bool json_string(struct json *j, struct str *s) {
  ws(j);
  if (j->p >= j->end || *j->p != '"') return false;
  char *out = ++j->p, *w = out;
  while (j->p < j->end) {
    unsigned char c = (unsigned char)*j->p++;
    if (c == '"') {
      *s = (struct str){out, (size_t)(w - out), true};
      return true;
    }
    if (c < 0x20) return false;
    if (c != '\\') {
      *w++ = (char)c;
      continue;
    }
    if (j->p >= j->end) return false;
    switch (c = (unsigned char)*j->p++) {
    case '"': case '\\': case '/': *w++ = (char)c; break;
    case 'b': *w++ = '\b'; break;
    case 'f': *w++ = '\f'; break;
    case 'n': *w++ = '\n'; break;
    case 'r': *w++ = '\r'; break;
    case 't': *w++ = '\t'; break;
    case 'u': {
      long cp = hex4(j);
      if (cp < 0) return false;
      if (cp >= 0xd800 && cp <= 0xdbff && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
        char *back = j->p;
        j->p += 2;
        long lo = hex4(j);
        if (lo >= 0xdc00 && lo <= 0xdfff) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        else j->p = back; /* the next escape stands on its own */
      }
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
      w = put_utf8(w, cp);
      break;
    }
    default: return false;
    }
  }
  return false;
}

/* A JSON number; *is_int tells whether it is an integer, *value its value clamped to 0..255. */
static bool json_number(struct json *j, bool *is_int, int *value) {
  ws(j);
  bool neg = j->p < j->end && *j->p == '-';
  if (neg) j->p++;
  char *digits = j->p;
  int v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    v = v * 10 + (*j->p++ - '0');
    if (v > 255) v = 256; /* saturates */
  }
  size_t n = (size_t)(j->p - digits);
  if (n == 0 || (n > 1 && *digits == '0')) return false;
  *is_int = true;
  if (j->p < j->end && *j->p == '.') {
    *is_int = false;
    char *d = ++j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    if (j->p == d) return false;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    *is_int = false;
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    char *d = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    if (j->p == d) return false;
  }
  *value = neg ? 0 : v > 255 ? 255 : v;
  return true;
}

/* Any JSON value, skipped (an unknown field's). */
static bool json_skip(struct json *j, int depth) {
  ws(j);
  if (j->p >= j->end) return false;
  char open = *j->p;
  if (open == '"') {
    struct str s;
    return json_string(j, &s);
  }
  if (open == '{' || open == '[') {
    char close = open == '{' ? '}' : ']';
    if (depth >= MAX_JSON_DEPTH) return false;
    j->p++;
    if (eat(j, close)) return true;
    do {
      struct str key;
      if (open == '{' && (!json_string(j, &key) || !eat(j, ':'))) return false;
      if (!json_skip(j, depth + 1)) return false;
    } while (eat(j, ','));
    return eat(j, close);
  }
  if (literal(j, "true") || literal(j, "false") || literal(j, "null")) return true;
  bool is_int;
  int v;
  return json_number(j, &is_int, &v);
}

static _Noreturn void bad_json(struct json *j) { lost("malformed JSON at byte %zu of the body", (size_t)(j->p - j->start)); }

static bool key_is(struct str key, const char *name) { return key.len == strlen(name) && memcmp(key.p, name, key.len) == 0; }

/* A known field's value that is valid JSON but of the wrong type. */
static _Noreturn void wrong_type(struct json *j, struct str key, const char *want) {
  if (!json_skip(j, 0)) bad_json(j);
  lost("\"%.*s\" is not %s", (int)key.len, key.p, want);
}

/* A known field's string value (or null: absent). */
static void string_field(struct json *j, struct str key, struct str *to) {
  if (literal(j, "null")) *to = (struct str){0};
  else if (j->p < j->end && *j->p == '"') {
    if (!json_string(j, to)) bad_json(j);
  } else wrong_type(j, key, "a string");
}

/* The body: one flat JSON object. */
static void parse_body(struct json *j, struct answer *a) {
  ws(j);
  if (j->p == j->end && (a->http < 200 || a->http > 299)) return; /* an error with no body */
  if (!eat(j, '{')) bad_json(j);
  if (!eat(j, '}')) {
    do {
      struct str key;
      if (!json_string(j, &key) || !eat(j, ':')) bad_json(j);
      ws(j);
      if (key_is(key, "fallback")) {
        if (literal(j, "true")) a->fallback = true;
        else if (literal(j, "false") || literal(j, "null")) a->fallback = false;
        else wrong_type(j, key, "true or false");
      } else if (key_is(key, "status")) {
        bool is_int = false;
        if (literal(j, "null")) a->has_status = false;
        else if (j->p < j->end && (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))) {
          if (!json_number(j, &is_int, &a->status)) bad_json(j);
          if (!is_int) lost("\"status\" is not an integer");
          a->has_status = true;
        } else wrong_type(j, key, "an integer");
      } else if (key_is(key, "stdout")) string_field(j, key, &a->out);
      else if (key_is(key, "stderr")) string_field(j, key, &a->err);
      else if (key_is(key, "message")) string_field(j, key, &a->message);
      else if (!json_skip(j, 0)) bad_json(j);
    } while (eat(j, ','));
    if (!eat(j, '}')) bad_json(j);
  }
  ws(j);
  if (j->p != j->end) bad_json(j);
}

/* The status line and headers; returns where the body starts, a->http and *length set. */
static size_t parse_head(char *p, size_t n, struct answer *a, size_t *length, bool *has_length) {
  if (n == 0) lost("the connection closed without an answer");
  size_t pos = 0;
  for (int line_no = 0;; line_no++) {
    char *nl = memchr(p + pos, '\n', n - pos);
    if (!nl) lost("the header is incomplete");
    char *line = p + pos;
    size_t len = (size_t)(nl - line);
    if (len > 0 && line[len - 1] == '\r') len--;
    pos = (size_t)(nl - p) + 1;
    if (line_no == 0) {
      if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ' || (len > 12 && line[12] != ' ')) lost("not an HTTP/1 status line");
      a->http = 0;
      for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9') lost("not an HTTP/1 status line");
        a->http = a->http * 10 + (line[i] - '0');
      }
      continue;
    }
    if (len == 0) return pos;
    char *colon = memchr(line, ':', len);
    if (!colon) lost("a header line without a colon");
    size_t name_len = (size_t)(colon - line), vlen = len - name_len - 1;
    char *v = colon + 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
    if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0 && !(vlen == 8 && strncasecmp(v, "identity", 8) == 0))
      lost("Transfer-Encoding %.*s is not supported", (int)(vlen > 40 ? 40 : vlen), v);
    if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
      size_t value = 0;
      if (vlen == 0) lost("a bad Content-Length");
      for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9' || value > MAX_ANSWER_BYTES) lost("a bad Content-Length");
        value = value * 10 + (size_t)(v[i] - '0');
      }
      if (*has_length && value != *length) lost("two Content-Lengths");
      *length = value;
      *has_length = true;
    }
  }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  struct sockaddr_un sa;
  struct buf req = {0};
  if (!engine_address(&sa) || !build_request(&req)) run_node();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) run_node();

  /* From here on the engine may act on the request: never node again, except on its word. */
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigemptyset(&ign.sa_mask);
  g_sigpipe_changed = sigaction(SIGPIPE, &ign, &g_old_sigpipe) == 0;
  int e = write_all(fd, req.p, req.len, MSG_NOSIGNAL);
  if (e) lost("sending: %s", strerror(e));
  free(req.p);

  struct buf in = {0};
  read_answer(fd, &in);
  close(fd);
  struct answer a = {0};
  size_t length = 0;
  bool has_length = false;
  size_t start = parse_head(in.p, in.len, &a, &length, &has_length);
  size_t body_len = in.len - start;
  if (has_length) {
    if (length > body_len) lost("it ended %zu bytes short", length - body_len);
    body_len = length;
  }
  struct json j = {in.p + start, in.p + start + body_len, in.p + start};
  parse_body(&j, &a);

  if (a.fallback) run_node();
  if (a.http >= 200 && a.http <= 299) {
    int out_err = a.out.set ? write_all(STDOUT_FILENO, a.out.p, a.out.len, -1) : 0;
    if (a.err.set) write_all(STDERR_FILENO, a.err.p, a.err.len, -1);
    if (out_err) {
      say("layerfs: writing the output: %s\n", strerror(out_err));
      return a.status ? a.status : 1;
    }
    return a.has_status ? a.status : 0;
  }
  if (a.message.set) {
    write_all(STDERR_FILENO, a.message.p, a.message.len, -1);
    write_all(STDERR_FILENO, "\n", 1, -1);
  } else {
    say("layerfs: the engine answered HTTP %d\n", a.http);
  }
  return a.has_status ? a.status : 1;
}
