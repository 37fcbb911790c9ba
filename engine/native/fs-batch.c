// The file-system calls of a no-op snapshot's check and restore, each made for many paths in one call from
// JavaScript (engine/fs-batch.ts loads this, and does the same in JavaScript when it is missing). In a Node that
// has just started every fs call runs its argument checks, the binding and its result's construction in V8's
// interpreter, several times the system call itself.
//
// statMany(paths): stats every path in one call and returns a Float64Array of four numbers per path, as a number
// `fs.Stats` has them: size, mtimeMs, ctimeMs, ino. At 1000 targets, 2000 fs.statSync calls took 16-27 ms, where
// the 2000 system calls take ~5 ms.
//
// Size -1: the path does not exist (ENOENT, ENOTDIR), which fs.statSync's throwIfNoEntry answers as undefined.
// Size -2: anything else (not a string, too long, a NUL inside, EACCES, ELOOP...): the caller asks fs.statSync, so
// every answer but the two common ones is Node's own.
//
// The times are computed as Node's msFromTimeSpec does (seconds * 1e3 + nanoseconds / 1e6, in doubles), so that a
// recorded mtimeMs compares equal (test/fs-batch.test.ts checks 300 times to the nanosecond). A compiler that fuses
// the multiply and add changes nothing: seconds * 1e3 is exact in a double for any time a file system holds.

// unmovedMany(entries): for each [path, recorded] entry of a no-op snapshot, where recorded is null (the path was
// missing) or [size, mtimeNs, ctimeNs, ino] as decimal strings, one byte: 1 if the path is still what was
// recorded, 0 if it moved, 2 if this cannot tell (a malformed entry, or an error other than no such file) and
// the caller must compare it itself. Comparing here, to the nanosecond, spares the check a string slice and
// two number parses per time in JavaScript (~3 µs an entry in a Node just started); JavaScript compares the
// times as Node's millisecond doubles, which can miss a change of under a microsecond that this sees.

// linkMany(from, to): hard-links each from[i] to to[i], and returns the first i whose link failed, or -1. Links
// into one folder take its lock in turn, so each destination folder (up to four) gets a thread of its own: the
// 2000 links of restoring 1000 targets' outputs and logs took ~35 ms one by one and ~20 ms on two threads.

#define _GNU_SOURCE
#define NAPI_VERSION 3
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define FIELDS 4

static double ms_of(struct timespec t) { return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6; }

/**
 * `value` as a path in `path`; false when it is not a string, holds a NUL, or is PATH_MAX bytes or more (PATH_MAX
 * counts the NUL: the kernel refuses such a path, and one that filled the buffer may have been cut short). Each
 * call leaves such a path to Node, which says what is wrong with it.
 */
static bool path_of(napi_env env, napi_value value, char path[PATH_MAX + 1]) {
  size_t len = 0;
  return napi_get_value_string_utf8(env, value, path, PATH_MAX + 1, &len) == napi_ok && len < PATH_MAX && strlen(path) == len;
}

enum found { FOUND, MISSING, ASK_NODE };

/** stat(2), with the two answers fs.statSync's throwIfNoEntry calls "no such file" told apart from the rest. */
static enum found stat_path(const char *path, struct stat *st) {
  if (stat(path, st) == 0) return FOUND;
  return errno == ENOENT || errno == ENOTDIR ? MISSING : ASK_NODE;
}

/**
 * The call's one argument, which must be an array (else a TypeError naming `what` is thrown), its length, and a new
 * typed array of `per` elements of `type` for each of its elements, whose memory is `*data`. False once thrown.
 */
static bool take_array(napi_env env, napi_callback_info info, const char *what, napi_typedarray_type type, size_t per,
                       napi_value *array, uint32_t *n, napi_value *out, void **data) {
  size_t argc = 1;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, array, NULL, NULL) != napi_ok) return false;
  if (argc < 1 || napi_is_array(env, *array, &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, NULL, what);
    return false;
  }
  size_t size = type == napi_float64_array ? sizeof(double) : 1;
  napi_value buffer;
  return napi_get_array_length(env, *array, n) == napi_ok &&
         napi_create_arraybuffer(env, (size_t)*n * per * size, data, &buffer) == napi_ok &&
         napi_create_typedarray(env, type, (size_t)*n * per, buffer, 0, out) == napi_ok;
}

