/*
 * plugin.h - the process host: go-plugin launch contract, the gRPC server speaking Grafana's
 * plugin protocol v2, logging and metrics.
 *
 * The executable's main() calls plugin_main(); everything else here is exposed for tests and
 * the benchmark.
 */
#ifndef CP_PLUGIN_H
#define CP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Entry point of gpx_cachingproxy. Returns the process exit status. */
int plugin_main(int argc, char **argv);

/* ---- handshake (go-plugin launch contract) ----------------------------------------------- */

/* Picks the application protocol version from a PLUGIN_PROTOCOL_VERSIONS value ("1,2"):
 * the highest we support that the host offers, else our lowest (the host then reports the
 * mismatch). */
int plugin_pick_version(const char *offered);

/* Formats the handshake line "1|<app>|<network>|<address>|grpc|\n" into buf. Returns its
 * length, or CP_EINVAL when it does not fit or a field holds '|' or a line break. */
int plugin_handshake_line(char *buf, size_t size, int app_version, const char *network,
                          const char *address);

/* Chooses a unix socket path "<dir>/plugin<digits>" that does not exist yet. dir: the
 * PLUGIN_UNIX_SOCKET_DIR, else TMPDIR, else /tmp. Returns 0 or CP_EINVAL when the path would
 * not fit in sun_path (107 bytes) or the directory is unusable. */
int plugin_socket_path(const char *dir, char *out, size_t size);

/* ---- logging ----------------------------------------------------------------------------- */

/* Log lines are JSON objects on stderr in hclog's shape (@level, @message, @timestamp,
 * @module, key-values). Level from env CACHINGPROXY_LOG_LEVEL or GF_PLUGIN_LOG_LEVEL. */
void plugin_log_init(void);
void plugin_log_set_level(int level);
int plugin_log_level_parse(const char *s); /* -1 when unknown */
void plugin_log(int level, const char *msg, const struct cp_kv *kv, size_t n);
/* Formats one log line into buf (for tests); returns its length (always NUL-terminated). */
size_t plugin_log_format(char *buf, size_t size, int level, const char *msg,
                         const struct cp_kv *kv, size_t n, int64_t unix_us);
/* Secret values registered here are replaced by "[redacted]" wherever they appear in a log
 * line. Reference counted: add and remove in pairs. Values shorter than 4 bytes are ignored. */
void plugin_log_secret_add(const char *v);
void plugin_log_secret_remove(const char *v);
/* Copies in to out with every registered secret replaced by "[redacted]" (for error texts
 * that reach users). */
void plugin_log_redact(const char *in, char *out, size_t size);
/* The logger handed to lower modules. */
extern const struct cp_logger plugin_logger;

/* ---- metrics ----------------------------------------------------------------------------- */

/* Renders every metric family in the Prometheus text format into out. */
int plugin_metrics_render(struct cp_buf *out);

#endif
