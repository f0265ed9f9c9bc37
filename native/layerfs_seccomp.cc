// layerfs_seccomp: seccomp filters for `layerfs run`, compiled by libseccomp (Debian's
// libseccomp-dev; linked with -lseccomp). The profile language (docker's JSON) is parsed and
// checked in src/launcher/seccomp.ts; this addon only turns the resulting spec into libseccomp
// calls and loads the filter into the calling process.
//
// Only the launcher's stage 2 loads a filter with it (the FUSE daemon never loads this addon): it
// loads the filter right before it execve()s the container's command, which inherits it. For
// `layerfs exec`, exportBpf() hands the same filter, unloaded, to build/Release/layerfs_exec.
//
//   load(spec) -> undefined, throws Error
//     spec = { defaultAction: Action, arches: string[], rules: Rule[], log?: boolean,
//              specAllow?: boolean }
//     Action = { kind: 'allow' | 'errno' | 'kill_thread' | 'kill_process' | 'trap' | 'log'
//                      | 'trace', errno?: number }   (errno: the errno for 'errno', the message
//                                                     number for 'trace')
//     Rule = { name: string, action: Action,
//              args: { index: 0..5, op: 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'masked_eq',
//                      value: bigint, valueTwo: bigint }[] }
//     arches are libseccomp's names ("x86_64", "x86", "x32", "aarch64", "arm", ...); the native
//     architecture is always part of the filter. A rule whose syscall name libseccomp does not
//     know is skipped (as docker does); so is a rule whose action is the default action. The
//     filter is loaded with TSYNC (every thread of the process gets it) and libseccomp's default
//     NO_NEW_PRIVS attribute (it sets no_new_privs itself when needed).
//   resolve(name) -> the syscall number on the native architecture, or -1
//   exportBpf(spec) -> Buffer: the classic-BPF program libseccomp generates for the same spec
//     (struct sock_filter[], 8 bytes each, as seccomp(2) takes it), without loading anything.
//     For layerfs_exec (native/exec/exec.c), which loads it with PR_SET_SECCOMP in a process
//     that cannot run Node. The log/specAllow flags are attributes of loading, not of the
//     program: they are not in it.
//
// Wrong argument shapes throw a TypeError; libseccomp's failures an Error naming the step (and
// the rule: its position, syscall name and action) with strerror().

#include <node_api.h>
#include "napi_util.h"

#include <errno.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

const uint32_t MAX_RULES = 1 << 20;  // far above what a profile can produce (4096 x 1024)
const uint32_t MAX_ARCHES = 64;
const uint32_t MAX_ARGS = 6;

// Thrown on the JS side when returned false from a parse step (the exception is pending).
napi_value type_error(napi_env env, const std::string &msg) {
  napi_throw_type_error(env, nullptr, ("seccomp: " + msg).c_str());
  return nullptr;
}

void throw_error(napi_env env, const std::string &msg) { napi_throw_error(env, nullptr, ("seccomp: " + msg).c_str()); }

bool pending(napi_env env) {
  bool p = false;
  napi_is_exception_pending(env, &p);
  return p;
}

bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out, bool *present) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
  *present = has;
  if (!has) return true;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
  napi_valuetype t;
  if (napi_typeof(env, *out, &t) != napi_ok) return false;
  if (t == napi_undefined) *present = false;
  return true;
}

bool is_type(napi_env env, napi_value v, napi_valuetype want) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == want;
}

// An array's elements.
bool get_array(napi_env env, napi_value v, uint32_t max, std::vector<napi_value> *out) {
  bool isArr = false;
  if (napi_is_array(env, v, &isArr) != napi_ok || !isArr) return false;
  uint32_t n;
  if (napi_get_array_length(env, v, &n) != napi_ok || n > max) return false;
  out->resize(n);
  for (uint32_t i = 0; i < n; i++)
    if (napi_get_element(env, v, i, &(*out)[i]) != napi_ok) return false;
  return true;
}

bool get_u32(napi_env env, napi_value v, uint32_t max, uint32_t *out) {
  if (!is_type(env, v, napi_number)) return false;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!(d >= 0 && d <= max) || d != (double)(uint32_t)d) return false;
  *out = (uint32_t)d;
  return true;
}

struct Action {
  std::string kind;
  uint32_t value = 0;  // the SCMP_ACT_* value
};

