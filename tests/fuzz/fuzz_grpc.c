/*
 * fuzz_grpc.c - libFuzzer driver for the request decoding of every gRPC method: the real
 * server (the plugin's own gRPC host, its method table, fast paths, loop and pools) runs in
 * this process on a unix socket, and each input is sent to it as the raw message bytes of one
 * call by a gRPC core client.
 *
 * Input: byte 0 picks the method (modulo the table below), the rest is the message as sent on
 * the wire. Whatever the bytes, the call must end with a status (INVALID_ARGUMENT for bytes
 * that are not a message) within the deadline, and the server must keep serving: a health
 * check after every input must answer SERVING.
 */
#include "plugin_int.h"

#include <assert.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEADLINE_MS 4000

static const char *const methods[] = {
    "/pluginv2.Resource/CallResource",     "/pluginv2.Data/QueryData",
    "/pluginv2.Diagnostics/CheckHealth",   "/pluginv2.Diagnostics/CollectMetrics",
    "/grpc.health.v1.Health/Check",        "/pluginv2.Stream/SubscribeStream",
    "/pluginv2.Stream/PublishStream",      "/pluginv2.Stream/RunStream",
    "/no.Such/Method",
};
#define NMETHODS (sizeof methods / sizeof methods[0])

static grpc_channel *channel;
static grpc_completion_queue *cq;

/* One unary-or-streaming call: sends msg, reads every answer message, returns the status. */
static grpc_status_code call(const char *method, const uint8_t *msg, size_t len)
{
    grpc_slice m = grpc_slice_from_static_string(method);
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_millis(DEADLINE_MS, GPR_TIMESPAN));
    grpc_call *c = grpc_channel_create_call(channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
                                            dl, NULL);
    grpc_slice payload = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[5];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[4].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[4].data.recv_status_on_client.status = &status;
    ops[4].data.recv_status_on_client.status_details = &details;
    int tag_main = 1, tag_msg = 2;
    grpc_call_error e = grpc_call_start_batch(c, ops, 5, &tag_main, NULL);
    assert(e == GRPC_CALL_OK);
    /* drain answer messages one at a time until the status arrives */
    int done = 0, reading = 0;
    grpc_byte_buffer *got = NULL;
    grpc_op rd;
    memset(&rd, 0, sizeof rd);
    rd.op = GRPC_OP_RECV_MESSAGE;
    rd.data.recv_message.recv_message = &got;
    if (grpc_call_start_batch(c, &rd, 1, &tag_msg, NULL) == GRPC_CALL_OK)
        reading = 1;
    while (!done || reading) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(
                                                                DEADLINE_MS * 2, GPR_TIMESPAN)),
            NULL);
        assert(ev.type == GRPC_OP_COMPLETE); /* the server must answer: no hang */
        if (ev.tag == &tag_main) {
            done = 1;
        } else {
            if (ev.success && got) {
                grpc_byte_buffer_destroy(got);
                got = NULL;
                if (grpc_call_start_batch(c, &rd, 1, &tag_msg, NULL) == GRPC_CALL_OK)
                    continue;
            }
            reading = 0;
        }
    }
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(c);
    return status;
}

static void start(void)
{
    /* quiet logs: each input may log a line or two */
    setenv("CACHINGPROXY_LOG_LEVEL", "error", 0);
    if (plugin_runtime_init() != 0)
        abort();
    char addr[128];
    snprintf(addr, sizeof addr, "unix:/tmp/cp-fuzz-grpc-%ld.sock", (long)getpid());
    unlink(addr + 5);
    if (!rpc_server_start(addr, 1))
        abort();
    channel = grpc_channel_create(addr, grpc_insecure_credentials_create(), NULL);
    cq = grpc_completion_queue_create_for_next(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!channel)
        start();
    if (size < 1)
        return 0;
    /* (the controller's Shutdown is left out: it stops the process by design) */
    grpc_status_code st = call(methods[data[0] % NMETHODS], data + 1, size - 1);
    assert(st != GRPC_STATUS_UNKNOWN); /* every call ends with a status the server chose */
    /* still serving: an empty HealthCheckRequest answers OK */
    assert(call("/grpc.health.v1.Health/Check", NULL, 0) == GRPC_STATUS_OK);
    return 0;
}
