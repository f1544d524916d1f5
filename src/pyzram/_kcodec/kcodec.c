/*
 * pyzram._kcodec -- page codecs that reproduce the Linux kernel's zram
 * compressors byte for byte.
 *
 * Written for pyzram.  The behaviour (not the code) follows these kernel
 * functions, as found in Linux 6.12 and checked against a running 6.18 kernel
 * on x86-64:
 *
 *   lz4     : LZ4_compress_fast()     lib/lz4/lz4_compress.c  (LZ4 1.7.x fast
 *             path: noDict, byU16 table, 8192-entry hash, skip trigger 6)
 *             LZ4_decompress_safe()   lib/lz4/lz4_decompress.c
 *             with a dictionary (zram's algorithm_params dict=, as
 *             drivers/block/zram/backend_lz4.c calls them): LZ4_loadDict()
 *             and LZ4_compress_fast_continue() (usingExtDict, byU32 table,
 *             4096-entry 5-byte hash); LZ4_setStreamDecode() and
 *             LZ4_decompress_safe_continue() (usingExtDict)
 *   lz4hc   : LZ4_compress_HC(), with a dictionary LZ4_loadDictHC() and
 *             LZ4_compress_HC_continue()  lib/lz4/lz4hc_compress.c, in lz4hc.c
 *   lzo     : lzo1x_1_compress()      lib/lzo/lzo1x_compress.c (bitstream v0)
 *   lzo-rle : lzorle1x_1_compress()   lib/lzo/lzo1x_compress.c (bitstream v1,
 *             zero runs coded as an M4 instruction)
 *   lzo and lzo-rle decode with lzo1x_decompress_safe()
 *             lib/lzo/lzo1x_decompress_safe.c, Documentation/staging/lzo.rst
 *
 * The compressors are modelled as they behave on x86-64 (little endian,
 * CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS, LZO_USE_CTZ64): the LZO match-length
 * loop compares eight bytes at a time and may stop a few bytes early near the
 * end of the input exactly like the kernel's does.  Loads are little-endian
 * on every host so that output does not depend on the host byte order.
 *
 * The decoders accept exactly what the kernel's safe decoders accept for an
 * output capacity equal to `out_len` (zram passes PAGE_SIZE), but check every
 * read and write against the real buffer ends, so no input can make them
 * touch memory outside the buffers they are given.
 *
 * Python API (see the module docstring at the end of this file).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lz4hc.h" /* lz4hc: the kernel's LZ4-HC, in lz4hc.c */
#define PYZRAM_KCODEC_MODULE
#include "kcodec_capi.h" /* the C entry points' table, exported as a capsule */

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

#define KC_PAGE 4096
#define KC_DST_STRIDE (2 * KC_PAGE) /* zram's per-stream buffer: 2 * PAGE_SIZE */
#define KC_MAX_INPUT 65536          /* largest single compress() input we take */
#define KC_MAX_OUT_LEN (1 << 26)    /* largest decompress() out_len we take */

#if defined(__GNUC__)
#define KC_INLINE static inline __attribute__((always_inline))
#define KC_LIKELY(x) __builtin_expect(!!(x), 1)
#define KC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define KC_INLINE static inline
#define KC_LIKELY(x) (x)
#define KC_UNLIKELY(x) (x)
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define KC_BIG_ENDIAN 1
#else
#define KC_BIG_ENDIAN 0
#endif

KC_INLINE uint32_t kc_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if KC_BIG_ENDIAN
    v = __builtin_bswap32(v);
#endif
    return v;
}

KC_INLINE uint64_t kc_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if KC_BIG_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

KC_INLINE unsigned kc_ctz64(uint64_t v)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(v);
#else
    unsigned n = 0;
    while (!(v & 1)) {
        v >>= 1;
        n++;
    }
    return n;
#endif
}

KC_INLINE uint16_t kc_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8)); /* compiles to one 16-bit load */
}

/* Copy 8 bytes at a time; may write up to 7 bytes past d + n and read up to
 * 7 bytes past s + n.  Callers guarantee both ends have that much room. */
KC_INLINE void kc_copy_over(uint8_t *d, const uint8_t *s, size_t n)
{
    uint8_t *const e = d + n;
    do {
        memcpy(d, s, 8);
        d += 8;
        s += 8;
    } while (d < e);
}

/* Copy 16 bytes at a time (fixed-size memcpy: one unaligned vector load and
 * store); may read and write up to 15 bytes past s + n and d + n, so callers
 * check that both buffers have n + 16 bytes left.  d and s must not overlap
 * (literals: different buffers). */
KC_INLINE void kc_copy16_over(uint8_t *d, const uint8_t *s, size_t n)
{
    uint8_t *const e = d + n;
    do {
        memcpy(d, s, 16);
        d += 16;
        s += 16;
    } while (d < e);
}

/* Byte distance of the first wide copy after the 8 leading bytes of a
 * back-reference with distance 3, 5, 6 or 7: the smallest multiple of the
 * distance that is >= 8 (the output repeats with that period too). */
static const uint8_t kc_wide_dist[8] = {0, 8, 8, 9, 8, 10, 12, 14};

/* The 8-byte word that repeats the dist bytes before a back-reference, for a
 * distance dividing 8 (1, 2 or 4).  Host byte order on both sides of the
 * copy, so the pattern is endian-neutral. */
KC_INLINE uint64_t kc_pattern_word(const uint8_t *m, size_t dist)
{
    if (dist == 1)
        return 0x0101010101010101ull * m[0];
    if (dist == 2) {
        uint16_t x;
        memcpy(&x, m, 2);
        return 0x0001000100010001ull * x;
    }
    uint32_t x;
    memcpy(&x, m, 4);
    return 0x0000000100000001ull * x;
}

/* LZ77 back-reference copy, `len` bytes from `dist` (>= 1) bytes behind op,
 * with byte-by-byte semantics (the source may overlap what is written,
 * repeating the last `dist` bytes).  WILD: the caller checked that
 * len + 16 bytes are writable at op, so whole 8/16-byte steps may run past
 * op + len by up to 15 bytes.  Every read is at >= op - dist (inside the
 * output already written) and below the write position. */
KC_INLINE void kc_backcopy_wild(uint8_t *op, size_t dist, size_t len)
{
    uint8_t *const e = op + len;
    const uint8_t *m = op - dist;
    if (KC_LIKELY(dist >= 16)) {
        /* source and destination of each 16-byte step are disjoint */
        do {
            memcpy(op, m, 16);
            op += 16;
            m += 16;
        } while (op < e);
        return;
    }
    if (dist >= 8) {
        do {
            memcpy(op, m, 8);
            op += 8;
            m += 8;
        } while (op < e);
        return;
    }
    if (dist == 1 || dist == 2 || dist == 4) {
        /* The period divides 8: every 8-byte step stores the same word.
         * (Host byte order on both sides: the pattern is endian-neutral.) */
        uint64_t v;
        if (dist == 1 && len > 32) {
            memset(op, m[0], len); /* long runs (zero pages): libc is faster */
            return;
        }
        v = kc_pattern_word(m, dist);
        do {
            memcpy(op, &v, 8);
            op += 8;
        } while (op < e);
        return;
    }
    /* 3, 5, 6, 7: eight single bytes (a fixed count, unrolled), after which
     * the output repeats with period kc_wide_dist[dist] >= 8, which lies
     * inside what is written (op + 8 - wide > op - dist). */
    for (int i = 0; i < 8; i++)
        op[i] = m[i];
    m = op + 8 - kc_wide_dist[dist];
    op += 8;
    while (op < e) {
        memcpy(op, m, 8);
        op += 8;
        m += 8;
    }
}

/* Exactly 18 bytes of a back-reference with distance 1..7 (the repeating
 * pattern of the dist bytes before op). */
KC_INLINE void kc_backcopy18_short(uint8_t *op, size_t dist)
{
    const uint8_t *m = op - dist;
    if (dist == 1 || dist == 2 || dist == 4) {
        /* period divides 8 (and 16): three stores of one 8-byte word */
        uint64_t v = kc_pattern_word(m, dist);
        memcpy(op, &v, 8);
        memcpy(op + 8, &v, 8);
        memcpy(op + 16, &v, 2);
        return;
    }
    for (int i = 0; i < 8; i++)
        op[i] = m[i];
    m = op + 8 - kc_wide_dist[dist]; /* >= op - dist: see kc_backcopy_wild */
    memcpy(op + 8, m, 8);
    memcpy(op + 16, m + 8, 2);
}

/* The same copy without writing past op + len (near the end of a buffer). */
KC_INLINE void kc_backcopy_exact(uint8_t *op, size_t dist, size_t len)
{
    const uint8_t *m = op - dist;
    if (dist >= 8) {
        while (len >= 8) {
            memcpy(op, m, 8);
            op += 8;
            m += 8;
            len -= 8;
        }
    }
    while (len--)
        *op++ = *m++;
}

/* Back-reference copy with `room` (>= len) writable bytes at op.  Near the
 * end of the buffer all but the last 16 bytes still go the wide way (their
 * overshoot ends before op + len); the exact tail continues with the same
 * distance, reading only bytes that are already final. */
KC_INLINE void kc_backcopy(uint8_t *op, size_t dist, size_t len, size_t room)
{
    if (KC_LIKELY(room - len >= 32 && dist >= 8)) {
        /* Most matches are at most 32 bytes long: copy 32 bytes without a
         * length-dependent branch (each step's source ends at or before its
         * destination), and loop only for the rest. */
        const uint8_t *m = op - dist;
        if (dist >= 16) {
            memcpy(op, m, 16);
            memcpy(op + 16, m + 16, 16);
        } else {
            memcpy(op, m, 8);
            memcpy(op + 8, m + 8, 8);
            memcpy(op + 16, m + 16, 8);
            memcpy(op + 24, m + 24, 8);
        }
        if (KC_UNLIKELY(len > 32))
            kc_backcopy_wild(op + 32, dist, len - 32);
        return;
    }
    if (KC_LIKELY(room - len >= 16)) {
        kc_backcopy_wild(op, dist, len);
        return;
    }
    if (len > 16) {
        kc_backcopy_wild(op, dist, len - 16);
        op += len - 16;
        len = 16;
    }
    kc_backcopy_exact(op, dist, len);
}

/* ------------------------------------------------------------------------ */
/* LZ4 compressor: models LZ4_compress_generic() as zram calls it, noLimit, */
/* either noDict and byU16 (LZ4_compress_fast) or usingExtDict and byU32   */
/* after LZ4_loadDict (LZ4_compress_fast_continue).                        */
/* ------------------------------------------------------------------------ */

