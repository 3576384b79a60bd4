/* vitc core: the caching allocator.
 * A training step allocates the same sizes every step, so freed blocks are kept in per-size free
 * lists (sizes rounded up to 64 bytes) and handed out again: no malloc/free per op in steady
 * state. The cache is bounded (VT_CACHE_MAX bytes); when the system allocator fails the cache is
 * emptied and the allocation retried once. Thread safe (one mutex; allocations are per tensor,
 * not per element). vt_alloc_fail_after() lets tests fail the n-th allocation.
 * Blocks of 2 MiB and more start on a 2 MiB boundary and are madvise(MADV_HUGEPAGE)d, so where the
 * kernel's transparent huge pages are in "madvise" mode (Debian's default) they are backed by
 * 2 MiB pages: the seed ViT's qkv activations (10 MB per block, read in 256-byte pieces 6 KB
 * apart by the attention kernels) otherwise span more 4 KiB pages than the TLB holds. Measured
 * with bench/ab.py: seed ViT train steps 3-5 % faster at 1 and 2 threads; DeiT-Tiny 7 % in one
 * run, within noise (-2 %) in another; peak RSS unchanged. VITC_HUGEPAGES=0 turns it off. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "tensor.h"

#define VT_ALIGN 64
#define VT_NBUCKETS 4096
#define VT_CACHE_MAX ((int64_t)4 << 30)
#define VT_HUGE ((size_t)2 << 20) /* x86-64's transparent huge page */

typedef struct block { struct block *next; } block;
typedef struct { size_t size; block *head; } bucket;

static bucket buckets[VT_NBUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t live_bytes, cached_bytes, peak_bytes;
static int64_t fail_countdown = -1;

static size_t round_size(size_t n) { return n ? (n + VT_ALIGN - 1) & ~(size_t)(VT_ALIGN - 1) : VT_ALIGN; }

static bucket *find_bucket(size_t size, int create) {
    size_t h = (size / VT_ALIGN) * 2654435761u % VT_NBUCKETS;
    for (int probe = 0; probe < VT_NBUCKETS; probe++, h = (h + 1) % VT_NBUCKETS) {
        if (buckets[h].size == size) return &buckets[h];
        if (buckets[h].size == 0) {
            if (!create) return NULL;
            buckets[h].size = size;
            return &buckets[h];
        }
    }
    return NULL;
}

static void clear_cache_locked(void) {
    for (int i = 0; i < VT_NBUCKETS; i++) {
        while (buckets[i].head) {
            block *b = buckets[i].head;
            buckets[i].head = b->next;
            free(b);
            cached_bytes -= (int64_t)buckets[i].size;
        }
    }
}

/* refuse single requests larger than physical memory: with overcommit they would "succeed" and
 * the process would be killed when the pages are touched */
static size_t max_request(void) {
    static size_t cap;
    if (!cap) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        cap = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : ((size_t)1 << 40);
    }
    return cap;
}

static int huge_pages_wanted(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("VITC_HUGEPAGES");
        on = !(e && !strcmp(e, "0"));
    }
    return on;
}

/* a fresh block from the system; NULL when there is none */
static void *system_alloc(size_t size) {
    int huge = size >= VT_HUGE && huge_pages_wanted();
    void *p = NULL;
    if (posix_memalign(&p, huge ? VT_HUGE : VT_ALIGN, size) != 0) return NULL;
    /* advice only: without THP support it fails and the block stays on small pages */
    if (huge) (void)madvise(p, size & ~(VT_HUGE - 1), MADV_HUGEPAGE);
    return p;
}

void *vt_alloc(size_t nbytes) {
    if (nbytes > max_request())
        return vt_fail_null(VT_ENOMEM, "out of memory: %zu bytes requested, more than this machine's %zu bytes of RAM",
                            nbytes, max_request());
    size_t size = round_size(nbytes);
    void *p = NULL;
    pthread_mutex_lock(&lock);
    if (fail_countdown >= 0 && fail_countdown-- == 0) {
        pthread_mutex_unlock(&lock);
        return vt_fail_null(VT_ENOMEM, "out of memory allocating %zu bytes (injected failure)", nbytes);
    }
    bucket *b = find_bucket(size, 0);
    if (b && b->head) {
        p = b->head;
        b->head = b->head->next;
        cached_bytes -= (int64_t)size;
    }
    if (!p && !(p = system_alloc(size))) {
        clear_cache_locked();
        p = system_alloc(size);
    }
    if (p) {
        live_bytes += (int64_t)size;
        if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    }
    pthread_mutex_unlock(&lock);
    if (!p) return vt_fail_null(VT_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    return p;
}

void vt_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t size = round_size(nbytes);
    pthread_mutex_lock(&lock);
    live_bytes -= (int64_t)size;
    bucket *b = cached_bytes + (int64_t)size <= VT_CACHE_MAX ? find_bucket(size, 1) : NULL;
    if (b) {
        block *blk = p;
        blk->next = b->head;
        b->head = blk;
        cached_bytes += (int64_t)size;
    } else {
        free(p);
    }
    pthread_mutex_unlock(&lock);
}

void vt_alloc_fail_after(int64_t n) {
    pthread_mutex_lock(&lock);
    fail_countdown = n;
    pthread_mutex_unlock(&lock);
}

void vt_alloc_clear_cache(void) {
    pthread_mutex_lock(&lock);
    clear_cache_locked();
    pthread_mutex_unlock(&lock);
}

void vt_alloc_reset_peak(void) {
    pthread_mutex_lock(&lock);
    peak_bytes = live_bytes;
    pthread_mutex_unlock(&lock);
}

void vt_alloc_stats(int64_t *live, int64_t *cached, int64_t *peak) {
    pthread_mutex_lock(&lock);
    *live = live_bytes;
    *cached = cached_bytes;
    *peak = peak_bytes;
    pthread_mutex_unlock(&lock);
}
