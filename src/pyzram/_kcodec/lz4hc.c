/*
 * lz4hc.c -- the kernel's LZ4-HC compressor, as zram's lz4hc backend runs it.
 *
 * Written for pyzram.  The behaviour (not the code) follows Linux 6.18
 * lib/lz4/lz4hc_compress.c: LZ4_compress_HC() without a dictionary, and with
 * one the calls of backend_lz4hc.c (LZ4_resetStreamHC, LZ4_loadDictHC,
 * LZ4_compress_HC_continue on a page that does not follow the dictionary in
 * memory, so the dictionary becomes the stream's external dictionary).  The
 * LZ4 1.7.x "HC" parser the kernel still ships, not liblz4's newer one (no
 * optimal parser, no fast path for low levels, no pattern analysis).
 * Checked page by page against Debian's 6.18 kernel under qemu
 * (pyzram.host.kernel_vm).
 *
 * The model:
 *   - positions are indices in one space: the dictionary's last (at most)
 *     64 KiB from 64 KiB on, the input right after it (from `dict_limit`;
 *     64 KiB without a dictionary), so 0 in the head table means "empty";
 *   - only the dictionary's positions with 4 bytes inside it are linked
 *     (LZ4_loadDictHC), the input's from its first byte on; a match found
 *     in the dictionary is counted up to the dictionary's end and, if it
 *     reaches it, on into the input's first bytes; a dictionary match
 *     extends backwards only inside the window, an input match only inside
 *     the input;
 *   - a 2^15-entry head table hashed from the 4 bytes at a position
 *     (x * 2654435761 >> 17), and a 64 Ki-entry table of 16-bit back
 *     distances (the chain), capped at 65535; heads are inserted lazily up to
 *     the position being searched;
 *   - level L (1..16; above 16 is 16, below 1 is 9) walks at most 2^(L-1)
 *     chain links per search;
 *   - the parse keeps up to three overlapping candidate matches and chooses,
 *     shortens and emits them with the 1.7.x rules (OPTIMAL_ML = 18; a
 *     first match shorter than 3 bytes before the second is dropped; ...);
 *   - the first byte never starts a match, the last 12 bytes never start
 *     one, the last 5 are always literals.
 * The output buffer is assumed large enough (zram gives 2 * PAGE_SIZE).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lz4hc.h"

#define HC_MINMATCH 4
#define HC_MFLIMIT 12
#define HC_LASTLITERALS 5
#define HC_ML_BITS 4
#define HC_ML_MASK 15u
#define HC_RUN_MASK 15u
#define HC_OPTIMAL_ML ((int)(HC_ML_MASK - 1) + HC_MINMATCH)
#define HC_MAX_DISTANCE 65535u
#define HC_WINDOW 65536u
#define HC_HASH_LOG 15
#define HC_HASH_SIZE (1u << HC_HASH_LOG)
#define HC_CHAIN_SIZE 65536u
#define HC_MAX_LEVEL 16
#define HC_DEFAULT_LEVEL 9

struct hc_state {
    uint32_t head[HC_HASH_SIZE];
    uint16_t chain[HC_CHAIN_SIZE];
    const uint8_t *src;  /* the input: index i >= dict_limit is src[i - dict_limit] */
    const uint8_t *dict; /* the dictionary: index i < dict_limit is dict[i - 64 KiB] */
    uint32_t dict_limit; /* index of the input's first byte */
    uint32_t next_insert;
    uint32_t low; /* smallest index a match may have */
};

static uint32_t hc_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t hc_hash(const uint8_t *p)
{
    return (hc_le32(p) * 2654435761u) >> (32 - HC_HASH_LOG);
}

/* Bytes equal at a and b, not reading a at or past `limit`. */
static int hc_count(const uint8_t *a, const uint8_t *b, const uint8_t *limit)
{
    const uint8_t *s = a;
    while (a < limit && *a == *b)
        a++, b++;
    return (int)(a - s);
}

/* The index of input byte p. */
static uint32_t hc_index(const struct hc_state *st, const uint8_t *p)
{
    return st->dict_limit + (uint32_t)(p - st->src);
}

/* Link positions [from, to) whose first byte is at `at` (position `from`). */
static void hc_link(struct hc_state *st, const uint8_t *at, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++, at++) {
        uint32_t h = hc_hash(at);
        uint32_t d = i - st->head[h];
        st->chain[i & 0xffff] = (uint16_t)(d > HC_MAX_DISTANCE ? HC_MAX_DISTANCE : d);
        st->head[h] = i;
    }
}