// { kind, errno? } -> SCMP_ACT_*; false with a TypeError pending.
bool get_action(napi_env env, napi_value v, const std::string &where, Action *out) {
  if (!is_type(env, v, napi_object)) return type_error(env, where + ": action must be an object"), false;
  napi_value k, e;
  bool hasK, hasE;
  if (!get_prop(env, v, "kind", &k, &hasK) || !get_prop(env, v, "errno", &e, &hasE)) return false;
  if (!hasK || !is_type(env, k, napi_string) || !get_string(env, k, &out->kind))
    return type_error(env, where + ": action.kind must be a string"), false;
  uint32_t no = 0;
  if (hasE && !get_u32(env, e, 0xffff, &no))
    return type_error(env, where + ": action.errno must be an integer 0..65535"), false;
  const std::string &kind = out->kind;
  if (kind == "allow") out->value = SCMP_ACT_ALLOW;
  else if (kind == "errno") {
    if (!hasE) return type_error(env, where + ": action 'errno' needs an errno"), false;
    out->value = SCMP_ACT_ERRNO(no);
  } else if (kind == "kill_thread") out->value = SCMP_ACT_KILL_THREAD;
  else if (kind == "kill_process") out->value = SCMP_ACT_KILL_PROCESS;
  else if (kind == "trap") out->value = SCMP_ACT_TRAP;
  else if (kind == "log") out->value = SCMP_ACT_LOG;
  else if (kind == "trace") out->value = SCMP_ACT_TRACE(no);
  else return type_error(env, where + ": unknown action kind '" + kind + "'"), false;
  if (hasE && kind != "errno" && kind != "trace")
    return type_error(env, where + ": action '" + kind + "' takes no errno"), false;
  return true;
}

std::string describe(const Action &a) {
  if (a.kind == "errno" || a.kind == "trace") return a.kind + "(" + std::to_string(a.value & 0xffff) + ")";
  return a.kind;
}

bool get_u64(napi_env env, napi_value v, uint64_t *out) {
  if (!is_type(env, v, napi_bigint)) return false;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return false;
  return lossless;
}

