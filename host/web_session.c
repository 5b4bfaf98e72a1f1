/* web_session.c - signed session cookies, CSRF tokens and password hashes. */
#include "web_session.h"

#include <crypt.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define MAC_B64_LEN 43     /* 32 bytes, base64url without padding */
#define BCRYPT_COST 10

bool chd_user_id_valid(const char *s)
{
  size_t n = 0;

  if (!s)
    return false;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return false;
  }
  return n > 0 && n <= CHD_USER_ID_MAX;
}

/* base64url of the HMAC-SHA256 of msg under secret: MAC_B64_LEN + NUL. */
static int mac(const char *secret, const char *msg, char out[MAC_B64_LEN + 1])
{
  static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  size_t o = 0;

  if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg,
            strlen(msg), md, &len) || len != 32)
    return -1;
  for (size_t i = 0; i < 32; i += 3) {
    uint32_t v = (uint32_t)md[i] << 16;
    size_t chars = 4;
    if (i + 1 < 32)
      v |= (uint32_t)md[i + 1] << 8;
    else
      chars = 2;
    if (i + 2 < 32)
      v |= md[i + 2];
    else if (chars == 4)
      chars = 3;
    for (size_t c = 0; c < chars; c++)
      out[o++] = alphabet[(v >> (18 - 6 * c)) & 63];
  }
  out[o] = '\0';
  OPENSSL_cleanse(md, sizeof md);
  return o == MAC_B64_LEN ? 0 : -1;
}

static bool mac_equal(const char *a, const char *b)
{
  return strlen(a) == MAC_B64_LEN && strlen(b) == MAC_B64_LEN &&
         CRYPTO_memcmp(a, b, MAC_B64_LEN) == 0;
}

int chd_session_sign(const char *secret, const char *user_id, int64_t expires, char *out,
                     size_t size)
{
  char msg[CHD_USER_ID_MAX + 64], m[MAC_B64_LEN + 1];
  int n;

  if (!chd_user_id_valid(user_id) || expires <= 0)
    return -1;
  snprintf(msg, sizeof msg, "session\n%s\n%" PRId64, user_id, expires);
  if (mac(secret, msg, m) != 0)
    return -1;
  n = snprintf(out, size, "%s.%" PRId64 ".%s", user_id, expires, m);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

int chd_session_verify(const char *secret, const char *value, int64_t now, char *user_id)
{
  char msg[CHD_USER_ID_MAX + 64], m[MAC_B64_LEN + 1], id[CHD_USER_ID_MAX + 1];
  const char *dot1, *dot2;
  int64_t expires = 0;
  size_t idlen;

  if (!value)
    return -1;
  dot1 = strchr(value, '.');
  dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
  if (!dot2)
    return -1;
  idlen = (size_t)(dot1 - value);
  if (idlen == 0 || idlen > CHD_USER_ID_MAX || dot2 - dot1 - 1 < 1 || dot2 - dot1 - 1 > 18)
    return -1;
  memcpy(id, value, idlen);
  id[idlen] = '\0';
  for (const char *p = dot1 + 1; p < dot2; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    expires = expires * 10 + (*p - '0');
  }
  if (!chd_user_id_valid(id) || expires <= now)
    return -1;
  snprintf(msg, sizeof msg, "session\n%s\n%" PRId64, id, expires);
  if (mac(secret, msg, m) != 0 || !mac_equal(m, dot2 + 1))
    return -1;
  memcpy(user_id, id, idlen + 1);
  return 0;
}

int chd_random_hex(char *out, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  unsigned char bytes[64];

  if (n > sizeof bytes || RAND_bytes(bytes, (int)n) != 1)
    return -1;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  out[2 * n] = '\0';
  return 0;
}

bool chd_visitor_id_valid(const char *s)
{
  size_t n = 0;

  if (!s)
    return false;
  for (; s[n]; n++)
    if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
      return false;
  return n == CHD_VISITOR_ID_LEN;
}

int chd_csrf_make(const char *secret, const char *binding, char *out)
{
  char nonce[33], msg[256], m[MAC_B64_LEN + 1];

  if (chd_random_hex(nonce, 16) != 0)
    return -1;
  snprintf(msg, sizeof msg, "csrf\n%s\n%s", binding, nonce);
  if (mac(secret, msg, m) != 0)
    return -1;
  snprintf(out, CHD_CSRF_TOKEN_MAX, "%s.%s", nonce, m);
  return 0;
}

bool chd_csrf_valid(const char *secret, const char *binding, const char *token)
{
  char msg[256], m[MAC_B64_LEN + 1];
  const char *dot;

  if (!token || !(dot = strchr(token, '.')) || dot - token != 32)
    return false;
  for (const char *p = token; p < dot; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  snprintf(msg, sizeof msg, "csrf\n%s\n%.32s", binding, token);
  return mac(secret, msg, m) == 0 && mac_equal(m, dot + 1);
}

int chd_password_hash(const char *password, char out[64], char *err, size_t errlen)
{
  struct crypt_data *cd;
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  const char *h;
  int rc = -1;

  if (!password) {
    snprintf(err, errlen, "no password given");
    return -1;
  }
  /* NULL random bytes: libcrypt takes them from the system */
  if (!crypt_gensalt_rn("$2b$", BCRYPT_COST, NULL, 0, salt, sizeof salt)) {
    snprintf(err, errlen, "cannot make a bcrypt salt: %s", strerror(errno));
    return -1;
  }
  cd = calloc(1, sizeof *cd);
  if (!cd) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  h = crypt_r(password, salt, cd);
  if (!h || h[0] == '*' || strlen(h) >= 64) {
    snprintf(err, errlen, "bcrypt failed: %s", strerror(errno ? errno : EINVAL));
  } else {
    memcpy(out, h, strlen(h) + 1);
    rc = 0;
  }
  explicit_bzero(cd, sizeof *cd);
  free(cd);
  return rc;
}

int chd_password_verify(const char *password, const char *hash, char *err, size_t errlen)
{
  struct crypt_data *cd;
  const char *h;
  int rc;

  if (!password || !hash || strlen(hash) != 60 ||
      (strncmp(hash, "$2a$", 4) && strncmp(hash, "$2b$", 4) && strncmp(hash, "$2y$", 4)))
    return 0;
  cd = calloc(1, sizeof *cd);
  if (!cd) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  h = crypt_r(password, hash, cd);
  if (!h || h[0] == '*')
    rc = 0;   /* a malformed hash matches nothing */
  else
    rc = strlen(h) == 60 && CRYPTO_memcmp(h, hash, 60) == 0;
  explicit_bzero(cd, sizeof *cd);
  free(cd);
  return rc;
}
