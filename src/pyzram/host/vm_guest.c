/*
 * zvm: the guest side of pyzram's VM oracle (pyzram.host.kernel_vm).
 *
 * Runs as PID 1's worker inside the qemu guest.  It reads a script of
 * commands (one per line, written by the host) and performs each one on the
 * guest kernel's zram and zswap exactly as a user-space tool would: one
 * write(2) of the given bytes to a sysfs attribute or module parameter, one
 * read(2) of it, O_DIRECT pwrite/pread on /dev/zramN through a page-aligned
 * bounce buffer (1 MiB per syscall, as the host driver does),
 * ioctl(BLKDISCARD), swapon(2), madvise(2) on an anonymous mapping whose
 * pages then fault back in.  Every command prints exactly one
 * result line on the console, "@@ <seq> <result>", where <result> is
 * "ok <n>", "err <errno>" or "hex <bytes as hex>", so that nothing the tty
 * does to the text can change it.  Bulk data comes from the read-only page
 * disk and read-back data goes to the output disk.
 *
 * Commands (numbers in decimal, values in hex):
 *   add                      hot_add a device, make it current; ok <id>
 *   rm                       close, reset and hot_remove the current device
 *   w <attr> <hexvalue>      write(2) to /sys/block/zramN/<attr>
 *   r <attr>                 read(2) /sys/block/zramN/<attr>
 *   R <hexpath>              read any file (e.g. /sys/module/zram/...)
 *   pw <srcoff> <len> <off>  page disk [srcoff, +len) -> /dev/zramN at off
 *   pr <off> <len> <outoff>  /dev/zramN [off, +len) -> output disk at outoff
 *   disc <off> <len>         ioctl(BLKDISCARD) on /dev/zramN
 *   sizes <srcoff> <n> <slot> per-page stored size (mm_stat deltas), hex int16 LE
 *   close                    close /dev/zramN (reset needs no openers)
 *   W <hexpath> <hexvalue>   write(2) to any file (e.g. /sys/module/zswap/...)
 *   swapon <hexpath> <flags> swapon(2); swapoff <hexpath>: swapoff(2); the path
 *                            "-" is the current /dev/zramN
 *   map <srcoff> <n>         mmap n anonymous pages (MADV_NOHUGEPAGE: order-0
 *                            folios), filled from the page disk at srcoff
 *   madv <advice>            madvise(2) over the whole mapping (21: PAGEOUT)
 *   cmp <srcoff>             fault every mapped page back in and compare it
 *                            with the page disk; ok <pages that differ>
 *   unmap                    munmap (frees the swap slots the pages hold)
 *   sleep <ms>               nanosleep
 *   clock                    CLOCK_BOOTTIME in ns
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BOUNCE (1 << 20)
#define BLKDISCARD_IOC 0x1277

static int cur = -1;
static int devfd = -1;
static int srcfd = -1;
static int outfd = -1;
static unsigned char *bounce;
static unsigned char *map;
static size_t map_len;
static long seq;

static void out_ok(long v) { printf("@@ %ld ok %ld\n", seq, v); }
static void out_err(int e) { printf("@@ %ld err %d\n", seq, e); }

static void out_hex(const unsigned char *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    printf("@@ %ld hex ", seq);
    for (size_t i = 0; i < n; i++) {
        putchar(d[p[i] >> 4]);
        putchar(d[p[i] & 15]);
    }
    putchar('\n');
}

static size_t unhex(const char *s, unsigned char *o)
{
    size_t n = 0;
    while (s[0] && s[1]) {
        unsigned v;
        sscanf(s, "%2x", &v);
        o[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}

static int write_file(const char *path, const unsigned char *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, buf, n);
    int e = w < 0 ? -errno : 0;
    close(fd);
    return e;
}

static long read_file(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0 || got + (size_t)r >= cap) {
            got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    return (long)got;
}

static void attr_path(char *p, size_t n, const char *attr)
{
    snprintf(p, n, "/sys/block/zram%d/%s", cur, attr);
}

static int open_dev(void)
{
    if (devfd >= 0)
        return 0;
    char p[64];
    snprintf(p, sizeof p, "/dev/zram%d", cur);
    /* devtmpfs creates the node as the disk is added; wait for it briefly. */
    for (int i = 0; i < 500; i++) {
        devfd = open(p, O_RDWR | O_DIRECT | O_CLOEXEC);
        if (devfd >= 0 || errno != ENOENT)
            break;
        usleep(10000);
    }
    return devfd < 0 ? -errno : 0;
}

static void close_dev(void)
{
    if (devfd >= 0)
        close(devfd);
    devfd = -1;
}