#define LZ4K_MINMATCH 4
#define LZ4K_LASTLITERALS 5
#define LZ4K_MFLIMIT 12               /* WILDCOPYLENGTH + MINMATCH */
#define LZ4K_MIN_LENGTH (LZ4K_MFLIMIT + 1)
#define LZ4K_HASH_BITS 13             /* LZ4_HASHLOG + 1 for the byU16 table */
#define LZ4K_TABLE (1u << LZ4K_HASH_BITS)
#define LZ4K_SKIPTRIGGER 6
#define LZ4K_ML_MASK 15u
#define LZ4K_RUN_MASK 15u

#define LZ4KD_HASH_BITS 12        /* LZ4_HASHLOG, the byU32 table */
#define LZ4KD_TABLE (1u << LZ4KD_HASH_BITS)
#define LZ4KD_HASH_UNIT 8         /* sizeof(size_t): LZ4_loadDict's step bound */
#define LZ4KD_WINDOW 65536u       /* 64 KiB */
#define LZ4KD_MAX_DISTANCE 65535u /* LZ4_DISTANCE_MAX */

/* LZ4_compress_generic()'s tableType: what a hash table slot holds. */
typedef enum {
    LZ4K_BY_U16, /* positions from the input's start (inputs under 64 KiB, no dictionary) */
    LZ4K_BY_U32, /* stream offsets (a dictionary before the input) */
} lz4k_table_type;

typedef struct {
    uint16_t pos[LZ4K_TABLE]; /* byU16 */
} lz4k_work;

typedef struct {
    uint32_t pos[LZ4KD_TABLE]; /* byU32 */
} lz4kd_work;

/* Worst case output of LZ4 for n input bytes (LZ4_COMPRESSBOUND). */
static size_t lz4k_bound(size_t n) { return n + n / 255 + 16; }

/* LZ4_hashPosition(): byU16 hashes 4 bytes (LZ4_hash4, Knuth's multiplicative
 * hash, the top 13 bits); byU32 hashes 5 (LZ4_hash5 of an 8-byte little-endian
 * load, as on x86-64: the low 5 bytes, the top 12 bits). */
KC_INLINE uint32_t lz4k_hash(lz4k_table_type tt, const uint8_t *p)
{
    if (tt == LZ4K_BY_U16)
        return (kc_le32(p) * 2654435761u) >> (32 - LZ4K_HASH_BITS);
    return (uint32_t)(((kc_le64(p) << 24) * 889523592379ull) >> (64 - LZ4KD_HASH_BITS));
}

/* LZ4_getIndexOnHash() and LZ4_putIndexOnHash(). */
KC_INLINE uint32_t lz4k_get(lz4k_table_type tt, const void *tab, uint32_t h)
{
    return tt == LZ4K_BY_U16 ? ((const uint16_t *)tab)[h] : ((const uint32_t *)tab)[h];
}

KC_INLINE void lz4k_put(lz4k_table_type tt, void *tab, uint32_t h, uint32_t idx)
{
    if (tt == LZ4K_BY_U16)
        ((uint16_t *)tab)[h] = (uint16_t)idx;
    else
        ((uint32_t *)tab)[h] = idx;
}

/* LZ4_count(): number of equal bytes at a and b, stopping at lim. */
KC_INLINE size_t lz4k_count(const uint8_t *a, const uint8_t *b, const uint8_t *lim)
{
    const uint8_t *const start = a;
    while (lim - a >= 8) {
        uint64_t d = kc_le64(a) ^ kc_le64(b);
        if (d)
            return (size_t)(a - start) + (kc_ctz64(d) >> 3);
        a += 8;
        b += 8;
    }
    while (a < lim && *a == *b) {
        a++;
        b++;
    }
    return (size_t)(a - start);
}

KC_INLINE uint8_t *lz4k_put_length(uint8_t *op, size_t len)
{
    for (; len >= 255; len -= 255)
        *op++ = 255;
    *op++ = (uint8_t)len;
    return op;
}

/* A sequence's token (its literal length; the match length is added by
 * lz4k_put_match_length), the literal length's extra bytes, the literals.
 * The literals are copied in 8-byte steps: anchor + lit must not pass mflimit. */
KC_INLINE uint8_t *lz4k_put_literals(uint8_t *op, uint8_t **token, const uint8_t *anchor,
                                     size_t lit)
{
    *token = op++;
    if (lit >= LZ4K_RUN_MASK) {
        **token = (uint8_t)(LZ4K_RUN_MASK << 4);
        op = lz4k_put_length(op, lit - LZ4K_RUN_MASK);
    } else {
        **token = (uint8_t)(lit << 4);
    }
    if (lit) {
        kc_copy_over(op, anchor, lit);
        op += lit;
    }
    return op;
}

/* The match length (less MINMATCH) into the sequence's token, and its extra bytes. */
KC_INLINE uint8_t *lz4k_put_match_length(uint8_t *op, uint8_t *token, size_t ml)
{
    if (ml >= LZ4K_ML_MASK) {
        *token += (uint8_t)LZ4K_ML_MASK;
        op = lz4k_put_length(op, ml - LZ4K_ML_MASK);
    } else {
        *token += (uint8_t)ml;
    }
    return op;
}

/* The block's last literals: a token with no match, then the bytes, copied exactly. */
KC_INLINE uint8_t *lz4k_put_last_literals(uint8_t *op, const uint8_t *anchor, size_t last)
{
    if (last >= LZ4K_RUN_MASK) {
        *op++ = (uint8_t)(LZ4K_RUN_MASK << 4);
        op = lz4k_put_length(op, last - LZ4K_RUN_MASK);
    } else {
        *op++ = (uint8_t)(last << 4);
    }
    memcpy(op, anchor, last);
    return op + last;
}

/*
 * Models LZ4_compress_generic(), one body for both of zram's calls:
 *
 * - LZ4_compress_fast(src, dst, n, >= bound, accel, wrkmem): noDict, byU16
 *   (tt LZ4K_BY_U16, dict_len 0);
 * - backend_lz4.c's LZ4_loadDict(stream, dict, dict_len), then
 *   LZ4_compress_fast_continue(stream, src, dst, n, >= bound, accel) on a page
 *   elsewhere in memory: usingExtDict, byU32, dictSmall below 64 KiB of
 *   dictionary (tt LZ4K_BY_U32).
 *
 * Both are noLimit: zram's 2 * PAGE_SIZE buffer is always >= the bound.  n <=
 * 65536.  dst must hold lz4k_bound(n) + 8 bytes (literal copies run in 8-byte
 * steps).  Returns the compressed size.  The callers pass tt and the
 * dictionary as constants, so each inlined copy keeps only its own case, as
 * the kernel's LZ4_FORCE_INLINE does.
 *
 * Positions are stream offsets: the input starts at `cur`, 0 without a
 * dictionary.  LZ4_loadDict puts the dictionary's last (at most) 64 KiB at
 * offsets 64 KiB + i, and the input then starts at 64 KiB + its size; table
 * slots hold offsets, 0 when empty (LZ4_resetStream: an empty slot means
 * "offset 0", compared like any other candidate).  A dictionary shorter than
 * 8 bytes loads nothing (cur stays 0).
 *
 * zram's dictionary stream is not reset between pages (6.18's lz4_compress
 * only calls LZ4_loadDict again, which adds 64 KiB + the dictionary to
 * currentOffset, and resets past 1 GiB); the output is the same as from a
 * zeroed stream: every offset left from an earlier page, like an empty slot,
 * lies more than 64 KiB + the dictionary before the input, and is refused by
 * the dictSmall test (below 64 KiB of dictionary) or by the distance limit.
 * Without a dictionary no candidate is ever refused: every offset is within
 * 64 KiB of an input under 64 KiB.
 */
