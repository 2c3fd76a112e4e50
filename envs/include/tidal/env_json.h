/* tidal env plugin JSON helpers: just enough JSON for a C plugin to read its config and hidden
 * values and to write its replies, header-only, no allocation, C99 and C++ compatible.
 *
 *   const char* v = tidal_json_find(config, "max_len");   -- value of a top-level key, or NULL
 *   long n = tidal_json_int(config, "max_len", 8);         -- with a default when absent
 *   double x = tidal_json_number(config, "scale", 1.0);
 *   int b = tidal_json_bool(config, "exact", 0);
 *   char word[64]; tidal_json_string(hidden, "word", word, sizeof word);   -- unescaped UTF-8
 *   char quoted[256]; tidal_json_quote("say \"hi\"\n", quoted, sizeof quoted); -- a JSON literal
 *   size_t n = tidal_json_skip(v) - v;                     -- length of the value at v
 *
 * Keys are looked up among the top-level members of an object only (nested objects are skipped
 * whole, so {"a": {"max_len": 1}} has no top-level "max_len"). Functions that write return the
 * length written (without the NUL) or -1 when `cap` is too small or the value has the wrong type;
 * the output is always NUL-terminated when cap > 0. Input must be valid JSON (tidal's config,
 * options and hidden values are); on malformed input the functions return NULL / -1 / defaults
 * rather than read past the terminating NUL. */
#ifndef TIDAL_ENV_JSON_H_
#define TIDAL_ENV_JSON_H_

#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline const char* tidal_json_ws(const char* p) {
  while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  return p;
}

/* Past the end of the JSON value starting at p (after whitespace); NULL if malformed. */
static inline const char* tidal_json_skip(const char* p) {
  p = tidal_json_ws(p);
  if (!p || !*p) return NULL;
  if (*p == '"') {
    for (++p; *p && *p != '"'; ++p) {
      if (*p == '\\' && !*++p) return NULL;
    }
    return *p == '"' ? p + 1 : NULL;
  }
  if (*p == '{' || *p == '[') {
    const char close = *p == '{' ? '}' : ']';
    p = tidal_json_ws(p + 1);
    if (p && *p == close) return p + 1;
    while (p && *p) {
      if (close == '}') { /* "key": value */
        p = tidal_json_skip(p);
        p = tidal_json_ws(p);
        if (!p || *p != ':') return NULL;
        ++p;
      }
      p = tidal_json_ws(tidal_json_skip(p));
      if (!p) return NULL;
      if (*p == close) return p + 1;
      if (*p != ',') return NULL;
      p = tidal_json_ws(p + 1);
    }
    return NULL;
  }
  /* number, true, false, null */
  while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' &&
         *p != '\r')
    ++p;
  return p;
}

/* Compares the JSON string literal at p (no escapes in keys we look up) with key. */
static inline int tidal_json_key_is(const char* p, const char* key) {
  const size_t n = strlen(key);
  return *p == '"' && strncmp(p + 1, key, n) == 0 && p[1 + n] == '"';
}

/* The value of top-level member `key` of the object `json`, or NULL. */
static inline const char* tidal_json_find(const char* json, const char* key) {
  const char* p = tidal_json_ws(json);
  if (!p || *p != '{') return NULL;
  p = tidal_json_ws(p + 1);
  while (p && *p == '"') {
    const int match = tidal_json_key_is(p, key);
    p = tidal_json_ws(tidal_json_skip(p));
    if (!p || *p != ':') return NULL;
    p = tidal_json_ws(p + 1);
    if (match) return p;
    p = tidal_json_ws(tidal_json_skip(p));
    if (!p || *p != ',') return NULL;
    p = tidal_json_ws(p + 1);
  }
  return NULL;
}

static inline double tidal_json_number(const char* json, const char* key, double fallback) {
  const char* v = tidal_json_find(json, key);
  if (!v || !(*v == '-' || (*v >= '0' && *v <= '9'))) return fallback;
  return strtod(v, NULL);
}

static inline long tidal_json_int(const char* json, const char* key, long fallback) {
  const char* v = tidal_json_find(json, key);
  if (!v || !(*v == '-' || (*v >= '0' && *v <= '9'))) return fallback;
  return strtol(v, NULL, 10);
}

