/* hmac.c - HMAC request signing (OpenSSL): the string to sign is
 * "METHOD\n<path?query>\n<timestamp>\n<hex sha256 of body>". */
#include "auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

int auth_hmac_sign(const char *algorithm, const void *key, size_t key_len, const char *method,
                   const char *path_query, const char *timestamp, const void *body,
                   size_t body_len, char *out)
{
    const EVP_MD *md = !strcmp(algorithm, "sha512") ? EVP_sha512() : EVP_sha256();
    unsigned char bh[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    unsigned int bl = 0, ml = 0;
    char bhex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_Digest(body_len ? body : "", body_len, bh, &bl, EVP_sha256(), NULL))
        return CP_EINTERNAL;
    hex(bh, bl, bhex);
    size_t n = strlen(method) + strlen(path_query) + strlen(timestamp) + strlen(bhex) + 4;
    char *msg = malloc(n);
    if (!msg)
        return CP_ENOMEM;
    int len = snprintf(msg, n, "%s\n%s\n%s\n%s", method, path_query, timestamp, bhex);
    unsigned char *ok = HMAC(md, key, (int)key_len, (const unsigned char *)msg, (size_t)len,
                             mac, &ml);
    free(msg);
    if (!ok)
        return CP_EINTERNAL;
    hex(mac, ml, out);
    return 0;
}