KC_INLINE size_t lz4k_compress_generic(const uint8_t *src, size_t n, uint8_t *dst,
                                       uint32_t accel, lz4k_table_type tt, void *tab,
                                       size_t tab_size, const uint8_t *dict, size_t dict_len)
{
    const uint8_t *ip = src;
    const uint8_t *anchor = src;
    const uint8_t *const iend = src + n;
    uint8_t *op = dst;
    uint32_t cur = 0;    /* offset of src[0] */
    uint32_t ds = 0;     /* dictionary bytes loaded */
    int small;           /* dictSmall: offsets before the dictionary refused */
    const uint8_t *dend; /* end of the loaded dictionary */

    memset(tab, 0, tab_size); /* LZ4_resetStream() */
    if (accel < 1)
        accel = 1;
    if (dict_len >= LZ4KD_HASH_UNIT) {
        if (dict_len > LZ4KD_WINDOW) {
            dict += dict_len - LZ4KD_WINDOW;
            dict_len = LZ4KD_WINDOW;
        }
        ds = (uint32_t)dict_len;
        cur = LZ4KD_WINDOW + ds;
        /* every third position while 8 bytes remain; later ones win */
        for (uint32_t i = 0; i + LZ4KD_HASH_UNIT <= ds; i += 3)
            lz4k_put(tt, tab, lz4k_hash(tt, dict + i), LZ4KD_WINDOW + i);
    } else {
        dict = src; /* nothing loaded: no offset below cur is ever accepted */
    }
    dend = dict + ds;
    small = ds < LZ4KD_WINDOW && ds < cur;

/* The offset of input byte p; a candidate offset m refused at p (the dictSmall
 * and distance tests, in the kernel's order; byU16 has no distance test); the
 * bytes at offset m. */
#define LZ4K_AT(p) (cur + (uint32_t)((p) - src))
#define LZ4K_REFUSED(m, p)                                                                 \
    ((small && (m) < cur - ds) ||                                                          \
     (tt != LZ4K_BY_U16 && (m) + LZ4KD_MAX_DISTANCE < LZ4K_AT(p)))
#define LZ4K_PTR(m) ((m) < cur ? dend - (cur - (m)) : src + ((m) - cur))

    if (n >= LZ4K_MIN_LENGTH) {
        const uint8_t *const mflimit = iend - LZ4K_MFLIMIT;
        const uint8_t *const matchlimit = iend - LZ4K_LASTLITERALS;
        uint32_t fwd_h;

        lz4k_put(tt, tab, lz4k_hash(tt, ip), LZ4K_AT(ip));
        ip++;
        fwd_h = lz4k_hash(tt, ip);

        for (;;) {
            uint32_t m;
            const uint8_t *match;
            uint8_t *token;
            size_t lit, ml;

            /* Find a match; the step grows every 64 failed probes (scaled by
             * acceleration). */
            {
                const uint8_t *fwd = ip;
                uint32_t step = 1;
                uint32_t probes = accel << LZ4K_SKIPTRIGGER;
                for (;;) {
                    uint32_t h = fwd_h;
                    ip = fwd;
                    if ((ptrdiff_t)step > mflimit - fwd)
                        goto last_literals;
                    fwd += step;
                    step = probes++ >> LZ4K_SKIPTRIGGER;
                    m = lz4k_get(tt, tab, h);
                    fwd_h = lz4k_hash(tt, fwd);
                    lz4k_put(tt, tab, h, LZ4K_AT(ip));
                    /* refused offsets are never dereferenced; an accepted one
                     * below cur is at or after the dictionary's first byte */
                    if (LZ4K_REFUSED(m, ip))
                        continue;
                    match = LZ4K_PTR(m);
                    if (kc_le32(match) == kc_le32(ip))
                        break;
                }
            }

            /* Extend the match backwards over the pending literals, inside the
             * dictionary or inside the input. */
            {
                const uint8_t *const lo = m < cur ? dict : src;
                while (ip > anchor && match > lo && ip[-1] == match[-1]) {
                    ip--;
                    match--;
                    m--;
                }
            }

            /* Literal run. */
            lit = (size_t)(ip - anchor);
            op = lz4k_put_literals(op, &token, anchor, lit); /* anchor + lit <= mflimit */

            for (;;) {
                /* Offset and match length. */
                uint16_t off = (uint16_t)(LZ4K_AT(ip) - m);
                op[0] = (uint8_t)off;
                op[1] = (uint8_t)(off >> 8);
                op += 2;
                if (m < cur) {
                    /* up to the dictionary's end, then on into the input */
                    size_t room = (size_t)(dend - match);
                    const uint8_t *limit =
                        room < (size_t)(matchlimit - ip) ? ip + room : matchlimit;
                    ml = lz4k_count(ip + LZ4K_MINMATCH, match + LZ4K_MINMATCH, limit);
                    ip += LZ4K_MINMATCH + ml;
                    if (ip == limit) {
                        size_t more = lz4k_count(ip, src, matchlimit);
                        ml += more;
                        ip += more;
                    }
                } else {
                    ml = lz4k_count(ip + LZ4K_MINMATCH, match + LZ4K_MINMATCH, matchlimit);
                    ip += LZ4K_MINMATCH + ml;
                }
                op = lz4k_put_match_length(op, token, ml);
                anchor = ip;

                if (ip > mflimit)
                    goto last_literals;

                /* Fill the table at ip - 2, then try an immediate match. */
                lz4k_put(tt, tab, lz4k_hash(tt, ip - 2), LZ4K_AT(ip - 2));
                {
                    uint32_t h = lz4k_hash(tt, ip);
                    m = lz4k_get(tt, tab, h);
                    lz4k_put(tt, tab, h, LZ4K_AT(ip));
                }
                if (LZ4K_REFUSED(m, ip))
                    break;
                match = LZ4K_PTR(m);
                if (kc_le32(match) != kc_le32(ip))
                    break;
                token = op++;
                *token = 0;
            }
            ip++;
            fwd_h = lz4k_hash(tt, ip);
        }
    }
#undef LZ4K_AT
#undef LZ4K_REFUSED
#undef LZ4K_PTR

last_literals:
    op = lz4k_put_last_literals(op, anchor, (size_t)(iend - anchor));
    return (size_t)(op - dst);
}

/* LZ4_compress_fast(): zram's lz4 without a dictionary. */
static size_t lz4k_compress(const uint8_t *src, size_t n, uint8_t *dst, uint32_t accel,
                            lz4k_work *w)
{
    return lz4k_compress_generic(src, n, dst, accel, LZ4K_BY_U16, w->pos, sizeof(w->pos),
                                 NULL, 0);
}

/* LZ4_loadDict() then LZ4_compress_fast_continue(): zram's lz4 with a dictionary. */
static size_t lz4kd_compress(const uint8_t *src, size_t n, uint8_t *dst, uint32_t accel,
                             const uint8_t *dict, size_t dict_len, lz4kd_work *w)
{
    return lz4k_compress_generic(src, n, dst, accel, LZ4K_BY_U32, w->pos, sizeof(w->pos), dict,
                                 dict_len);
}

/* ------------------------------------------------------------------------ */
/* LZ4 decoder: models LZ4_decompress_safe() (decode_full_block, noDict)    */
/* and, with a dictionary, LZ4_setStreamDecode(dict) then                   */
/* LZ4_decompress_safe_continue() into a buffer that does not follow it:   */
/* LZ4_decompress_safe_forceExtDict() (usingExtDict, the whole dictionary). */
/* Same acceptance rules as the kernel, including its two-stage shortcut,   */
/* and offset 0 (which the kernel's decoder expands to zero bytes).          */
/* Returns the decoded size, or -1 on malformed input.                       */
/* ------------------------------------------------------------------------ */

KC_INLINE ptrdiff_t lz4k_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                                const uint8_t *dict, size_t dict_len)
{
    const uint8_t *ip = src;
    const uint8_t *const iend = src + n;
    uint8_t *op = dst;
    uint8_t *const oend = dst + cap;
    /* The kernel's shortcut bounds as pointers that stay inside the buffers.
     * With ip at the token: ip < ishort <=> ip + 1 < iend - 16 (the kernel
     * tests the position after the token), op < oshort <=> op <= oend - 32.
     * A too-small buffer gets its start: the test is then always false. */
    const uint8_t *const ishort = n >= 17 ? iend - 17 : src;
    uint8_t *const oshort = cap >= 31 ? oend - 31 : dst;

    if (cap == 0)
        return (n == 1 && src[0] == 0) ? 0 : -1;
    if (n == 0)
        return -1;

    for (;;) {
        size_t token;
        size_t len, ml, off;

        if (KC_UNLIKELY(ip >= iend)) /* cannot happen for kernel-accepted input */
            return -1;
    next_token:
        token = *ip;
        len = token >> 4;

        /* Shortcut (kernel: literal length 0..14, ip < iend - 16 and
         * op <= oend - 32 after the token): no end-of-block checks for this
         * sequence.  Offsets and the next token are addressed from the token
         * so that the chain from one token to the next is a load, a shift
         * and an add. */
        if (KC_LIKELY(len != LZ4K_RUN_MASK && ip < ishort && op < oshort)) {
            /* 16 bytes stay inside both buffers: ip + 17 < iend, op + 32 <= oend */
            memcpy(op, ip + 1, 16);
            off = kc_le16(ip + 1 + len); /* ip + 3 + len <= ip + 17 < iend */
            ip += 3 + len;
            op += len;
            ml = token & LZ4K_ML_MASK;
            if (KC_LIKELY(ml != LZ4K_ML_MASK && off - 1 < (size_t)(op - dst))) {
                /* Match of 4..18 bytes, 1 <= off <= op - dst.  18 bytes are
                 * written whatever the length: op <= oend - 18 here. */
                const uint8_t *m = op - off;
                if (KC_LIKELY(off >= 8)) {
                    /* the kernel's copy: each 8-byte step reads only bytes
                     * that are already final */
                    memcpy(op, m, 8);
                    memcpy(op + 8, m + 8, 8);
                    memcpy(op + 16, m + 16, 2);
                } else {
                    /* off 1..7: the kernel leaves the shortcut for these and
                     * then rejects a match that ends in the last 5 bytes */
                    if (KC_UNLIKELY((size_t)(oend - op) < ml + LZ4K_MINMATCH + LZ4K_LASTLITERALS))
                        return -1;
                    kc_backcopy18_short(op, off);
                }
                op += ml + LZ4K_MINMATCH;
                goto next_token; /* ip < old ip + 17 < iend: no check needed */
            }
            goto copy_match;
        }
        ip++;

        if (len == LZ4K_RUN_MASK) {
            unsigned s;
            if (iend - ip <= (ptrdiff_t)LZ4K_RUN_MASK)
                return -1;
            do {
                s = *ip++;
                len += s;
            } while (iend - ip > (ptrdiff_t)LZ4K_RUN_MASK && s == 255);
        }

        /* Literals.  len is at most 255 * n here, no overflow. */
        if ((size_t)(oend - op) < len + LZ4K_MFLIMIT ||
            (size_t)(iend - ip) < len + (2 + 1 + LZ4K_LASTLITERALS)) {
            /* Must be the last sequence: input consumed exactly. */
            if ((size_t)(iend - ip) != len || (size_t)(oend - op) < len)
                return -1;
            memcpy(op, ip, len);
            op += len;
            break;
        }
        if ((size_t)(oend - op) >= len + 16 && (size_t)(iend - ip) >= len + 16)
            kc_copy16_over(op, ip, len); /* overshoot stays inside both */
        else
            memcpy(op, ip, len);
        ip += len;
        op += len;

        off = kc_le16(ip); /* ip + len <= iend - 8 was checked */
        ip += 2;
        ml = token & LZ4K_ML_MASK;

    copy_match:
        /* Offset before the start of the output and the dictionary (the
         * kernel tests this only below 64 KiB of dictionary, where it can
         * fail at all). */
        if (KC_UNLIKELY(off > (size_t)(op - dst) + dict_len))
            return -1;
        if (ml == LZ4K_ML_MASK) {
            unsigned s;
            do {
                if (ip >= iend)
                    return -1;
                s = *ip++;
                if (iend - ip < LZ4K_LASTLITERALS)
                    return -1;
                ml += s;
            } while (s == 255);
        }
        ml += LZ4K_MINMATCH;
        /* The kernel copies 8 bytes before the end checks: op <= oend - 12
         * holds here on both paths. */
        if (KC_UNLIKELY((size_t)(oend - op) < ml + LZ4K_LASTLITERALS))
            return -1; /* the last 5 bytes must be literals */
        if (KC_UNLIKELY(off == 0)) {
            memset(op, 0, ml); /* kernel: offset 0 copies zeros */
        } else if (KC_UNLIKELY(off > (size_t)(op - dst))) {
            /* Starts in the dictionary: its last `back` bytes, then (if
             * longer) on from the output's start at the same distance. */
            size_t back = off - (size_t)(op - dst);
            const uint8_t *from = dict + dict_len - back;
            if (ml <= back) {
                memcpy(op, from, ml);
                op += ml;
                continue;
            }
            memcpy(op, from, back);
            op += back;
            kc_backcopy(op, off, ml - back, (size_t)(oend - op));
            op += ml - back;
            continue;
        } else {
            kc_backcopy(op, off, ml, (size_t)(oend - op));
        }
        op += ml;
    }
    return op - dst;
}

static ptrdiff_t lz4k_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    return lz4k_decode(src, n, dst, cap, NULL, 0);
}

