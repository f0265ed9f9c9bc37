// Node-API helpers shared by the two addons (layerfs_fuse.cc, layerfs_sys.cc).
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