static long mm_field(int field)
{
    char p[128];
    unsigned char buf[512];
    attr_path(p, sizeof p, "mm_stat");
    long n = read_file(p, buf, sizeof buf - 1);
    if (n < 0)
        return n;
    buf[n] = 0;
    char *s = (char *)buf;
    long v = 0;
    for (int i = 0; i <= field; i++)
        v = strtol(s, &s, 10);
    return v;
}

static void cmd(char *line)
{
    static unsigned char buf[2 * PAGE + 2];
    char *argv[8];
    int argc = 0;
    for (char *t = strtok(line, " \n"); t && argc < 8; t = strtok(NULL, " \n"))
        argv[argc++] = t;
    if (argc == 0)
        return;
    seq++;
    const char *c = argv[0];
    char p[256];
    if (!strcmp(c, "add")) {
        long n = read_file("/sys/class/zram-control/hot_add", buf, 64);
        if (n < 0)
            return out_err((int)-n);
        buf[n] = 0;
        close_dev();
        cur = atoi((char *)buf);
        return out_ok(cur);
    }
    if (!strcmp(c, "rm")) {
        close_dev();
        attr_path(p, sizeof p, "reset");
        int e = write_file(p, (const unsigned char *)"1", 1);
        snprintf((char *)buf, sizeof buf, "%d", cur);
        int e2 = write_file("/sys/class/zram-control/hot_remove", buf, strlen((char *)buf));
        return e ? out_err(-e) : e2 ? out_err(-e2) : out_ok(0);
    }
    if (!strcmp(c, "close")) {
        close_dev();
        return out_ok(0);
    }
    if (!strcmp(c, "w") && argc >= 2) {
        size_t n = argc >= 3 ? unhex(argv[2], buf) : 0;
        attr_path(p, sizeof p, argv[1]);
        int e = write_file(p, buf, n);
        return e ? out_err(-e) : out_ok((long)n);
    }
    if ((!strcmp(c, "r") || !strcmp(c, "R")) && argc >= 2) {
        if (c[0] == 'r') {
            attr_path(p, sizeof p, argv[1]);
        } else {
            size_t n = unhex(argv[1], (unsigned char *)p);
            p[n] = 0;
        }
        long n = read_file(p, bounce, BOUNCE);
        return n < 0 ? out_err((int)-n) : out_hex(bounce, (size_t)n);
    }
    if (!strcmp(c, "W") && argc >= 2) {
        size_t n = unhex(argv[1], (unsigned char *)p);
        p[n] = 0;
        n = argc >= 3 ? unhex(argv[2], buf) : 0;
        int e = write_file(p, buf, n);
        return e ? out_err(-e) : out_ok((long)n);
    }
    if ((!strcmp(c, "swapon") && argc >= 3) || (!strcmp(c, "swapoff") && argc >= 2)) {
        if (!strcmp(argv[1], "-")) {
            snprintf(p, sizeof p, "/dev/zram%d", cur);
        } else {
            size_t n = unhex(argv[1], (unsigned char *)p);
            p[n] = 0;
        }
        int r = !strcmp(c, "swapon") ? swapon(p, atoi(argv[2])) : swapoff(p);
        return r < 0 ? out_err(errno) : out_ok(0);
    }
    if (!strcmp(c, "map") && argc >= 3) {
        long long src = atoll(argv[1]);
        size_t len = (size_t)atol(argv[2]) * PAGE;
        if (map || !len)
            return out_err(EBUSY);
        map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            return out_err(errno);
        }
        map_len = len;
        if (madvise(map, len, MADV_NOHUGEPAGE) < 0)
            return out_err(errno);
        for (size_t done = 0; done < len;) {
            ssize_t r = pread(srcfd, map + done, len - done, src + (long long)done);
            if (r <= 0)
                return out_err(r < 0 ? errno : EIO);
            done += (size_t)r;
        }
        return out_ok((long)(len / PAGE));
    }
    if (!strcmp(c, "madv") && argc >= 2) {
        if (!map)
            return out_err(EFAULT);
        return madvise(map, map_len, atoi(argv[1])) < 0 ? out_err(errno) : out_ok(0);
    }
    if (!strcmp(c, "cmp") && argc >= 2) {
        long long src = atoll(argv[1]);
        long differ = 0;
        if (!map)
            return out_err(EFAULT);
        for (size_t done = 0; done < map_len; done += BOUNCE) {
            size_t n = map_len - done < BOUNCE ? map_len - done : BOUNCE;
            if (pread(srcfd, bounce, n, src + (long long)done) != (ssize_t)n)
                return out_err(EIO);
            for (size_t i = 0; i < n; i += PAGE)
                differ += memcmp(map + done + i, bounce + i, PAGE) != 0;
        }
        return out_ok(differ);
    }
    if (!strcmp(c, "unmap")) {
        int r = map ? munmap(map, map_len) : 0;
        map = NULL;
        map_len = 0;
        return r < 0 ? out_err(errno) : out_ok(0);
    }
    if (!strcmp(c, "pw") && argc >= 4) {
        long long src = atoll(argv[1]), len = atoll(argv[2]), off = atoll(argv[3]);
        int e = open_dev();
        if (e)
            return out_err(-e);
        long long done = 0;
        while (done < len) {
            size_t n = (size_t)(len - done < BOUNCE ? len - done : BOUNCE);
            if (pread(srcfd, bounce, n, src + done) != (ssize_t)n)
                return out_err(EIO);
            ssize_t w = pwrite(devfd, bounce, n, off + done);
            if (w < 0)
                return out_err(errno);
            done += w;
            if ((size_t)w < n)
                break;
        }
        return out_ok((long)done);
    }
    if (!strcmp(c, "pr") && argc >= 4) {
        long long off = atoll(argv[1]), len = atoll(argv[2]), dst = atoll(argv[3]);
        int e = open_dev();
        if (e)
            return out_err(-e);
        long long done = 0;
        while (done < len) {
            size_t n = (size_t)(len - done < BOUNCE ? len - done : BOUNCE);
            ssize_t r = pread(devfd, bounce, n, off + done);
            if (r < 0)
                return out_err(errno);
            if (r == 0)
                break;
            if (pwrite(outfd, bounce, (size_t)r, dst + done) != r)
                return out_err(EIO);
            done += r;
            if ((size_t)r < n)
                break;
        }
        return out_ok((long)done);
    }
    if (!strcmp(c, "disc") && argc >= 3) {
        uint64_t range[2] = {(uint64_t)atoll(argv[1]), (uint64_t)atoll(argv[2])};
        int e = open_dev();
        if (e)
            return out_err(-e);
        if (ioctl(devfd, BLKDISCARD_IOC, range) < 0)
            return out_err(errno);
        return out_ok(0);
    }
    if (!strcmp(c, "sizes") && argc >= 4) {
        long long src = atoll(argv[1]);
        long n = atol(argv[2]), slot = atol(argv[3]);
        int e = open_dev();
        if (e)
            return out_err(-e);
        unsigned char *res = malloc((size_t)n * 2 + 1);
        long before = mm_field(1), same0 = mm_field(5), huge0 = mm_field(7);
        for (long i = 0; i < n; i++) {
            if (pread(srcfd, bounce, PAGE, src + i * PAGE) != PAGE ||
                pwrite(devfd, bounce, PAGE, (slot + i) * PAGE) != PAGE) {
                free(res);
                return out_err(EIO);
            }
            long after = mm_field(1), same = mm_field(5), huge = mm_field(7);
            int v = same > same0 ? -1 : huge > huge0 ? PAGE : (int)(after - before);
            res[2 * i] = (unsigned char)(v & 0xff);
            res[2 * i + 1] = (unsigned char)((v >> 8) & 0xff);
            before = after, same0 = same, huge0 = huge;
        }
        out_hex(res, (size_t)n * 2);
        free(res);
        return;
    }
    if (!strcmp(c, "sleep") && argc >= 2) {
        long ms = atol(argv[1]);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return out_ok(0);
    }
    if (!strcmp(c, "clock")) {
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return out_ok(ts.tv_sec * 1000000000L + ts.tv_nsec);
    }
    out_err(ENOSYS);
}

int main(int argc, char **argv)
{
    const char *script = argc > 1 ? argv[1] : "/script";
    const char *src = argc > 2 ? argv[2] : "/dev/vda";
    const char *out = argc > 3 ? argv[3] : "/dev/vdc";
    setvbuf(stdout, NULL, _IOLBF, 1 << 16);
    bounce = mmap(NULL, BOUNCE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    srcfd = open(src, O_RDONLY | O_CLOEXEC);
    outfd = open(out, O_RDWR | O_CLOEXEC);
    FILE *f = fopen(script, "r");
    if (!f || bounce == MAP_FAILED) {
        printf("@@ 0 err %d\n", errno);
        return 1;
    }
    static char line[1 << 16];
    while (fgets(line, sizeof line, f))
        cmd(line);
    close_dev();
    if (outfd >= 0)
        fsync(outfd);
    printf("@@ end\n");
    fflush(stdout);
    return 0;
}