static ptrdiff_t lz4k_decompress_dict(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                                      const uint8_t *dict, size_t dict_len)
{
    return lz4k_decode(src, n, dst, cap, dict, dict_len);
}

/* ------------------------------------------------------------------------ */
/* LZO1X-1 compressor: models lzogeneric1x_1_compress() and                 */
/* lzo1x_1_do_compress() (kernel 6.x, including lzo-rle's zero runs and the  */
/* 261..264 length rule).                                                   */
/* ------------------------------------------------------------------------ */

#define LZOK_D_BITS 13
#define LZOK_D_SIZE (1u << LZOK_D_BITS)
#define LZOK_D_MASK (LZOK_D_SIZE - 1)
#define LZOK_M2_MAX_LEN 8
#define LZOK_M3_MAX_LEN 33
#define LZOK_M4_MAX_LEN 9
#define LZOK_M2_MAX_OFFSET 0x0800
#define LZOK_M3_MAX_OFFSET 0x4000
#define LZOK_M4_MAX_OFFSET_V0 0xbfff
#define LZOK_M4_MAX_OFFSET_V1 0xbffe
#define LZOK_M3_MARKER 32
#define LZOK_M4_MARKER 16
#define LZOK_MIN_ZERO_RUN 4
#define LZOK_MAX_ZERO_RUN (2047 + LZOK_MIN_ZERO_RUN)

typedef struct {
    uint16_t pos[LZOK_D_SIZE]; /* lzo_dict_t: positions relative to the block */
} lzok_work;

/* lzo1x_worst_compress() plus the 2 version bytes and copy slack */
static size_t lzok_bound(size_t n) { return n + n / 16 + 64 + 3 + 2 + 2; }

/* Emit the length of a literal run of t >= 4 bytes that is not the first
 * thing in the stream. */
KC_INLINE uint8_t *lzok_put_literal_len(uint8_t *op, size_t t)
{
    if (t <= 18) {
        *op++ = (uint8_t)(t - 3);
    } else {
        size_t tt = t - 18;
        *op++ = 0;
        while (tt > 255) {
            tt -= 255;
            *op++ = 0;
        }
        *op++ = (uint8_t)tt;
    }
    return op;
}

/*
 * One dictionary block: models lzo1x_1_do_compress(in, in_len, &op, ..., &ti,
 * dict, &state_offset, bitstream_version).  `in` is the block start and
 * in[-ti .. -1] the literals carried over from the previous block.  Returns
 * the new carry (bytes at the end of the block not yet coded).
 */
static size_t lzok_block(const uint8_t *in, size_t in_len, uint8_t **opp, size_t ti,
                         uint16_t *dict, int *state_offset, int rle)
{
    const uint8_t *const in_end = in + in_len;
    const uint8_t *const ip_end = in + in_len - 20;
    const uint8_t *ip = in;
    const uint8_t *ii = in;
    uint8_t *op = *opp;

    ip += ti < 4 ? 4 - ti : 0;

    for (;;) {
        const uint8_t *m_pos = NULL;
        size_t t, m_len, m_off;
        uint32_t dv;
        size_t run = 0;

        /* literal: skip ahead faster the longer the current literal run */
        ip += 1 + ((size_t)(ip - ii) >> 5);
    next:
        if (ip >= ip_end)
            break;
        dv = kc_le32(ip);
        if (dv == 0 && rle) {
            /* Zero run: up to 2051 bytes, never past ip_end. */
            const uint8_t *ir = ip + 4;
            const uint8_t *const limit =
                (ip_end - ip) < (LZOK_MAX_ZERO_RUN + 1) ? ip_end : ip + LZOK_MAX_ZERO_RUN + 1;
            while (limit - ir >= 8) {
                uint64_t v = kc_le64(ir);
                if (v) {
                    ir += kc_ctz64(v) >> 3;
                    goto run_found;
                }
                ir += 8;
            }
            while (ir < limit && *ir == 0)
                ir++;
        run_found:
            run = (size_t)(ir - ip);
            if (run > LZOK_MAX_ZERO_RUN)
                run = LZOK_MAX_ZERO_RUN;
        } else {
            uint32_t h = ((dv * 0x1824429du) >> (32 - LZOK_D_BITS)) & LZOK_D_MASK;
            m_pos = in + dict[h];
            dict[h] = (uint16_t)(ip - in);
            if (dv != kc_le32(m_pos))
                continue; /* goto literal */
        }

        /* Flush the pending literals (including those carried in). */
        ii -= ti;
        ti = 0;
        t = (size_t)(ip - ii);
        if (t != 0) {
            if (t <= 3) {
                op[*state_offset] |= (uint8_t)t;
                memcpy(op, ii, 4); /* ii + 4 <= ip + 1 < in_end */
                op += t;
            } else {
                op = lzok_put_literal_len(op, t);
                kc_copy_over(op, ii, t); /* ii + t + 7 < in_end */
                op += t;
            }
        }

        if (run) {
            /* lzo-rle: M4 instruction with distance 0xbfff + run byte */
            uint32_t r;
            ip += run;
            r = (uint32_t)(run - LZOK_MIN_ZERO_RUN);
            r = (r << 21) | 0xfffc18u | (r & 7u);
            op[0] = (uint8_t)r;
            op[1] = (uint8_t)(r >> 8);
            op[2] = (uint8_t)(r >> 16);
            op[3] = (uint8_t)(r >> 24);
            op += 4;
            run = 0; /* `goto next` skips the loop-top initialisation */
            *state_offset = -3;
            ii = ip;
            goto next;
        }

        /* Match length, 8 bytes at a time (LZO_USE_CTZ64): stops once
         * ip + m_len reaches ip_end even if more bytes would match. */
        m_len = 4;
        {
            uint64_t v = kc_le64(ip + m_len) ^ kc_le64(m_pos + m_len);
            if (v == 0) {
                do {
                    m_len += 8;
                    v = kc_le64(ip + m_len) ^ kc_le64(m_pos + m_len);
                    if (ip + m_len >= ip_end)
                        goto m_len_done;
                } while (v == 0);
            }
            m_len += kc_ctz64(v) / 8;
        }
    m_len_done:
        m_off = (size_t)(ip - m_pos);
        ip += m_len;
        if (m_len <= LZOK_M2_MAX_LEN && m_off <= LZOK_M2_MAX_OFFSET) {
            m_off -= 1;
            *op++ = (uint8_t)(((m_len - 1) << 5) | ((m_off & 7) << 2));
            *op++ = (uint8_t)(m_off >> 3);
        } else if (m_off <= LZOK_M3_MAX_OFFSET) {
            m_off -= 1;
            if (m_len <= LZOK_M3_MAX_LEN) {
                *op++ = (uint8_t)(LZOK_M3_MARKER | (m_len - 2));
            } else {
                m_len -= LZOK_M3_MAX_LEN;
                *op++ = LZOK_M3_MARKER;
                while (m_len > 255) {
                    m_len -= 255;
                    *op++ = 0;
                }
                *op++ = (uint8_t)m_len;
            }
            *op++ = (uint8_t)(m_off << 2);
            *op++ = (uint8_t)(m_off >> 6);
        } else {
            m_off -= 0x4000;
            if (m_len <= LZOK_M4_MAX_LEN) {
                *op++ = (uint8_t)(LZOK_M4_MARKER | ((m_off >> 11) & 8) | (m_len - 2));
            } else {
                if (rle && (m_off & 0x403f) == 0x403f && m_len >= 261 && m_len <= 264) {
                    /* would read back as a zero run: shorten to 260 */
                    ip -= m_len - 260;
                    m_len = 260;
                }
                m_len -= LZOK_M4_MAX_LEN;
                *op++ = (uint8_t)(LZOK_M4_MARKER | ((m_off >> 11) & 8));
                while (m_len > 255) {
                    m_len -= 255;
                    *op++ = 0;
                }
                *op++ = (uint8_t)m_len;
            }
            *op++ = (uint8_t)(m_off << 2);
            *op++ = (uint8_t)(m_off >> 6);
        }
        *state_offset = -2;
        ii = ip;
        goto next;
    }
    *opp = op;
    return (size_t)(in_end - (ii - ti));
}

/*
 * Models lzo1x_1_compress() (rle = 0) and lzorle1x_1_compress() (rle = 1).
 * dst must hold lzok_bound(n) bytes.  Returns the compressed size.
 */
static size_t lzok_compress(const uint8_t *src, size_t n, uint8_t *dst, int rle, lzok_work *w)
{
    const uint8_t *ip = src;
    uint8_t *op = dst;
    uint8_t *data_start;
    size_t l = n;
    size_t t = 0;
    int state_offset = -2;
    size_t block_max;

    if (rle) {
        *op++ = 17; /* a v0 stream never starts with 17: version marker */
        *op++ = 1;  /* LZO_VERSION */
        block_max = (size_t)LZOK_M4_MAX_OFFSET_V1 + 1;
    } else {
        block_max = (size_t)LZOK_M4_MAX_OFFSET_V0 + 1;
    }
    data_start = op;

    while (l > 20) {
        size_t ll = l <= block_max ? l : block_max;
        /* The kernel's pointer-overflow guard
         *     if ((ll_end + ((t + ll) >> 5)) <= ll_end) break;
         * is also true when t + ll < 32: such a tail is left as literals. */
        if (((t + ll) >> 5) == 0)
            break;
        memset(w->pos, 0, sizeof(w->pos));
        t = lzok_block(ip, ll, &op, t, w->pos, &state_offset, rle);
        ip += ll;
        l -= ll;
    }
    t += l;

    if (t > 0) {
        const uint8_t *ii = src + n - t;
        if (op == data_start && t <= 238) {
            *op++ = (uint8_t)(17 + t);
        } else if (t <= 3) {
            op[state_offset] |= (uint8_t)t;
        } else {
            op = lzok_put_literal_len(op, t);
        }
        memcpy(op, ii, t);
        op += t;
    }

    *op++ = LZOK_M4_MARKER | 1; /* end of stream: M4 with distance 0 */
    *op++ = 0;
    *op++ = 0;
    return (size_t)(op - dst);
}

/* ------------------------------------------------------------------------ */
/* LZO1X decoder: models lzo1x_decompress_safe() (v0 and v1/RLE streams).   */
/* ------------------------------------------------------------------------ */

enum {
    LZOK_E_OK = 0,
    LZOK_E_ERROR = -1,
    LZOK_E_INPUT_OVERRUN = -4,
    LZOK_E_OUTPUT_OVERRUN = -5,
    LZOK_E_LOOKBEHIND_OVERRUN = -6,
    LZOK_E_INPUT_NOT_CONSUMED = -8,
};