/* Link every input position before `p` not yet in the tables. */
static void hc_insert_upto(struct hc_state *st, const uint8_t *p)
{
    uint32_t target = hc_index(st, p);
    if (st->next_insert < target)
        hc_link(st, st->src + (st->next_insert - st->dict_limit), st->next_insert, target);
    st->next_insert = target;
}

static uint32_t hc_window_low(const struct hc_state *st, const uint8_t *p)
{
    uint32_t at = hc_index(st, p);
    return st->low + HC_WINDOW > at ? st->low : at - (HC_WINDOW - 1);
}

/*
 * Length of a match of p with dictionary position i (its first 4 bytes
 * equal): counted up to the dictionary's end, then, if it got there, on
 * against the input's first bytes; never past `limit`.
 */
static int hc_dict_len(const struct hc_state *st, const uint8_t *p, uint32_t i,
                       const uint8_t *limit)
{
    const uint8_t *m = st->dict + (i - HC_WINDOW);
    size_t room = st->dict_limit - i; /* bytes from m to the dictionary's end */
    const uint8_t *vlimit = room < (size_t)(limit - p) ? p + room : limit;
    int len = HC_MINMATCH + hc_count(p + HC_MINMATCH, m + HC_MINMATCH, vlimit);
    if (p + len == vlimit && vlimit < limit)
        len += hc_count(p + len, st->src, limit);
    return len;
}

/* Longest match for p (0 if none); its position in *from. */
static int hc_best(struct hc_state *st, const uint8_t *p, const uint8_t *limit, uint32_t *from,
                   int tries)
{
    uint32_t low = hc_window_low(st, p);
    int best = 0;
    hc_insert_upto(st, p);
    for (uint32_t i = st->head[hc_hash(p)]; i >= low && tries > 0; i -= st->chain[i & 0xffff]) {
        int len;
        tries--;
        if (i >= st->dict_limit) {
            const uint8_t *m = st->src + (i - st->dict_limit);
            if (m[best] != p[best] || hc_le32(m) != hc_le32(p))
                continue;
            len = HC_MINMATCH + hc_count(p + HC_MINMATCH, m + HC_MINMATCH, limit);
        } else {
            /* in the dictionary: no test of the byte at `best` first */
            if (hc_le32(st->dict + (i - HC_WINDOW)) != hc_le32(p))
                continue;
            len = hc_dict_len(st, p, i, limit);
        }
        if (len > best) {
            best = len;
            *from = i;
        }
    }
    return best;
}

/*
 * A match for p longer than `longest`, allowed to start earlier (back to
 * `lo`): returns the new longest length (or `longest`), with its position
 * in *from and its start in *start.
 */
static int hc_wider(struct hc_state *st, const uint8_t *p, const uint8_t *lo, const uint8_t *hi,
                    int longest, uint32_t *from, const uint8_t **start, int tries)
{
    uint32_t low = hc_window_low(st, p);
    int behind = (int)(p - lo);
    hc_insert_upto(st, p);
    for (uint32_t i = st->head[hc_hash(p)]; i >= low && tries > 0; i -= st->chain[i & 0xffff]) {
        int len, back = 0;
        tries--;
        if (i >= st->dict_limit) {
            const uint8_t *m = st->src + (i - st->dict_limit);
            if (lo[longest] != m[longest - behind] || hc_le32(m) != hc_le32(p))
                continue;
            len = HC_MINMATCH + hc_count(p + HC_MINMATCH, m + HC_MINMATCH, hi);
            /* backwards, not before the input's first byte */
            while (p + back > lo && m + back > st->src && p[back - 1] == m[back - 1])
                back--;
        } else {
            /* in the dictionary: no test of the byte at `longest` first;
             * backwards while above the window's lowest index */
            const uint8_t *m = st->dict + (i - HC_WINDOW);
            if (hc_le32(m) != hc_le32(p))
                continue;
            len = hc_dict_len(st, p, i, hi);
            while (p + back > lo && (int64_t)i + back > (int64_t)low && p[back - 1] == m[back - 1])
                back--;
        }
        len -= back;
        if (len > longest) {
            longest = len;
            *from = i + (uint32_t)back; /* back <= 0: modulo 2^32 */
            *start = p + back;
        }
    }
    return longest;
}

