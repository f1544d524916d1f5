/* lz4hc.c: the kernel's LZ4-HC compressor (LZ4_compress_HC, with or without a dictionary). */
#ifndef PYZRAM_LZ4HC_H
#define PYZRAM_LZ4HC_H
#include <stddef.h>
#include <stdint.h>

/*
 * Compress src[0..n) into dst (room for the LZ4 bound of n) at `level`
 * (above 16 acts as 16, below 1 as 9); returns the compressed size, 0 if no
 * memory for the per-thread state.  Decode with the lz4 decoder.
 */
size_t lz4hck_compress(const uint8_t *src, size_t n, uint8_t *dst, int level);

/*
 * The same with a dictionary, as backend_lz4hc.c compresses a page:
 * LZ4_resetStreamHC, LZ4_loadDictHC (the dictionary's last 64 KiB are
 * loaded) and LZ4_compress_HC_continue.  dict_len 0 is lz4hck_compress.
 * Decode with the lz4 decoder and the same dictionary.
 */
size_t lz4hck_compress_dict(const uint8_t *src, size_t n, uint8_t *dst, int level,
                            const uint8_t *dict, size_t dict_len);

#endif