/* Read a run of zero bytes followed by a non-zero byte (length extension).
 * Returns 255 * zeros + final byte, or -1 if the input ends first. */
KC_INLINE ptrdiff_t lzok_ext(const uint8_t *src, size_t n, size_t *ipp)
{
    size_t ip = *ipp, z = 0;
    while (ip < n && src[ip] == 0) {
        ip++;
        z++;
    }
    if (ip >= n)
        return -1;
    *ipp = ip + 1;
    /* z < n <= PY_SSIZE_T_MAX / 255 for any input we accept */
    return (ptrdiff_t)(z * 255 + src[ip]);
}

/*
 * Decodes src[0..n) into dst[0..cap).  Returns an LZO_E_* code and stores the
 * number of bytes written in *out_len (also on error).
 */
static int lzok_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                           size_t *out_len)
{
    size_t ip = 0, op = 0;
    size_t t, next = 0, state = 0;
    size_t dist = 0;
    int version = 0;
    int ret;

    if (n < 3) {
        ret = LZOK_E_INPUT_OVERRUN;
        goto out;
    }
    if (n >= 5 && src[0] == 17) {
        version = src[1]; /* any non-zero version enables zero runs */
        ip = 2;
    }

    if (src[ip] > 17) {
        /* First byte 18..255: literal run of 1..238 (state follows) */
        t = (size_t)src[ip++] - 17;
        if (t < 4) {
            next = t;
            goto match_next;
        }
        goto copy_literals;
    }

    for (;;) {
        if (ip >= n) {
            ret = LZOK_E_INPUT_OVERRUN;
            goto out;
        }
        t = src[ip++];
        if (t < 16) {
            if (state == 0) {
                /* 0000LLLL: literal run of 4.. bytes */
                if (t == 0) {
                    ptrdiff_t e = lzok_ext(src, n, &ip);
                    if (e < 0) {
                        ret = LZOK_E_INPUT_OVERRUN;
                        goto out;
                    }
                    t = 15 + (size_t)e;
                }
                t += 3;
            copy_literals:
                if (t > cap - op) {
                    ret = LZOK_E_OUTPUT_OVERRUN;
                    goto out;
                }
                if (n - ip < 3 || t > n - ip - 3) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                if (KC_LIKELY(cap - op >= t + 16 && n - ip >= t + 16))
                    kc_copy16_over(dst + op, src + ip, t); /* overshoot inside both */
                else
                    memcpy(dst + op, src + ip, t);
                op += t;
                ip += t;
                state = 4;
                continue;
            } else if (state != 4) {
                /* 0000DDSS HHHHHHHH after 1..3 literals: 2 bytes, <= 1 KiB back */
                if (ip >= n) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                next = t & 3;
                dist = 1 + (t >> 2) + ((size_t)src[ip++] << 2);
                if (dist > op) {
                    ret = LZOK_E_LOOKBEHIND_OVERRUN;
                    goto out;
                }
                if (cap - op < 2) {
                    ret = LZOK_E_OUTPUT_OVERRUN;
                    goto out;
                }
                dst[op] = dst[op - dist];
                dst[op + 1] = dst[op + 1 - dist];
                op += 2;
                goto match_next;
            } else {
                /* 0000DDSS HHHHHHHH after 4+ literals: 3 bytes, 2..3 KiB back */
                if (ip >= n) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                next = t & 3;
                dist = 1 + LZOK_M2_MAX_OFFSET + (t >> 2) + ((size_t)src[ip++] << 2);
                t = 3;
            }
        } else if (t >= 64) {
            /* 01LDDDSS / 1LLDDDSS HHHHHHHH: 3..8 bytes, <= 2 KiB back */
            if (ip >= n) {
                ret = LZOK_E_INPUT_OVERRUN;
                goto out;
            }
            next = t & 3;
            dist = 1 + ((t >> 2) & 7) + ((size_t)src[ip++] << 3);
            t = (t >> 5) + 1;
            if (KC_LIKELY(dist >= 8 && dist <= op && cap - op >= 16)) {
                /* 3..8 bytes, the checks below pass: one 8-byte copy whose
                 * source ends at or before op */
                memcpy(dst + op, dst + op - dist, 8);
                op += t;
                goto match_next;
            }
        } else if (t >= 32) {
            /* 001LLLLL + LE16: <= 16 KiB back */
            t = (t & 31) + 2;
            if (t == 2) {
                ptrdiff_t e = lzok_ext(src, n, &ip);
                if (e < 0) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                t += 31 + (size_t)e;
            }
            if (n - ip < 2) {
                ret = LZOK_E_INPUT_OVERRUN;
                goto out;
            }
            next = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
            ip += 2;
            dist = 1 + (next >> 2);
            next &= 3;
        } else {
            /* 0001HLLL + LE16: 16..48 KiB back, end of stream, or zero run */
            size_t h;
            if (n - ip < 2) {
                ret = LZOK_E_INPUT_OVERRUN;
                goto out;
            }
            next = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
            if ((next & 0xfffc) == 0xfffc && (t & 0xf8) == 0x18 && version) {
                if (n - ip < 3) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                t = ((t & 7) | ((size_t)src[ip + 2] << 3)) + LZOK_MIN_ZERO_RUN;
                if (t > cap - op) {
                    ret = LZOK_E_OUTPUT_OVERRUN;
                    goto out;
                }
                memset(dst + op, 0, t);
                op += t;
                next &= 3;
                ip += 3;
                goto match_next;
            }
            h = (t & 8) << 11;
            t = (t & 7) + 2;
            if (t == 2) {
                ptrdiff_t e = lzok_ext(src, n, &ip);
                if (e < 0) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                t += 7 + (size_t)e;
                if (n - ip < 2) {
                    ret = LZOK_E_INPUT_OVERRUN;
                    goto out;
                }
                next = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
            }
            ip += 2;
            dist = h + (next >> 2);
            next &= 3;
            if (dist == 0) {
                /* end of stream: only a 3-byte "0x11 0 0" is valid */
                if (t != 3)
                    ret = LZOK_E_ERROR;
                else if (ip == n)
                    ret = LZOK_E_OK;
                else
                    ret = ip < n ? LZOK_E_INPUT_NOT_CONSUMED : LZOK_E_INPUT_OVERRUN;
                goto out;
            }
            dist += 0x4000;
        }

        /* Back-reference of t >= 3 bytes, dist bytes behind. */
        if (dist > op) {
            ret = LZOK_E_LOOKBEHIND_OVERRUN;
            goto out;
        }
        if (t > cap - op) {
            ret = LZOK_E_OUTPUT_OVERRUN;
            goto out;
        }
        kc_backcopy(dst + op, dist, t, cap - op);
        op += t;

    match_next:
        /* 0..3 literals follow the instruction; 3 more input bytes (the
         * next instruction) must remain. */
        state = next;
        t = next;
        if (n - ip < 3 || t > n - ip - 3) {
            ret = LZOK_E_INPUT_OVERRUN;
            goto out;
        }
        if (t > cap - op) {
            ret = LZOK_E_OUTPUT_OVERRUN;
            goto out;
        }
        if (KC_LIKELY(n - ip >= 4 && cap - op >= 4)) {
            /* the kernel's COPY4: a whole word for the 0..3 literals; bytes
             * past op + t lie inside the buffer and are written again later */
            memcpy(dst + op, src + ip, 4);
            op += t;
            ip += t;
        } else {
            while (t > 0) {
                dst[op++] = src[ip++];
                t--;
            }
        }
    }

out:
    *out_len = op;
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

enum kc_algo { KC_LZ4 = 0, KC_LZO = 1, KC_LZORLE = 2, KC_LZ4HC = 3 };

typedef union {
    lz4k_work lz4;
    lz4kd_work lz4d;
    lzok_work lzo;
} kc_work;

static size_t kc_bound(int algo, size_t n)
{
    size_t b = algo == KC_LZ4 || algo == KC_LZ4HC ? lz4k_bound(n) : lzok_bound(n);
    return b + 16; /* 8-byte copy slack */
}

/* Output capacity given to the compressor (zram: 2 * PAGE_SIZE). */
static size_t kc_capacity(int algo, size_t n)
{
    size_t cap = n <= KC_PAGE ? (size_t)KC_DST_STRIDE : 2 * n;
    size_t b = kc_bound(algo, n);
    return cap > b ? cap : b;
}

/* A dictionary (dict_len > 0) applies to lz4 and lz4hc only (kc_get_dict). */
static size_t kc_compress(int algo, const uint8_t *src, size_t n, uint8_t *dst, uint32_t accel,
                          const uint8_t *dict, size_t dict_len, kc_work *w)
{
    if (algo == KC_LZ4)
        return dict_len ? lz4kd_compress(src, n, dst, accel, dict, dict_len, &w->lz4d)
                        : lz4k_compress(src, n, dst, accel, &w->lz4);
    if (algo == KC_LZ4HC) /* accel is the level here */
        return dict_len ? lz4hck_compress_dict(src, n, dst, (int)accel, dict, dict_len)
                        : lz4hck_compress(src, n, dst, (int)accel);
    return lzok_compress(src, n, dst, algo == KC_LZORLE, &w->lzo);
}

/* Returns the decoded size, or a negative value on malformed input. */
static ptrdiff_t kc_decompress(int algo, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                               const uint8_t *dict, size_t dict_len)
{
    if (algo == KC_LZ4 || algo == KC_LZ4HC)
        return dict_len ? lz4k_decompress_dict(src, n, dst, cap, dict, dict_len)
                        : lz4k_decompress(src, n, dst, cap);
    {
        size_t out_len = 0;
        int r = lzok_decompress(src, n, dst, cap, &out_len);
        return r == LZOK_E_OK ? (ptrdiff_t)out_len : -1;
    }
}

/* ------------------------------------------------------------------------ */
/* Python glue                                                               */
/* ------------------------------------------------------------------------ */

static int kc_parse_algo(PyObject *obj)
{
    const char *s;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "algo must be str, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    s = PyUnicode_AsUTF8(obj);
    if (s == NULL)
        return -1;
    if (strcmp(s, "lz4") == 0)
        return KC_LZ4;
    if (strcmp(s, "lzo") == 0)
        return KC_LZO;
    if (strcmp(s, "lzo-rle") == 0)
        return KC_LZORLE;
    if (strcmp(s, "lz4hc") == 0)
        return KC_LZ4HC;
    PyErr_Format(PyExc_ValueError, "unknown algorithm %R (expected 'lz4', 'lzo' or 'lzo-rle')",
                 obj);
    return -1;
}

static int kc_parse_accel(PyObject *obj, uint32_t *out)
{
    long v;
    if (obj == NULL) {
        *out = 1;
        return 0;
    }
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "acceleration must be int");
        return -1;
    }
    v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "acceleration too large");
        return -1;
    }
    /* LZ4_compress_fast_extState(): values < 1 mean the default, 1 */
    *out = v < 1 ? 1u : (uint32_t)v;
    return 0;
}

