// N-API helpers of the layerfs_fuse addon: making JS values, reading arguments strictly
// (integers exact, byte strings as bytes, buffers of any view), UTF-8 validation. Header-only
// (static inline): they sit on every request's and reply's path and stay inlined there.
#pragma once

#include <node_api.h>

#include <stdint.h>
#include <stddef.h>

#include <string>

#include "../napi_util.h"

#define NAPI_CALL(env, call)                                             \
  do {                                                                   \
    napi_status status_ = (call);                                        \
    if (status_ != napi_ok) {                                            \
      bool pending_ = false;                                             \
      napi_is_exception_pending((env), &pending_);                       \
      if (!pending_) napi_throw_error((env), nullptr, "N-API call failed: " #call); \
      return nullptr;                                                    \
    }                                                                    \
  } while (0)

static inline napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

static inline napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static inline napi_value make_double(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static inline napi_value make_u32(napi_env env, uint32_t v) {
  napi_value r;
  napi_create_uint32(env, v, &r);
  return r;
}

static inline napi_value make_bool(napi_env env, bool v) {
  napi_value r;
  napi_get_boolean(env, v, &r);
  return r;
}

static inline napi_value make_null(napi_env env) {
  napi_value r;
  napi_get_null(env, &r);
  return r;
}

static inline napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

static inline napi_value make_bigint_i64(napi_env env, int64_t v) {
  napi_value r;
  napi_create_bigint_int64(env, v, &r);
  return r;
}

static inline napi_value make_bigint_u64(napi_env env, uint64_t v) {
  napi_value r;
  napi_create_bigint_uint64(env, v, &r);
  return r;
}

static inline napi_value make_string(napi_env env, const std::string &s) {
  napi_value r;
  napi_create_string_utf8(env, s.data(), s.size(), &r);
  return r;
}

// File names are bytes: they reach JS as byte strings (latin1, one char per byte), so names
// that are not valid UTF-8 survive the trip (see src/union/bytes.ts).
static inline napi_value make_bytes_string(napi_env env, const std::string &s) {
  napi_value r;
  napi_create_string_latin1(env, s.data(), s.size(), &r);
  return r;
}

constexpr double MAX_SAFE = 9007199254740991.0;  // 2^53 - 1

// A non-negative integer from a Number (exact up to 2^53) or a BigInt.
static inline bool get_u64(napi_env env, napi_value v, uint64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= 0 && d <= MAX_SAFE) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
  }
  if (t == napi_bigint) {
    bool lossless;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return false;
    return lossless;
  }
  return false;
}

// A signed integer from a Number (exact up to 2^53) or a BigInt.
static inline bool get_i64(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= -MAX_SAFE && d <= MAX_SAFE) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
  }
  if (t == napi_bigint) {
    bool lossless;
    if (napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok) return false;
    return lossless;
  }
  return false;
}

static inline bool get_u32(napi_env env, napi_value v, uint32_t *out) {
  uint64_t x;
  if (!get_u64(env, v, &x) || x > 0xffffffffull) return false;
  *out = (uint32_t)x;
  return true;
}

static inline bool get_number(napi_env env, napi_value v, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return false;
  napi_get_value_double(env, v, out);
  return true;
}

// Bytes of a Buffer / TypedArray / DataView / ArrayBuffer; null/undefined = empty.
static inline bool get_bytes(napi_env env, napi_value v, const char **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_null || t == napi_undefined) {
    *data = nullptr;
    *len = 0;
    return true;
  }
  bool is;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type tt;
    size_t n;
    void *p;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &tt, &n, &p, &ab, &off) != napi_ok) return false;
    size_t elem = 1;
    switch (tt) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: elem = 1;
    }
    *data = (const char *)p;
    *len = n * elem;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    size_t n;
    void *p;
    napi_value ab;
    size_t off;
    if (napi_get_dataview_info(env, v, &n, &p, &ab, &off) != napi_ok) return false;
    *data = (const char *)p;
    *len = n;
    return true;
  }
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    void *p;
    size_t n;
    if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok) return false;
    *data = (const char *)p;
    *len = n;
    return true;
  }
  return false;
}

// The bytes of a byte string (latin1). Node-API would truncate a char above 0xff to its low
// byte; the JS side (lowlevel.ts) refuses such strings before they get here.
static inline bool get_bytes_string(napi_env env, napi_value v, std::string *out) {
  size_t n;
  if (napi_get_value_string_latin1(env, v, nullptr, 0, &n) != napi_ok) return false;
  out->resize(n + 1);
  size_t got;
  if (napi_get_value_string_latin1(env, v, &(*out)[0], n + 1, &got) != napi_ok) return false;
  out->resize(got);
  return true;
}

static inline bool valid_utf8(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned min;
    if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; c &= 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; c &= 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; c &= 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      c = (c << 6) | (p[i + k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
    i += len;
  }
  return true;
}