static uint8_t *hc_put_len(uint8_t *op, unsigned len)
{
    for (; len >= 255; len -= 255)
        *op++ = 255;
    *op++ = (uint8_t)len;
    return op;
}

/* One sequence: literals [*anchor, *ip), then a match of `len` from position `from`. */
static uint8_t *hc_emit(const struct hc_state *st, uint8_t *op, const uint8_t **ip,
                        const uint8_t **anchor, int len, uint32_t from)
{
    unsigned lit = (unsigned)(*ip - *anchor);
    unsigned ml = (unsigned)len - HC_MINMATCH;
    uint8_t *token = op++;
    uint16_t off = (uint16_t)(hc_index(st, *ip) - from);
    *token = (uint8_t)((lit >= HC_RUN_MASK ? HC_RUN_MASK : lit) << HC_ML_BITS);
    if (lit >= HC_RUN_MASK)
        op = hc_put_len(op, lit - HC_RUN_MASK);
    memcpy(op, *anchor, lit);
    op += lit;
    *op++ = (uint8_t)off;
    *op++ = (uint8_t)(off >> 8);
    /*
     * The kernel writes the match length's extra bytes as pairs of 255 while
     * more than 509 remain, then one 255 if more than 254: the same bytes as
     * hc_put_len.
     */
    *token |= (uint8_t)(ml >= HC_ML_MASK ? HC_ML_MASK : ml);
    if (ml >= HC_ML_MASK)
        op = hc_put_len(op, ml - HC_ML_MASK);
    *ip += len;
    *anchor = *ip;
    return op;
}

/* Move the start of match 2 (start/from/len) forward by `by` bytes if by > 0. */
static void hc_advance(const uint8_t **start, uint32_t *from, int *len, int by)
{
    if (by > 0) {
        *start += by;
        *from += (uint32_t)by;
        *len -= by;
    }
}

/*
 * LZ4HC_init for the input, or with a dictionary LZ4_loadDictHC (its last
 * 64 KiB; positions linked while 4 bytes remain) followed by
 * LZ4HC_setExternalDict for an input elsewhere in memory: the input starts
 * at index 64 KiB + the dictionary's size, the window's lowest index stays
 * 64 KiB (the dictionary's first byte), linking resumes at the input.
 */
static void hc_init(struct hc_state *st, const uint8_t *src, const uint8_t *dict, size_t dict_len)
{
    if (dict_len > HC_WINDOW) {
        dict += dict_len - HC_WINDOW;
        dict_len = HC_WINDOW;
    }
    memset(st->head, 0, sizeof st->head);
    memset(st->chain, 0xff, sizeof st->chain);
    st->src = src;
    st->dict = dict;
    st->dict_limit = HC_WINDOW + (uint32_t)dict_len;
    st->low = HC_WINDOW;
    if (dict_len >= HC_MINMATCH)
        hc_link(st, dict, HC_WINDOW, HC_WINDOW + (uint32_t)dict_len - (HC_MINMATCH - 1));
    st->next_insert = st->dict_limit;
}