/* zram turns any decoder failure into -EINVAL: raise OSError(EINVAL, what). */
static void kc_set_einval(const char *what)
{
    PyObject *args = Py_BuildValue("(is)", EINVAL, what);
    if (args) {
        PyErr_SetObject(PyExc_OSError, args);
        Py_DECREF(args);
    }
}

/* Checks a typed buffer: C-contiguous, item size `size`, integer format. */
static int kc_check_int_buffer(Py_buffer *b, const char *name, Py_ssize_t size,
                               Py_ssize_t min_items)
{
    const char *f = b->format ? b->format : "B";
    char c;
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    c = f[0];
    if (b->itemsize != size || f[1] != '\0' ||
        !(c == 'b' || c == 'B' || c == 'h' || c == 'H' || c == 'i' || c == 'I' || c == 'l' ||
          c == 'L' || c == 'q' || c == 'Q')) {
        PyErr_Format(PyExc_ValueError, "%s must be a buffer of %zd-byte integers (got format %s)",
                     name, size, b->format ? b->format : "B");
        return -1;
    }
    if (b->len / size < min_items) {
        PyErr_Format(PyExc_ValueError, "%s too small: %zd items, need %zd", name, b->len / size,
                     min_items);
        return -1;
    }
    return 0;
}

static int kc_overlap(const Py_buffer *a, const Py_buffer *b)
{
    uintptr_t a0 = (uintptr_t)a->buf, a1 = a0 + (uintptr_t)a->len;
    uintptr_t b0 = (uintptr_t)b->buf, b1 = b0 + (uintptr_t)b->len;
    return a->len > 0 && b->len > 0 && a0 < b1 && b0 < a1;
}

/* The optional dictionary argument: None (or absent) or a buffer, whose
 * empty form is no dictionary (zram: dict_sz 0).  On success d->obj is set
 * only where a buffer must be released (kc_release_dict).  A dictionary
 * belongs to lz4 and lz4hc only (zram's lzo backends take none). */
static int kc_get_dict(PyObject *obj, int algo, Py_buffer *d)
{
    d->obj = NULL;
    d->buf = NULL;
    d->len = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (PyObject_GetBuffer(obj, d, PyBUF_SIMPLE) < 0) {
        d->obj = NULL;
        return -1;
    }
    if (d->len > 0 && algo != KC_LZ4 && algo != KC_LZ4HC) {
        PyBuffer_Release(d);
        d->obj = NULL;
        PyErr_SetString(PyExc_ValueError, "a dictionary applies to lz4 and lz4hc only");
        return -1;
    }
    return 0;
}

static void kc_release_dict(Py_buffer *d)
{
    if (d->obj)
        PyBuffer_Release(d);
}

PyDoc_STRVAR(kc_compress_doc,
             "compress(algo, page, acceleration=1, dict=None) -> bytes\n\n"
             "Compress one page exactly as the kernel's zram backend does (input up to\n"
             "65536 bytes; zram always passes 4096).  acceleration is LZ4's (values < 1\n"
             "mean 1, like the kernel); lzo and lzo-rle ignore it, like the kernel.\n"
             "dict (lz4, lz4hc; None or empty: none) is algorithm_params' dictionary:\n"
             "lz4 loads its last 64 KiB with LZ4_loadDict (nothing below 8 bytes) and\n"
             "compresses with LZ4_compress_fast_continue; lz4hc resets its stream, loads\n"
             "the last 64 KiB with LZ4_loadDictHC and compresses with\n"
             "LZ4_compress_HC_continue.  (zram refuses to compress, EINVAL, where the\n"
             "load does not take the whole dictionary: that test is the backend's.)");

static PyObject *kc_py_compress(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"algo", "page", "acceleration", "dict", NULL};
    PyObject *algo_obj, *accel_obj = NULL, *dict_obj = NULL;
    Py_buffer page, dict = {0};
    int algo;
    uint32_t accel;
    PyObject *res = NULL;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*|OO:compress", kwlist, &algo_obj, &page,
                                     &accel_obj, &dict_obj))
        return NULL;
    algo = kc_parse_algo(algo_obj);
    if (algo < 0 || kc_parse_accel(accel_obj, &accel) < 0 || kc_get_dict(dict_obj, algo, &dict) < 0)
        goto done;
    if (page.len > KC_MAX_INPUT) {
        PyErr_Format(PyExc_ValueError, "page too large: %zd bytes (at most %d)", page.len,
                     KC_MAX_INPUT);
        goto done;
    }
    {
        size_t n = (size_t)page.len;
        size_t cap = kc_capacity(algo, n);
        kc_work work;
        uint8_t stack_out[KC_DST_STRIDE + 64];
        uint8_t *out = stack_out;
        size_t clen;
        if (cap > sizeof(stack_out)) {
            out = PyMem_Malloc(cap);
            if (out == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        if (n > KC_PAGE) {
            Py_BEGIN_ALLOW_THREADS
            clen = kc_compress(algo, page.buf, n, out, accel, dict.buf, (size_t)dict.len, &work);
            Py_END_ALLOW_THREADS
        } else {
            clen = kc_compress(algo, page.buf, n, out, accel, dict.buf, (size_t)dict.len, &work);
        }
        res = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)clen);
        if (out != stack_out)
            PyMem_Free(out);
    }
done:
    kc_release_dict(&dict);
    PyBuffer_Release(&page);
    return res;
}

PyDoc_STRVAR(kc_decompress_doc,
             "decompress(algo, data, out_len=4096, dict=None) -> bytes\n\n"
             "Decode one object with the kernel's safe decoder into a buffer of out_len\n"
             "bytes and return what was produced (possibly shorter than out_len, as the\n"
             "kernel allows).  Raises OSError(EINVAL) on malformed input.  dict (lz4,\n"
             "lz4hc): the whole dictionary precedes the output, as zram decodes with\n"
             "LZ4_setStreamDecode and LZ4_decompress_safe_continue.");

static PyObject *kc_py_decompress(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"algo", "data", "out_len", "dict", NULL};
    PyObject *algo_obj, *dict_obj = NULL;
    Py_buffer data, dict = {0};
    Py_ssize_t out_len = KC_PAGE;
    PyObject *res = NULL;
    int algo;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*|nO:decompress", kwlist, &algo_obj, &data,
                                     &out_len, &dict_obj))
        return NULL;
    algo = kc_parse_algo(algo_obj);
    if (algo < 0 || kc_get_dict(dict_obj, algo, &dict) < 0)
        goto done;
    if (out_len < 0 || out_len > KC_MAX_OUT_LEN) {
        PyErr_Format(PyExc_ValueError, "out_len must be in 0..%d", KC_MAX_OUT_LEN);
        goto done;
    }
    {
        PyObject *out = PyBytes_FromStringAndSize(NULL, out_len);
        ptrdiff_t r;
        if (out == NULL)
            goto done;
        if (data.len + out_len > 4 * KC_PAGE) {
            Py_BEGIN_ALLOW_THREADS
            r = kc_decompress(algo, data.buf, (size_t)data.len, (uint8_t *)PyBytes_AS_STRING(out),
                              (size_t)out_len, dict.buf, (size_t)dict.len);
            Py_END_ALLOW_THREADS
        } else {
            r = kc_decompress(algo, data.buf, (size_t)data.len, (uint8_t *)PyBytes_AS_STRING(out),
                              (size_t)out_len, dict.buf, (size_t)dict.len);
        }
        if (r < 0) {
            Py_DECREF(out);
            kc_set_einval(algo == KC_LZ4 ? "lz4: malformed input (LZ4_decompress_safe failed)"
                                         : "lzo: malformed input (lzo1x_decompress_safe failed)");
            goto done;
        }
        if (r != out_len && _PyBytes_Resize(&out, (Py_ssize_t)r) < 0)
            goto done;
        res = out;
    }
done:
    kc_release_dict(&dict);
    PyBuffer_Release(&data);
    return res;
}

PyDoc_STRVAR(kc_compress_into_doc,
             "compress_into(algo, page, dst, acceleration=1, dict=None) -> int\n\n"
             "zcomp_compress of one page into a stream buffer: compress the 4096-byte\n"
             "page into dst (a writable buffer of at least 8192 bytes, the zcomp_strm\n"
             "buffer) and return the compressed length.  algo is a name or its index\n"
             "in ALGORITHMS; for lz4hc acceleration is the level; dict as for\n"
             "compress().  Holds the GIL (one page is shorter than a hand-over of it).");

/* The algorithm argument of the per-page calls: an index into ALGORITHMS or a name. */
static int kc_algo_arg(PyObject *obj)
{
    if (PyLong_CheckExact(obj)) {
        long a = PyLong_AsLong(obj);
        if (a >= KC_LZ4 && a <= KC_LZ4HC)
            return (int)a;
    }
    return kc_parse_algo(obj);
}

/* A buffer for the per-page calls: a bytearray's own bytes, or a
 * memoryview's (the GIL is held for the whole call and nothing in it runs
 * Python code, so nothing can resize, release or free them meanwhile: no
 * export to take and give back); any other object's buffer through the
 * buffer protocol.  b->obj is set only where kc_put_buffer must release it. */
static int kc_get_buffer(PyObject *obj, Py_buffer *b, int flags)
{
    if (PyByteArray_CheckExact(obj)) {
        b->obj = NULL;
        b->buf = PyByteArray_AS_STRING(obj);
        b->len = PyByteArray_GET_SIZE(obj);
        return 0;
    }
    if (PyMemoryView_Check(obj)) {
        /* A memoryview (zsmalloc's arena) in use, C-contiguous and, if the
         * call writes, writable: its bytes as they lie, for the same reason.
         * Anything else (released, strided, read-only for a write) goes the
         * buffer protocol's way, which raises what it raises. */
        const PyMemoryViewObject *mv = (const PyMemoryViewObject *)obj;
        if (!(mv->flags & _Py_MEMORYVIEW_RELEASED) &&
            !(mv->mbuf->flags & _Py_MANAGED_BUFFER_RELEASED) && (mv->flags & _Py_MEMORYVIEW_C) &&
            !((flags & PyBUF_WRITABLE) && mv->view.readonly)) {
            b->obj = NULL;
            b->buf = mv->view.buf;
            b->len = mv->view.len;
            return 0;
        }
    }
    if (PyObject_GetBuffer(obj, b, flags) < 0) {
        b->obj = NULL;
        return -1;
    }
    return 0;
}

