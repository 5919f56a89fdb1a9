// hiredis (Debian's libhiredis-dev) on a libuv loop, for the shared admission state
// (Sources/Server/RedisClient.swift). This is hiredis's adapters/libuv.h with one fix: libuv reports
// a socket error (a refused connect, a reset) as a poll status, not an event, and that adapter
// returns on any status, so a refused connect was never noticed. Here an error lets hiredis read
// (or, while connecting, check the connect), which reports it. The loop is taken as void * so this
// module and CLibUV need not agree on one uv_loop_t type.
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

typedef struct axon_redis_uv_events {
    redisAsyncContext *context;
    uv_poll_t handle;
    int events;
} axon_redis_uv_events;

static void axon_redis_uv_poll(uv_poll_t *handle, int status, int events) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)handle->data;
    if (status != 0) {
        // libuv stopped the poll; hiredis finds the error on its next read or connect check.
        if (p->context != NULL) {
            if (p->context->c.flags & REDIS_CONNECTED) redisAsyncHandleRead(p->context);
            else redisAsyncHandleWrite(p->context);
        }
        return;
    }
    if (p->context != NULL && (events & UV_READABLE)) redisAsyncHandleRead(p->context);
    if (p->context != NULL && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void axon_redis_uv_update(axon_redis_uv_events *p) {
    if (p->events) uv_poll_start(&p->handle, p->events, axon_redis_uv_poll);
    else uv_poll_stop(&p->handle);
}

static void axon_redis_uv_add_read(void *privdata) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)privdata;
    p->events |= UV_READABLE;
    axon_redis_uv_update(p);
}

static void axon_redis_uv_del_read(void *privdata) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)privdata;
    p->events &= ~UV_READABLE;
    axon_redis_uv_update(p);
}

static void axon_redis_uv_add_write(void *privdata) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)privdata;
    p->events |= UV_WRITABLE;
    axon_redis_uv_update(p);
}

static void axon_redis_uv_del_write(void *privdata) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)privdata;
    p->events &= ~UV_WRITABLE;
    axon_redis_uv_update(p);
}

static void axon_redis_uv_on_close(uv_handle_t *handle) { free(handle->data); }

static void axon_redis_uv_cleanup(void *privdata) {
    axon_redis_uv_events *p = (axon_redis_uv_events *)privdata;
    p->context = NULL;  // hiredis frees the context after this
    uv_close((uv_handle_t *)&p->handle, axon_redis_uv_on_close);
}

static inline int axon_redis_attach_libuv(redisAsyncContext *context, void *loop) {
    if (context->ev.data != NULL) return REDIS_ERR;
    axon_redis_uv_events *p = (axon_redis_uv_events *)calloc(1, sizeof(*p));
    if (p == NULL) return REDIS_ERR;
    if (uv_poll_init((uv_loop_t *)loop, &p->handle, context->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    context->ev.addRead = axon_redis_uv_add_read;
    context->ev.delRead = axon_redis_uv_del_read;
    context->ev.addWrite = axon_redis_uv_add_write;
    context->ev.delWrite = axon_redis_uv_del_write;
    context->ev.cleanup = axon_redis_uv_cleanup;
    context->ev.data = p;
    p->handle.data = p;
    p->context = context;
    return REDIS_OK;
}