bool get_op(const std::string &s, scmp_compare *out) {
  static const struct {
    const char *name;
    scmp_compare op;
  } ops[] = {{"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE},        {"eq", SCMP_CMP_EQ},
             {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT}, {"masked_eq", SCMP_CMP_MASKED_EQ}};
  for (auto &o : ops)
    if (s == o.name) return *out = o.op, true;
  return false;
}

struct Rule {
  std::string name;
  Action action;
  std::vector<scmp_arg_cmp> args;
};

bool get_rule(napi_env env, napi_value v, uint32_t i, Rule *out) {
  std::string where = "rules[" + std::to_string(i) + "]";
  if (!is_type(env, v, napi_object)) return type_error(env, where + " must be an object"), false;
  napi_value name, action, args;
  bool hasN, hasA, hasArgs;
  if (!get_prop(env, v, "name", &name, &hasN) || !get_prop(env, v, "action", &action, &hasA) ||
      !get_prop(env, v, "args", &args, &hasArgs))
    return false;
  if (!hasN || !is_type(env, name, napi_string) || !get_string(env, name, &out->name) || out->name.empty() ||
      out->name.size() > 64)
    return type_error(env, where + ".name must be a syscall name"), false;
  where += " (" + out->name + ")";
  if (!hasA) return type_error(env, where + ": no action"), false;
  if (!get_action(env, action, where, &out->action)) return false;
  std::vector<napi_value> as;
  if (hasArgs && !get_array(env, args, MAX_ARGS, &as))
    return type_error(env, where + ".args must be an array of at most 6 comparisons"), false;
  for (size_t j = 0; j < as.size(); j++) {
    std::string w = where + ".args[" + std::to_string(j) + "]";
    if (!is_type(env, as[j], napi_object)) return type_error(env, w + " must be an object"), false;
    napi_value idx, op, val, val2;
    bool hI, hO, hV, hV2;
    if (!get_prop(env, as[j], "index", &idx, &hI) || !get_prop(env, as[j], "op", &op, &hO) ||
        !get_prop(env, as[j], "value", &val, &hV) || !get_prop(env, as[j], "valueTwo", &val2, &hV2))
      return false;
    scmp_arg_cmp c;
    memset(&c, 0, sizeof c);
    uint32_t index;
    if (!hI || !get_u32(env, idx, 5, &index)) return type_error(env, w + ".index must be 0..5"), false;
    c.arg = index;
    std::string ops;
    if (!hO || !is_type(env, op, napi_string) || !get_string(env, op, &ops) || !get_op(ops, &c.op))
      return type_error(env, w + ".op must be one of ne, lt, le, eq, ge, gt, masked_eq"), false;
    if (!hV || !get_u64(env, val, &c.datum_a)) return type_error(env, w + ".value must be a BigInt 0..2^64-1"), false;
    if (hV2 && !get_u64(env, val2, &c.datum_b))
      return type_error(env, w + ".valueTwo must be a BigInt 0..2^64-1"), false;
    out->args.push_back(c);
  }
  return true;
}

// Frees the filter context on every way out.
struct Filter {
  scmp_filter_ctx ctx = nullptr;
  ~Filter() {
    if (ctx) seccomp_release(ctx);
  }
};

std::string err_text(int rc) { return strerror(rc < 0 ? -rc : rc); }

// The filter for `spec` into f (not loaded); false with an exception pending. fn names the caller
// in messages ("load", "exportBpf").
bool build_filter(napi_env env, napi_callback_info info, const std::string &fn, Filter &f) {
  size_t argc = 1;
  napi_value spec;
  napi_get_cb_info(env, info, &argc, &spec, nullptr, nullptr);
  if (argc < 1 || !is_type(env, spec, napi_object)) return type_error(env, fn + "(spec): spec must be an object"), false;

  // Read and check the whole spec before creating anything.
  napi_value dflt, arches, rules, logv, ssbv;
  bool hasD, hasArches, hasRules, hasLog, hasSsb;
  if (!get_prop(env, spec, "defaultAction", &dflt, &hasD) || !get_prop(env, spec, "arches", &arches, &hasArches) ||
      !get_prop(env, spec, "rules", &rules, &hasRules) || !get_prop(env, spec, "log", &logv, &hasLog) ||
      !get_prop(env, spec, "specAllow", &ssbv, &hasSsb))
    return false;
  if (!hasD) return type_error(env, fn + "(spec): no defaultAction"), false;
  Action def;
  if (!get_action(env, dflt, "defaultAction", &def)) return false;
  bool log = false, ssb = false;
  if (hasLog && (!is_type(env, logv, napi_boolean) || napi_get_value_bool(env, logv, &log) != napi_ok))
    return type_error(env, fn + "(spec): log must be a boolean"), false;
  if (hasSsb && (!is_type(env, ssbv, napi_boolean) || napi_get_value_bool(env, ssbv, &ssb) != napi_ok))
    return type_error(env, fn + "(spec): specAllow must be a boolean"), false;

  std::vector<napi_value> av;
  if (!hasArches || !get_array(env, arches, MAX_ARCHES, &av))
    return type_error(env, fn + "(spec): arches must be an array of at most 64 names"), false;
  std::vector<std::string> archNames(av.size());
  for (size_t i = 0; i < av.size(); i++)
    if (!is_type(env, av[i], napi_string) || !get_string(env, av[i], &archNames[i]))
      return type_error(env, fn + "(spec): arches[" + std::to_string(i) + "] must be a string"), false;

  std::vector<napi_value> rv;
  if (!hasRules || !get_array(env, rules, MAX_RULES, &rv)) return type_error(env, fn + "(spec): rules must be an array"), false;
  std::vector<Rule> rs(rv.size());
  for (uint32_t i = 0; i < rv.size(); i++)
    if (!get_rule(env, rv[i], i, &rs[i])) return pending(env) ? false : (type_error(env, fn + "(spec): bad rule"), false);

  f.ctx = seccomp_init(def.value);
  if (!f.ctx) return throw_error(env, "seccomp_init(" + describe(def) + ") failed"), false;
  int rc;
  // The kernel's own errno from seccomp_load(), not libseccomp's generic ECANCELED.
  seccomp_attr_set(f.ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
  if ((rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0)
    return throw_error(env, "cannot ask for TSYNC: " + err_text(rc)), false;
  if (log && (rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_LOG, 1)) < 0)
    return throw_error(env, "cannot set the LOG flag: " + err_text(rc)), false;
  if (ssb && (rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_SSB, 1)) < 0)
    return throw_error(env, "cannot set the SPEC_ALLOW flag: " + err_text(rc)), false;

  uint32_t native = seccomp_arch_native();
  for (auto &name : archNames) {
    uint32_t token = seccomp_arch_resolve_name(name.c_str());
    if (token == 0) return throw_error(env, "unknown architecture '" + name + "'"), false;
    if (token == native) continue;  // seccomp_init() put it in already
    rc = seccomp_arch_add(f.ctx, token);
    if (rc < 0 && rc != -EEXIST)
      return throw_error(env, "cannot add architecture '" + name + "': " + err_text(rc)), false;
  }

  for (size_t i = 0; i < rs.size(); i++) {
    const Rule &r = rs[i];
    if (r.action.value == def.value) continue;  // libseccomp refuses it (EACCES); it changes nothing
    int nr = seccomp_syscall_resolve_name(r.name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // a syscall this libseccomp does not know: skipped, as docker does
    rc = seccomp_rule_add_array(f.ctx, r.action.value, nr, (unsigned)r.args.size(), r.args.empty() ? nullptr : r.args.data());
    if (rc < 0) {
      std::string why = err_text(rc);
      if (rc == -EEXIST) why = "conflicts with an earlier rule for the same syscall with another action";
      else if (rc == -EINVAL && !r.args.empty())
        why = "invalid argument comparison (" + why + ")";
      return throw_error(env, "cannot add rule " + std::to_string(i) + " (" + r.name + ", " + describe(r.action) +
                                  (r.args.empty() ? "" : ", " + std::to_string(r.args.size()) + " argument comparison(s)") +
                                  "): " + why),
             false;
    }
  }

  return true;
}

napi_value js_load(napi_env env, napi_callback_info info) {
  Filter f;
  if (!build_filter(env, info, "load", f)) return nullptr;
  int rc = seccomp_load(f.ctx);
  if (rc < 0) {
    std::string why = err_text(rc);
    if (rc == -ESRCH) why = "another thread could not be synchronised (TSYNC): " + why;
    return throw_error(env, "seccomp_load: " + why), nullptr;
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

// exportBpf(spec): libseccomp's program for spec, unloaded. libseccomp 2.5 exports to a descriptor
// only (seccomp_export_bpf_mem() is 2.6's): into a memfd, read back.
napi_value js_export_bpf(napi_env env, napi_callback_info info) {
  Filter f;
  if (!build_filter(env, info, "exportBpf", f)) return nullptr;
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) close(fd);
    }
  } mem{memfd_create("layerfs-seccomp-bpf", MFD_CLOEXEC)};
  if (mem.fd < 0) return throw_error(env, std::string("exportBpf: memfd_create: ") + strerror(errno)), nullptr;
  int rc = seccomp_export_bpf(f.ctx, mem.fd);
  if (rc < 0) return throw_error(env, "seccomp_export_bpf: " + err_text(rc)), nullptr;
  struct stat st;
  if (fstat(mem.fd, &st) < 0) return throw_error(env, std::string("exportBpf: fstat: ") + strerror(errno)), nullptr;
  std::vector<char> prog((size_t)st.st_size);
  for (size_t got = 0; got < prog.size();) {
    ssize_t n = pread(mem.fd, prog.data() + got, prog.size() - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return throw_error(env, std::string("exportBpf: reading the program back: ") + (n < 0 ? strerror(errno) : "short")), nullptr;
    got += (size_t)n;
  }
  if (prog.empty() || prog.size() % sizeof(struct sock_filter) != 0)
    return throw_error(env, "seccomp_export_bpf gave " + std::to_string(prog.size()) + " bytes, not whole instructions"), nullptr;
  napi_value out;
  if (napi_create_buffer_copy(env, prog.size(), prog.data(), nullptr, &out) != napi_ok) return nullptr;
  return out;
}

napi_value js_resolve(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, nullptr, nullptr);
  std::string name;
  if (argc < 1 || !is_type(env, arg, napi_string) || !get_string(env, arg, &name))
    return type_error(env, "resolve(name): name must be a string");
  int nr = seccomp_syscall_resolve_name(name.c_str());
  // Negative numbers other than -1 are libseccomp's pseudo-syscalls: names of other arches.
  napi_value out;
  napi_create_int32(env, nr < 0 ? -1 : nr, &out);
  return out;
}

napi_value init(napi_env env, napi_value exports) {
  static const ExportedFunction fns[] = {{"load", js_load}, {"resolve", js_resolve}, {"exportBpf", js_export_bpf}};
  if (!export_functions(env, exports, fns)) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
