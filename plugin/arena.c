/* arena.c - a bump allocator for protobuf-c's unpacking of one request: a request's many small
 * strings and entries come from a few chunks and go away together. Chunks stay below the size
 * at which glibc's malloc consolidates its fast bins (about 1 KiB), which a single large
 * allocation per call would trigger on every request. */
#include "plugin_int.h"

#include <stdlib.h>

#define CHUNK 960 /* bytes asked of malloc per chunk, header included */
#define ALIGN 16

struct pb_chunk {
    struct pb_chunk *next;
    size_t pad; /* keeps the data 16-aligned */
};

static void *chunk_new(struct pb_arena *ar, size_t size)
{
    struct pb_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->next = ar->chunks;
    ar->chunks = c;
    return c + 1;
}

static void *arena_alloc(void *ctx, size_t size)
{
    struct pb_arena *ar = ctx;
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (size > (CHUNK - sizeof(struct pb_chunk)) / 2)
        return chunk_new(ar, size); /* a large piece gets a chunk of its own */
    if (size > ar->left) {
        char *p = chunk_new(ar, CHUNK - sizeof(struct pb_chunk));
        if (!p)
            return NULL;
        ar->cur = p;
        ar->left = CHUNK - sizeof(struct pb_chunk);
    }
    void *p = ar->cur;
    ar->cur += size;
    ar->left -= size;
    return p;
}

static void arena_free_one(void *ctx, void *p)
{
    (void)ctx, (void)p; /* all at once, in pb_arena_free */
}

void pb_arena_init(struct pb_arena *ar)
{
    ar->a = (ProtobufCAllocator){arena_alloc, arena_free_one, ar};
    ar->chunks = NULL;
    ar->cur = NULL;
    ar->left = 0;
}

void pb_arena_free(struct pb_arena *ar)
{
    for (struct pb_chunk *c = ar->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    ar->chunks = NULL;
    ar->cur = NULL;
    ar->left = 0;
}