static inline int tidal_json_bool(const char* json, const char* key, int fallback) {
  const char* v = tidal_json_find(json, key);
  if (v && strncmp(v, "true", 4) == 0) return 1;
  if (v && strncmp(v, "false", 5) == 0) return 0;
  return fallback;
}

static inline int tidal_json_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Unescapes the JSON string literal at v into out (UTF-8; \uXXXX pairs included). */
static inline int tidal_json_unquote(const char* v, char* out, size_t cap) {
  size_t n = 0;
  if (cap > 0) out[0] = 0;
  if (!v || *v != '"' || cap == 0) return -1;
  for (++v; *v && *v != '"'; ++v) {
    unsigned long cp = (unsigned char)*v;
    if (*v == '\\') {
      ++v;
      switch (*v) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u': {
          cp = 0;
          for (int i = 1; i <= 4; ++i) {
            const int h = tidal_json_hex(v[i]);
            if (h < 0) return -1;
            cp = cp * 16 + (unsigned long)h;
          }
          v += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF && v[1] == '\\' && v[2] == 'u') { /* surrogate pair */
            unsigned long lo = 0;
            for (int i = 3; i <= 6; ++i) {
              const int h = tidal_json_hex(v[i]);
              if (h < 0) return -1;
              lo = lo * 16 + (unsigned long)h;
            }
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              v += 6;
            }
          }
          break;
        }
        case 0: return -1;
        default: cp = (unsigned char)*v; break; /* \" \\ \/ */
      }
    }
    char buf[4];
    size_t len = 0;
    if (cp < 0x80 || (unsigned char)*v >= 0x80) { /* raw UTF-8 bytes pass through */
      buf[len++] = (char)cp;
    } else if (cp < 0x800) {
      buf[len++] = (char)(0xC0 | (cp >> 6));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      buf[len++] = (char)(0xE0 | (cp >> 12));
      buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    } else {
      buf[len++] = (char)(0xF0 | (cp >> 18));
      buf[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
      buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    }
    if (n + len + 1 > cap) {
      out[n] = 0;
      return -1;
    }
    memcpy(out + n, buf, len);
    n += len;
  }
  out[n] = 0;
  return *v == '"' ? (int)n : -1;
}

/* Top-level string member `key`, unescaped. -1 if absent, not a string, or too long. */
static inline int tidal_json_string(const char* json, const char* key, char* out, size_t cap) {
  if (cap > 0) out[0] = 0;
  return tidal_json_unquote(tidal_json_find(json, key), out, cap);
}

/* Writes s as a JSON string literal (quotes included) for building replies with snprintf. */
static inline int tidal_json_quote(const char* s, char* out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  if (cap == 0) return -1;
#define TIDAL_JSON_PUT_(c)  \
  do {                      \
    if (n + 2 > cap) {      \
      out[n] = 0;           \
      return -1;            \
    }                       \
    out[n++] = (char)(c);   \
  } while (0)
  TIDAL_JSON_PUT_('"');
  for (; *s; ++s) {
    const unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      TIDAL_JSON_PUT_('\\');
      TIDAL_JSON_PUT_(c);
    } else if (c == '\n') {
      TIDAL_JSON_PUT_('\\');
      TIDAL_JSON_PUT_('n');
    } else if (c == '\t') {
      TIDAL_JSON_PUT_('\\');
      TIDAL_JSON_PUT_('t');
    } else if (c == '\r') {
      TIDAL_JSON_PUT_('\\');
      TIDAL_JSON_PUT_('r');
    } else if (c < 0x20) {
      TIDAL_JSON_PUT_('\\');
      TIDAL_JSON_PUT_('u');
      TIDAL_JSON_PUT_('0');
      TIDAL_JSON_PUT_('0');
      TIDAL_JSON_PUT_(hex[c >> 4]);
      TIDAL_JSON_PUT_(hex[c & 15]);
    } else {
      TIDAL_JSON_PUT_(c);
    }
  }
  TIDAL_JSON_PUT_('"');
#undef TIDAL_JSON_PUT_
  out[n] = 0;
  return (int)n;
}

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* TIDAL_ENV_JSON_H_ */