static void kc_put_buffer(Py_buffer *b)
{
    if (b->obj)
        PyBuffer_Release(b);
}

/* compress_into's work, the C entry point behind it (kcodec_capi.h): the
 * compressed length, or -1 with an exception set. */
static Py_ssize_t kc_compress_into_c(int algo, PyObject *page_obj, PyObject *dst_obj,
                                     PyObject *accel_obj, PyObject *dict_obj)
{
    Py_buffer page, dst, dict;
    uint32_t accel = 1;
    Py_ssize_t res = -1;

    if (algo < KC_LZ4 || algo > KC_LZ4HC) {
        PyErr_Format(PyExc_ValueError, "compress_into: no algorithm %d", algo);
        return -1;
    }
    if (kc_parse_accel(accel_obj, &accel) < 0)
        return -1;
    if (kc_get_dict(dict_obj, algo, &dict) < 0)
        return -1;
    if (kc_get_buffer(page_obj, &page, PyBUF_SIMPLE) < 0) {
        kc_release_dict(&dict);
        return -1;
    }
    if (kc_get_buffer(dst_obj, &dst, PyBUF_WRITABLE) < 0) {
        kc_put_buffer(&page);
        kc_release_dict(&dict);
        return -1;
    }
    if (page.len != KC_PAGE || dst.len < (Py_ssize_t)kc_capacity(algo, KC_PAGE) ||
        kc_overlap(&page, &dst) || kc_overlap(&dict, &dst)) {
        PyErr_Format(PyExc_ValueError,
                     "compress_into: a %d-byte page and a separate buffer of at least %zu bytes",
                     KC_PAGE, kc_capacity(algo, KC_PAGE));
        goto done;
    }
    {
        kc_work work;
        /* With the GIL held, as decompress_into: one page is too short to hand
         * it over (compress_batch lets it go for a whole batch). */
        res = (Py_ssize_t)kc_compress(algo, page.buf, KC_PAGE, dst.buf, accel, dict.buf,
                                      (size_t)dict.len, &work);
    }
done:
    kc_put_buffer(&dst);
    kc_put_buffer(&page);
    kc_release_dict(&dict);
    return res;
}

static PyObject *kc_py_compress_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t clen;
    int algo;
    (void)self;

    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError,
                        "compress_into(algo, page, dst, acceleration=1, dict=None)");
        return NULL;
    }
    algo = kc_algo_arg(args[0]);
    if (algo < 0)
        return NULL;
    clen = kc_compress_into_c(algo, args[1], args[2], nargs >= 4 ? args[3] : NULL,
                              nargs == 5 ? args[4] : NULL);
    return clen < 0 ? NULL : PyLong_FromSsize_t(clen);
}

PyDoc_STRVAR(kc_decompress_into_doc,
             "decompress_into(algo, src, offset, length, page, dict=None) -> int\n\n"
             "zcomp_decompress of one object: decode src[offset:offset+length] (the\n"
             "pool's memory, read in place) into page (a writable 4096-byte buffer).\n"
             "Returns 0, or -EINVAL when the input is malformed or does not decode to\n"
             "exactly one page (zram's failed read).  dict as for decompress().  Holds\n"
             "the GIL (a page's decode is shorter than a hand-over of it).");

/* decompress_into's work, the C entry point behind it (kcodec_capi.h): 0,
 * -EINVAL (the page zero-filled), or -1 with an exception set. */
static int kc_decompress_into_c(int algo, PyObject *src_obj, Py_ssize_t off, Py_ssize_t len,
                                PyObject *page_obj, PyObject *dict_obj)
{
    Py_buffer src, page, dict;
    ptrdiff_t r;
    int res = -1;

    if (algo < KC_LZ4 || algo > KC_LZ4HC) {
        PyErr_Format(PyExc_ValueError, "decompress_into: no algorithm %d", algo);
        return -1;
    }
    if (kc_get_dict(dict_obj, algo, &dict) < 0)
        return -1;
    if (kc_get_buffer(src_obj, &src, PyBUF_SIMPLE) < 0) {
        kc_release_dict(&dict);
        return -1;
    }
    if (kc_get_buffer(page_obj, &page, PyBUF_WRITABLE) < 0) {
        kc_put_buffer(&src);
        kc_release_dict(&dict);
        return -1;
    }
    if (off < 0 || len < 0 || off > src.len || len > src.len - off || page.len != KC_PAGE ||
        kc_overlap(&dict, &page)) {
        PyErr_Format(PyExc_ValueError,
                     "decompress_into: object %zd+%zd outside a %zd-byte source, or a "
                     "destination of %zd bytes (not %d) or on the dictionary",
                     off, len, src.len, page.len, KC_PAGE);
        goto done;
    }
    /* With the GIL held: one page's decode (1.5-2 us) is shorter than handing the
     * GIL to another thread and back, so letting it go gains a second reading
     * thread nothing and costs each page the hand-over (docs/perf.md).  The
     * batch calls let it go. */
    r = kc_decompress(algo, (const uint8_t *)src.buf + off, (size_t)len, page.buf, KC_PAGE,
                      dict.buf, (size_t)dict.len);
    if (r != KC_PAGE)
        memset(page.buf, 0, KC_PAGE);
    res = r == KC_PAGE ? 0 : -EINVAL;
done:
    kc_put_buffer(&page);
    kc_put_buffer(&src);
    kc_release_dict(&dict);
    return res;
}

static PyObject *kc_py_decompress_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t off, len;
    int algo, r;
    (void)self;

    if (nargs < 5 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError,
                        "decompress_into(algo, src, offset, length, page, dict=None)");
        return NULL;
    }
    algo = kc_algo_arg(args[0]);
    if (algo < 0)
        return NULL;
    off = PyLong_AsSsize_t(args[2]);
    len = PyLong_AsSsize_t(args[3]);
    if ((off == -1 || len == -1) && PyErr_Occurred())
        return NULL;
    r = kc_decompress_into_c(algo, args[1], off, len, args[4], nargs == 6 ? args[5] : NULL);
    return r == -1 ? NULL : PyLong_FromLong(r);
}

/* The pages of a batch: n pages of one buffer, or n buffers of a list/tuple
 * (each C-contiguous and exactly one page; writable for a decode's
 * destinations).  *pages gets one pointer per page; *views (n entries, or
 * NULL for one buffer) must be given back with kc_release_pages.  Every page
 * is checked against the other buffers of the call (`others`).  `name` names
 * the argument in errors. */
static void kc_release_pages(Py_buffer *views, Py_ssize_t n)
{
    if (!views)
        return;
    for (Py_ssize_t i = 0; i < n; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
    PyMem_Free(views);
}

static int kc_get_pages(PyObject *obj, Py_ssize_t n, int writable, const char *name,
                        Py_buffer *one, Py_buffer **views, uint8_t ***pages,
                        const Py_buffer *const *others, int n_others)
{
    const int flags = (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS;
    uint8_t **p = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*p));
    *views = NULL;
    *pages = p;
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        if (PySequence_Fast_GET_SIZE(obj) != n) {
            PyErr_Format(PyExc_ValueError, "%s has %zd buffers for %zd pages", name,
                         PySequence_Fast_GET_SIZE(obj), n);
            return -1;
        }
        Py_buffer *v = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
        if (!v) {
            PyErr_NoMemory();
            return -1;
        }
        *views = v;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(obj, i);
            if (PyObject_GetBuffer(item, &v[i], flags) < 0) {
                v[i].obj = NULL;
                return -1;
            }
            if (v[i].len != KC_PAGE) {
                PyErr_Format(PyExc_ValueError, "%s[%zd] has %zd bytes, not 4096", name, i,
                             v[i].len);
                return -1;
            }
            for (int k = 0; k < n_others; k++)
                if (kc_overlap(&v[i], others[k])) {
                    PyErr_Format(PyExc_ValueError, "%s must not overlap the other buffers",
                                 name);
                    return -1;
                }
            p[i] = v[i].buf;
        }
        return 0;
    }
    if (PyObject_GetBuffer(obj, one, flags) < 0) {
        one->obj = NULL;
        return -1;
    }
    if (n > PY_SSIZE_T_MAX / KC_PAGE || one->len / KC_PAGE < n) {
        PyErr_Format(PyExc_ValueError, "%s too small: %zd bytes for %zd pages", name, one->len,
                     n);
        return -1;
    }
    for (int k = 0; k < n_others; k++)
        if (kc_overlap(one, others[k])) {
            PyErr_Format(PyExc_ValueError, "%s must not overlap the other buffers", name);
            return -1;
        }
    for (Py_ssize_t i = 0; i < n; i++)
        p[i] = (uint8_t *)one->buf + (size_t)i * KC_PAGE;
    return 0;
}

PyDoc_STRVAR(kc_compress_batch_doc,
             "compress_batch(algo, src, n, dst, sizes, acceleration=1, dict=None) -> None\n\n"
             "Compress n 4096-byte pages: n contiguous pages of src, or, when src is a\n"
             "list or tuple of n 4096-byte buffers (the pages of the folios being\n"
             "written), src[i].  Page i's output goes to dst[i*8192 : i*8192 + sizes[i]];\n"
             "sizes is a writable int32 buffer.  acceleration and dict as for\n"
             "compress().  Runs without the GIL, once for the whole batch.");