static size_t hc_compress(struct hc_state *st, const uint8_t *src, size_t n, uint8_t *dst,
                          int level, const uint8_t *dict, size_t dict_len)
{
    const uint8_t *ip = src, *anchor = src;
    const uint8_t *end = src + n;
    /* Inputs of 12 bytes or less are all literals (no pointer before src). */
    const uint8_t *mflimit = n > HC_MFLIMIT ? end - HC_MFLIMIT : src;
    const uint8_t *mlimit = n > HC_MFLIMIT ? end - HC_LASTLITERALS : src;
    uint8_t *op = dst;
    int tries, ml, ml0, ml2, ml3;
    uint32_t ref = 0, ref0, ref2 = 0, ref3 = 0; /* match positions (indices) */
    const uint8_t *start0, *start2 = NULL, *start3 = NULL;

    if (level > HC_MAX_LEVEL)
        level = HC_MAX_LEVEL;
    if (level < 1)
        level = HC_DEFAULT_LEVEL;
    tries = 1 << (level - 1);

    hc_init(st, src, dict, dict_len);

    if (n > HC_MFLIMIT)
        ip++;
    while (ip < mflimit) {
        ml = hc_best(st, ip, mlimit, &ref, tries);
        if (!ml) {
            ip++;
            continue;
        }
        start0 = ip;
        ref0 = ref;
        ml0 = ml;

    search2:
        ml2 = ip + ml < mflimit ? hc_wider(st, ip + ml - 2, ip, mlimit, ml, &ref2, &start2, tries)
                                : ml;
        if (ml2 == ml) { /* nothing better: emit the first match */
            op = hc_emit(st, op, &ip, &anchor, ml, ref);
            continue;
        }
        if (start0 < ip && start2 < ip + ml0) { /* went too far: back to the saved one */
            ip = start0;
            ref = ref0;
            ml = ml0;
        }
        if (start2 - ip < 3) { /* the first match is too short to keep */
            ml = ml2;
            ip = start2;
            ref = ref2;
            goto search2;
        }

    search3:
        if (start2 - ip < HC_OPTIMAL_ML) {
            int keep = ml > HC_OPTIMAL_ML ? HC_OPTIMAL_ML : ml;
            if (ip + keep > start2 + ml2 - HC_MINMATCH)
                keep = (int)(start2 - ip) + ml2 - HC_MINMATCH;
            hc_advance(&start2, &ref2, &ml2, keep - (int)(start2 - ip));
        }
        ml3 = start2 + ml2 < mflimit
                  ? hc_wider(st, start2 + ml2 - 3, start2, mlimit, ml2, &ref3, &start3, tries)
                  : ml2;
        if (ml3 == ml2) { /* two matches to emit */
            if (start2 < ip + ml)
                ml = (int)(start2 - ip);
            op = hc_emit(st, op, &ip, &anchor, ml, ref);
            ip = start2;
            op = hc_emit(st, op, &ip, &anchor, ml2, ref2);
            continue;
        }
        if (start3 < ip + ml + 3) { /* no room for match 2 */
            if (start3 >= ip + ml) { /* emit 1; 3 becomes the new first */
                if (start2 < ip + ml) {
                    hc_advance(&start2, &ref2, &ml2, (int)(ip + ml - start2));
                    if (ml2 < HC_MINMATCH) {
                        start2 = start3;
                        ref2 = ref3;
                        ml2 = ml3;
                    }
                }
                op = hc_emit(st, op, &ip, &anchor, ml, ref);
                ip = start3;
                ref = ref3;
                ml = ml3;
                start0 = start2;
                ref0 = ref2;
                ml0 = ml2;
                goto search2;
            }
            start2 = start3; /* drop 2, keep looking from 3 */
            ref2 = ref3;
            ml2 = ml3;
            goto search3;
        }
        /* three ascending matches: emit the first (shortened to meet the second) */
        if (start2 < ip + ml) {
            if (start2 - ip < (ptrdiff_t)HC_ML_MASK) {
                if (ml > HC_OPTIMAL_ML)
                    ml = HC_OPTIMAL_ML;
                if (ip + ml > start2 + ml2 - HC_MINMATCH)
                    ml = (int)(start2 - ip) + ml2 - HC_MINMATCH;
                hc_advance(&start2, &ref2, &ml2, ml - (int)(start2 - ip));
            } else {
                ml = (int)(start2 - ip);
            }
        }
        op = hc_emit(st, op, &ip, &anchor, ml, ref);
        ip = start2;
        ref = ref2;
        ml = ml2;
        start2 = start3;
        ref2 = ref3;
        ml2 = ml3;
        goto search3;
    }

    { /* the last literals */
        unsigned lit = (unsigned)(end - anchor);
        *op++ = (uint8_t)((lit >= HC_RUN_MASK ? HC_RUN_MASK : lit) << HC_ML_BITS);
        if (lit >= HC_RUN_MASK)
            op = hc_put_len(op, lit - HC_RUN_MASK);
        memcpy(op, anchor, lit);
        op += lit;
    }
    return (size_t)(op - dst);
}

/* One state per thread (256 KiB: too big for the stack of a batch call). */
static _Thread_local struct hc_state *hc_tls;

size_t lz4hck_compress_dict(const uint8_t *src, size_t n, uint8_t *dst, int level,
                            const uint8_t *dict, size_t dict_len)
{
    if (hc_tls == NULL) {
        hc_tls = malloc(sizeof *hc_tls);
        if (hc_tls == NULL)
            return 0;
    }
    return hc_compress(hc_tls, src, n, dst, level, dict, dict_len);
}

size_t lz4hck_compress(const uint8_t *src, size_t n, uint8_t *dst, int level)
{
    return lz4hck_compress_dict(src, n, dst, level, NULL, 0);
}