static napi_value stat_many(napi_env env, napi_callback_info info) {
  napi_value paths, out;
  uint32_t n = 0;
  double *v = NULL;
  if (!take_array(env, info, "statMany: expected an array of paths", napi_float64_array, FIELDS, &paths, &n, &out, (void **)&v)) return NULL;
  char path[PATH_MAX + 1];
  for (uint32_t i = 0; i < n; i++) {
    double *r = v + (size_t)i * FIELDS;
    r[0] = -2;
    r[1] = r[2] = r[3] = 0;
    napi_value element;
    if (napi_get_element(env, paths, i, &element) != napi_ok) return NULL;
    if (!path_of(env, element, path)) continue;
    struct stat st;
    enum found found = stat_path(path, &st);
    if (found != FOUND) {
      if (found == MISSING) r[0] = -1;
      continue;
    }
    r[0] = (double)st.st_size;
    r[1] = ms_of(st.st_mtim);
    r[2] = ms_of(st.st_ctim);
    r[3] = (double)st.st_ino;
  }
  return out;
}

enum { MOVED = 0, UNMOVED = 1, ASK_CALLER = 2 };

/** A decimal as String(bigint) writes it; false for anything else, or one out of range. */
static bool parse_decimal(const char *s, size_t len, bool allow_negative, int64_t *signed_out, uint64_t *unsigned_out) {
  bool negative = allow_negative && len > 0 && s[0] == '-';
  if (negative) s++, len--;
  if (len == 0 || len > 20) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (unsigned_out) *unsigned_out = v;
  if (signed_out) {
    if (negative ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return false;
    *signed_out = negative ? (int64_t)(0 - v) : (int64_t)v;
  }
  return true;
}

/** Element `i` of `tuple` as a decimal; false if it is not a string holding one. */
static bool decimal_at(napi_env env, napi_value tuple, uint32_t i, bool allow_negative, int64_t *s, uint64_t *u) {
  napi_value element;
  char text[32];
  size_t len = 0;
  if (napi_get_element(env, tuple, i, &element) != napi_ok) return false;
  if (napi_get_value_string_utf8(env, element, text, sizeof text, &len) != napi_ok || len >= sizeof text - 1) return false;
  return parse_decimal(text, len, allow_negative, s, u);
}

static bool ns_of(struct timespec t, int64_t *out) {
  int64_t ns;
  return !__builtin_mul_overflow((int64_t)t.tv_sec, (int64_t)1000000000, &ns) && !__builtin_add_overflow(ns, (int64_t)t.tv_nsec, out);
}

static int unmoved_one(napi_env env, napi_value entry) {
  bool is_array = false;
  if (napi_is_array(env, entry, &is_array) != napi_ok || !is_array) return ASK_CALLER;
  napi_value p, recorded;
  char path[PATH_MAX + 1];
  if (napi_get_element(env, entry, 0, &p) != napi_ok || napi_get_element(env, entry, 1, &recorded) != napi_ok) return ASK_CALLER;
  if (!path_of(env, p, path)) return ASK_CALLER;
  napi_valuetype type;
  if (napi_typeof(env, recorded, &type) != napi_ok) return ASK_CALLER;
  struct stat st;
  enum found found = stat_path(path, &st);
  if (found == ASK_NODE) return ASK_CALLER;
  bool missing = found == MISSING;
  if (type == napi_null) return missing ? UNMOVED : MOVED;
  if (napi_is_array(env, recorded, &is_array) != napi_ok || !is_array) return ASK_CALLER;
  uint32_t fields = 0;
  if (napi_get_array_length(env, recorded, &fields) != napi_ok || fields != 4) return ASK_CALLER;
  uint64_t size, ino;
  int64_t mtime, ctime, now_mtime, now_ctime;
  if (!decimal_at(env, recorded, 0, false, NULL, &size) || !decimal_at(env, recorded, 1, true, &mtime, NULL) ||
      !decimal_at(env, recorded, 2, true, &ctime, NULL) || !decimal_at(env, recorded, 3, false, NULL, &ino))
    return ASK_CALLER;
  if (missing) return MOVED;
  if (!ns_of(st.st_mtim, &now_mtime) || !ns_of(st.st_ctim, &now_ctime)) return ASK_CALLER;
  return st.st_size >= 0 && (uint64_t)st.st_size == size && now_mtime == mtime && now_ctime == ctime && (uint64_t)st.st_ino == ino ? UNMOVED : MOVED;
}

static napi_value unmoved_many(napi_env env, napi_callback_info info) {
  napi_value entries, out;
  uint32_t n = 0;
  uint8_t *v = NULL;
  if (!take_array(env, info, "unmovedMany: expected an array of entries", napi_uint8_array, 1, &entries, &n, &out, (void **)&v)) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    // A scope per entry: the handles an entry makes are dropped with it, not held for all of them.
    napi_handle_scope scope;
    napi_value entry;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return NULL;
    v[i] = napi_get_element(env, entries, i, &entry) == napi_ok ? (uint8_t)unmoved_one(env, entry) : ASK_CALLER;
    if (napi_close_handle_scope(env, scope) != napi_ok) return NULL;
  }
  return out;
}

