/*
 * fuzz.h: the libFuzzer entry point every target defines, and helpers
 * shared by the targets. Each target is built twice: with libFuzzer
 * (./configure --enable-fuzzing, clang) and, for `make check`, linked with
 * replay.c, which feeds it every file of its seed corpus.
 */
#ifndef FEDGATE_FUZZ_H
#define FEDGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits [data, data+size) into chunks whose sizes come from the input's
 * own bytes, so the fuzzer explores every split point. The first byte of
 * the input seeds the chunk sizes; *seed advances. Returns the next chunk
 * length (>= 1) for the remaining n bytes. */
static inline size_t fuzz_chunk(uint32_t *seed, size_t n)
{
    *seed = *seed * 1103515245u + 12345u;
    size_t len = 1 + (*seed >> 16) % 64;
    return len < n ? len : n;
}

#endif
