/* handshake.c - the go-plugin launch contract: protocol version choice, socket path and the
 * handshake line the host reads from stdout (PROTOCOL.md section 1). */
#include "plugin.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CORE_PROTOCOL_VERSION 1
static const int supported_versions[] = {2};

int plugin_pick_version(const char *offered)
{
    int best = -1;
    const size_t nsup = sizeof supported_versions / sizeof supported_versions[0];
    while (offered && *offered) {
        char *end;
        long v = strtol(offered, &end, 10);
        if (end == offered) {
            offered++;
            continue;
        }
        for (size_t i = 0; i < nsup; i++)
            if (supported_versions[i] == v && v > best)
                best = (int)v;
        offered = end;
    }
    return best > 0 ? best : supported_versions[0];
}

static int field_ok(const char *s)
{
    return s && !strpbrk(s, "|\r\n");
}

int plugin_handshake_line(char *buf, size_t size, int app_version, const char *network,
                          const char *address)
{
    if (!field_ok(network) || !field_ok(address) || !*network || !*address)
        return CP_EINVAL;
    int n = snprintf(buf, size, "%d|%d|%s|%s|grpc|\n", CORE_PROTOCOL_VERSION, app_version,
                     network, address);
    if (n < 0 || (size_t)n >= size)
        return CP_EINVAL;
    return n;
}

int plugin_socket_path(const char *dir, char *out, size_t size)
{
    struct sockaddr_un sa;
    if (!dir || !*dir)
        dir = "/tmp";
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return CP_EINVAL;
    unsigned long long r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    for (int attempt = 0; attempt < 100; attempt++) {
        if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r)
            r = (unsigned long long)getpid() * 2654435761u + (unsigned long long)attempt;
        size_t dl = strlen(dir);
        while (dl > 0 && dir[dl - 1] == '/')
            dl--; /* "/" itself becomes "", so the path is "/pluginN", not "//pluginN" */
        int n = snprintf(out, size, "%.*s/plugin%llu", (int)dl, dir, r % 10000000000ULL);
        if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof sa.sun_path) {
            if (fd >= 0)
                close(fd);
            return CP_EINVAL;
        }
        if (lstat(out, &st) != 0) {
            if (fd >= 0)
                close(fd);
            return 0;
        }
    }
    if (fd >= 0)
        close(fd);
    return CP_EINVAL;
}