#define MAX_LINKERS 4

struct link_job {
  char **from, **to;
  uint32_t n;
  /** Which linker takes pair i: one per destination folder, since links into one folder take its lock in turn. */
  uint32_t *linker_of;
  uint32_t linker;
  /** The first pair that failed, or n; written under `lock`. */
  uint32_t *failed;
  pthread_mutex_t *lock;
};

static void *link_some(void *arg) {
  struct link_job *job = arg;
  for (uint32_t i = 0; i < job->n; i++) {
    if (job->linker_of[i] != job->linker) continue;
    pthread_mutex_lock(job->lock);
    bool stop = *job->failed < i;
    pthread_mutex_unlock(job->lock);
    if (stop) break;
    if (link(job->from[i], job->to[i]) != 0) {
      pthread_mutex_lock(job->lock);
      if (i < *job->failed) *job->failed = i;
      pthread_mutex_unlock(job->lock);
      break;
    }
  }
  return NULL;
}

/** Element i of `list` as a path of its own, for a linker thread (which may not call Node-API); NULL if it is none. */
static char *copy_path(napi_env env, napi_value list, uint32_t i) {
  napi_value element;
  char path[PATH_MAX + 1];
  if (napi_get_element(env, list, i, &element) != napi_ok || !path_of(env, element, path)) return NULL;
  return strdup(path);
}

static napi_value link_many(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t n = 0, m = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_array_length(env, argv[0], &n) != napi_ok || napi_get_array_length(env, argv[1], &m) != napi_ok || n != m) {
    napi_throw_type_error(env, NULL, "linkMany: expected two arrays of paths of one length");
    return NULL;
  }
  char **from = calloc(n ? n : 1, sizeof *from), **to = calloc(n ? n : 1, sizeof *to);
  uint32_t *linker_of = calloc(n ? n : 1, sizeof *linker_of);
  uint32_t failed = n, linkers = 0;
  char dirs[MAX_LINKERS][PATH_MAX];
  size_t dir_len[MAX_LINKERS];
  if (!from || !to || !linker_of) failed = 0;
  for (uint32_t i = 0; i < n && failed == n; i++) {
    from[i] = copy_path(env, argv[0], i);
    to[i] = copy_path(env, argv[1], i);
    if (!from[i] || !to[i]) {
      failed = i;
      break;
    }
    const char *slash = strrchr(to[i], '/');
    size_t len = slash ? (size_t)(slash - to[i]) : 0;
    uint32_t k = 0;
    while (k < linkers && !(dir_len[k] == len && memcmp(dirs[k], to[i], len) == 0)) k++;
    if (k == linkers && linkers < MAX_LINKERS) {
      memcpy(dirs[k], to[i], len);
      dir_len[k] = len;
      linkers++;
    }
    linker_of[i] = k < linkers ? k : i % MAX_LINKERS;
  }
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  struct link_job jobs[MAX_LINKERS];
  pthread_t threads[MAX_LINKERS];
  bool started[MAX_LINKERS] = {false};
  uint32_t limit = failed;
  for (uint32_t k = 0; k < linkers; k++) {
    jobs[k] = (struct link_job){from, to, limit, linker_of, k, &failed, &lock};
    // The first folder's links are made on this thread; a thread that cannot start leaves its folder to it too.
    started[k] = k > 0 && pthread_create(&threads[k], NULL, link_some, &jobs[k]) == 0;
  }
  for (uint32_t k = 0; k < linkers; k++) if (!started[k]) link_some(&jobs[k]);
  for (uint32_t k = 0; k < linkers; k++) if (started[k]) pthread_join(threads[k], NULL);
  for (uint32_t i = 0; i < n; i++) {
    if (from) free(from[i]);
    if (to) free(to[i]);
  }
  free(from);
  free(to);
  free(linker_of);
  napi_value out;
  if (napi_create_int32(env, failed == n ? -1 : (int32_t)failed, &out) != napi_ok) return NULL;
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "statMany", NAPI_AUTO_LENGTH, stat_many, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "statMany", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "unmovedMany", NAPI_AUTO_LENGTH, unmoved_many, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "unmovedMany", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "linkMany", NAPI_AUTO_LENGTH, link_many, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "linkMany", fn) != napi_ok) return NULL;
  return exports;
}