static PyObject *kc_py_compress_batch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"algo", "src", "n", "dst", "sizes", "acceleration", "dict", NULL};
    PyObject *algo_obj, *src_obj, *dst_obj, *sizes_obj, *accel_obj = NULL, *dict_obj = NULL;
    Py_buffer one = {0}, dst = {0}, sizes = {0}, dict = {0};
    Py_buffer *views = NULL;
    uint8_t **pages = NULL;
    Py_ssize_t n;
    int algo;
    uint32_t accel;
    PyObject *res = NULL;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOnOO|OO:compress_batch", kwlist, &algo_obj,
                                     &src_obj, &n, &dst_obj, &sizes_obj, &accel_obj, &dict_obj))
        return NULL;
    algo = kc_parse_algo(algo_obj);
    if (algo < 0 || kc_parse_accel(accel_obj, &accel) < 0 || kc_get_dict(dict_obj, algo, &dict) < 0)
        goto done;
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        dst.obj = NULL;
        goto done;
    }
    if (PyObject_GetBuffer(sizes_obj, &sizes,
                           PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        sizes.obj = NULL;
        goto done;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        goto done;
    }
    if (n > PY_SSIZE_T_MAX / KC_DST_STRIDE || dst.len / KC_DST_STRIDE < n) {
        PyErr_Format(PyExc_ValueError, "dst too small: %zd bytes, need %zd * 8192", dst.len, n);
        goto done;
    }
    if (kc_check_int_buffer(&sizes, "sizes", 4, n) < 0)
        goto done;
    if (kc_overlap(&dst, &sizes) || kc_overlap(&dict, &dst) || kc_overlap(&dict, &sizes)) {
        PyErr_SetString(PyExc_ValueError, "dst, sizes and dict must not overlap");
        goto done;
    }
    {
        const Py_buffer *const others[] = {&dst, &sizes};
        if (kc_get_pages(src_obj, n, 0, "src", &one, &views, &pages, others, 2) < 0)
            goto done;
    }
    {
        uint8_t *d = dst.buf;
        uint8_t *z = sizes.buf;
        Py_BEGIN_ALLOW_THREADS
        kc_work work;
        for (Py_ssize_t i = 0; i < n; i++) {
            size_t c = kc_compress(algo, pages[i], KC_PAGE, d + (size_t)i * KC_DST_STRIDE, accel,
                                   dict.buf, (size_t)dict.len, &work);
            int32_t v = (int32_t)c;
            memcpy(z + (size_t)i * 4, &v, 4);
        }
        Py_END_ALLOW_THREADS
    }
    res = Py_NewRef(Py_None);
done:
    kc_release_pages(views, n);
    PyMem_Free(pages);
    if (one.obj)
        PyBuffer_Release(&one);
    if (dst.obj)
        PyBuffer_Release(&dst);
    if (sizes.obj)
        PyBuffer_Release(&sizes);
    kc_release_dict(&dict);
    return res;
}

PyDoc_STRVAR(kc_decompress_batch_doc,
             "decompress_batch(algo, src, offsets, lengths, n, dst, results) -> int\n\n"
             "Object i is src[offsets[i] : offsets[i] + lengths[i]] (offsets: int64,\n"
             "lengths: int32); it is decoded into dst[i*4096 : (i+1)*4096], or, when dst\n"
             "is a list or tuple of n writable 4096-byte buffers (the pages of the\n"
             "folios being read), into dst[i].  results[i] (int32) is 0, or -EINVAL when\n"
             "the object is malformed or does not decode to exactly 4096 bytes (its\n"
             "page is then zero-filled).  Returns the number of failures.  Offsets and\n"
             "lengths outside src raise ValueError before anything is decoded.  Runs\n"
             "without the GIL.");

static PyObject *kc_py_decompress_batch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"algo", "src", "offsets", "lengths", "n", "dst", "results", NULL};
    PyObject *algo_obj, *off_obj, *len_obj, *dst_obj, *res_obj;
    Py_buffer src, offs = {0}, lens = {0}, dst = {0}, results = {0};
    Py_buffer *views = NULL;
    uint8_t **pages = NULL;
    Py_ssize_t n;
    int algo;
    PyObject *res = NULL;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*OOnOO:decompress_batch", kwlist, &algo_obj,
                                     &src, &off_obj, &len_obj, &n, &dst_obj, &res_obj))
        return NULL;
    algo = kc_parse_algo(algo_obj);
    if (algo < 0)
        goto done;
    if (PyObject_GetBuffer(off_obj, &offs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        offs.obj = NULL;
        goto done;
    }
    if (PyObject_GetBuffer(len_obj, &lens, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        lens.obj = NULL;
        goto done;
    }
    if (PyObject_GetBuffer(res_obj, &results,
                           PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        results.obj = NULL;
        goto done;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        goto done;
    }
    if (kc_check_int_buffer(&offs, "offsets", 8, n) < 0 ||
        kc_check_int_buffer(&lens, "lengths", 4, n) < 0 ||
        kc_check_int_buffer(&results, "results", 4, n) < 0)
        goto done;
    if (kc_overlap(&results, &src) || kc_overlap(&results, &offs) ||
        kc_overlap(&results, &lens)) {
        PyErr_SetString(PyExc_ValueError, "dst and results must not overlap the inputs");
        goto done;
    }
    {
        const Py_buffer *inputs[] = {&src, &results, &offs, &lens};
        if (kc_get_pages(dst_obj, n, 1, "dst", &dst, &views, &pages, inputs, 4) < 0)
            goto done;
    }
    /* Validate every object's extent before decoding anything. */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t o;
        int32_t l;
        memcpy(&o, (const uint8_t *)offs.buf + (size_t)i * 8, 8);
        memcpy(&l, (const uint8_t *)lens.buf + (size_t)i * 4, 4);
        if (o < 0 || l < 0 || o > (int64_t)src.len || (int64_t)l > (int64_t)src.len - o) {
            PyErr_Format(PyExc_ValueError,
                         "object %zd: offset %lld, length %d outside src of %zd bytes", i,
                         (long long)o, (int)l, src.len);
            goto done;
        }
    }
    {
        const uint8_t *s = src.buf;
        const uint8_t *ob = offs.buf, *lb = lens.buf;
        uint8_t *rb = results.buf;
        Py_ssize_t failures = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t o;
            int32_t l, r32 = 0;
            ptrdiff_t r;
            uint8_t *slot = pages[i];
            memcpy(&o, ob + (size_t)i * 8, 8);
            memcpy(&l, lb + (size_t)i * 4, 4);
            r = kc_decompress(algo, s + o, (size_t)l, slot, KC_PAGE, NULL, 0);
            if (r != KC_PAGE) {
                r32 = -EINVAL;
                memset(slot, 0, KC_PAGE);
                failures++;
            }
            memcpy(rb + (size_t)i * 4, &r32, 4);
        }
        Py_END_ALLOW_THREADS
        res = PyLong_FromSsize_t(failures);
    }
done:
    PyBuffer_Release(&src);
    if (offs.obj)
        PyBuffer_Release(&offs);
    if (lens.obj)
        PyBuffer_Release(&lens);
    if (dst.obj)
        PyBuffer_Release(&dst);
    if (results.obj)
        PyBuffer_Release(&results);
    kc_release_pages(views, n);
    PyMem_Free(pages);
    return res;
}

static PyMethodDef kc_methods[] = {
    {"compress", (PyCFunction)(void (*)(void))kc_py_compress, METH_VARARGS | METH_KEYWORDS,
     kc_compress_doc},
    {"decompress", (PyCFunction)(void (*)(void))kc_py_decompress, METH_VARARGS | METH_KEYWORDS,
     kc_decompress_doc},
    {"compress_into", (PyCFunction)(void (*)(void))kc_py_compress_into, METH_FASTCALL,
     kc_compress_into_doc},
    {"decompress_into", (PyCFunction)(void (*)(void))kc_py_decompress_into, METH_FASTCALL,
     kc_decompress_into_doc},
    {"compress_batch", (PyCFunction)(void (*)(void))kc_py_compress_batch,
     METH_VARARGS | METH_KEYWORDS, kc_compress_batch_doc},
    {"decompress_batch", (PyCFunction)(void (*)(void))kc_py_decompress_batch,
     METH_VARARGS | METH_KEYWORDS, kc_decompress_batch_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(
    kc_module_doc,
    "Kernel-identical zram page codecs (pyzram's own C code).\n\n"
    "Algorithms: 'lz4', 'lzo', 'lzo-rle', 'lz4hc'.  The compressors reproduce, byte\n"
    "for byte, what Linux's zram stores on x86-64:\n"
    "  lz4     -- LZ4_compress_fast() (lib/lz4, LZ4 1.7.x fast path, byU16 table);\n"
    "             with a dictionary LZ4_loadDict + LZ4_compress_fast_continue\n"
    "  lzo     -- lzo1x_1_compress()  (lib/lzo/lzo1x_compress.c)\n"
    "  lzo-rle -- lzorle1x_1_compress() (version marker 17,1 and zero runs)\n"
    "  lz4hc   -- LZ4_compress_HC() (lib/lz4/lz4hc_compress.c, the 1.7.x parser);\n"
    "             with a dictionary LZ4_loadDictHC + LZ4_compress_HC_continue\n"
    "The decoders model LZ4_decompress_safe() (with a dictionary\n"
    "LZ4_decompress_safe_continue after LZ4_setStreamDecode) and\n"
    "lzo1x_decompress_safe() (which reads both lzo and lzo-rle streams), with every\n"
    "access bounds-checked.\n\n"
    "compress(algo, page, acceleration=1, dict=None) -> bytes\n"
    "compress_into(algo, page, dst, acceleration=1, dict=None) -> int (into a stream buffer)\n"
    "decompress_into(algo, src, offset, length, page, dict=None) -> int (0 or -EINVAL)\n"
    "decompress(algo, data, out_len=4096, dict=None) -> bytes  (OSError EINVAL if corrupt)\n"
    "compress_batch(algo, src, n, dst, sizes, acceleration=1) -> None\n"
    "decompress_batch(algo, src, offsets, lengths, n, dst, results) -> int\n\n"
    "Batch calls release the GIL; every call uses its own work memory, so threads\n"
    "may run them in parallel.  _C_API is a capsule of the C entry points behind\n"
    "compress_into and decompress_into, for compiled callers (kcodec_capi.h).");

/* The C entry points, for compiled callers (kcodec_capi.h). */
static const kc_capi_t kc_capi = {
    KC_CAPI_VERSION,
    kc_compress_into_c,
    kc_decompress_into_c,
};

static int kc_exec(PyObject *m)
{
    PyObject *capi;
    PyObject *algos = Py_BuildValue("(ssss)", "lz4", "lzo", "lzo-rle", "lz4hc");
    if (algos == NULL || PyModule_AddObject(m, "ALGORITHMS", algos) < 0) {
        Py_XDECREF(algos);
        return -1;
    }
    if (PyModule_AddIntConstant(m, "PAGE_SIZE", KC_PAGE) < 0 ||
        PyModule_AddIntConstant(m, "DST_STRIDE", KC_DST_STRIDE) < 0 ||
        PyModule_AddIntConstant(m, "MAX_INPUT", KC_MAX_INPUT) < 0)
        return -1;
    capi = PyCapsule_New((void *)&kc_capi, KC_CAPI_NAME, NULL);
    if (capi == NULL || PyModule_AddObject(m, "_C_API", capi) < 0) {
        Py_XDECREF(capi);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot kc_slots[] = {
    {Py_mod_exec, (void *)kc_exec},
    {0, NULL},
};

static struct PyModuleDef kc_module = {
    PyModuleDef_HEAD_INIT, "pyzram._kcodec", kc_module_doc, 0, kc_methods, kc_slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kcodec(void) { return PyModuleDef_Init(&kc_module); }
