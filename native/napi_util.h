// Node-API helpers shared by the addons (layerfs_fuse.cc, layerfs_sys.cc, layerfs_seccomp.cc).
#pragma once

#include <node_api.h>

#include <string>

// A JS string as UTF-8 into out.
static inline bool get_string(napi_env env, napi_value v, std::string *out) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &n) != napi_ok) return false;
  out->resize(n + 1);
  size_t got;
  if (napi_get_value_string_utf8(env, v, &(*out)[0], n + 1, &got) != napi_ok) return false;
  out->resize(got);
  return true;
}

// A module's functions, by name, as properties of its exports. False on the first failure.
struct ExportedFunction {
  const char *name;
  napi_callback fn;
};

template <size_t N>
static inline bool export_functions(napi_env env, napi_value exports, const ExportedFunction (&fns)[N]) {
  for (const auto &f : fns) {
    napi_value v;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v) != napi_ok) return false;
    if (napi_set_named_property(env, exports, f.name, v) != napi_ok) return false;
  }
  return true;
}
