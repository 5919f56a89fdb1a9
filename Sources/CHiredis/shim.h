// hiredis (Debian's libhiredis-dev) and its libuv adapter, for the shared admission state
// (Sources/Server/RedisClient.swift). The adapter is header-only; one wrapper takes the loop as
// void * so this module and CLibUV need not agree on one uv_loop_t type.
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

static inline int axon_redis_attach_libuv(redisAsyncContext *context, void *loop) {
    return redisLibuvAttach(context, (uv_loop_t *)loop);
}
