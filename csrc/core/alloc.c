/* vitc core: the caching allocator.
 * A training step allocates the same sizes every step, so freed blocks are kept in free lists and
 * handed out again: no malloc/free per op in steady state.
 * SIZE CLASSES: a request is rounded up to a class, so nearby sizes share blocks and the number
 * of lists does not grow with the number of distinct sizes: multiples of 64 bytes up to 1 KiB,
 * then 8 classes per power of two (a block is at most 12.5 % larger than asked; whole powers of
 * two are exact). The class index is computed, not searched: O(1) per allocation.
 * CAP: cached bytes never exceed max(min_bytes, fraction x the highest live byte count seen);
 * defaults 64 MiB and 1.5, so a training loop keeps a step's worth of blocks while a stream of
 * random shapes cannot grow the cache past 64 MiB. Why more than 1.0: a step reuses its blocks
 * only if the cache can hold, for every size class, the most blocks of that class alive at once,
 * and different classes peak at different times (forward activations, backward gradients), so
 * that sum exceeds the step's live peak: at 1.0 an LV-ViT-Tiny-MNIST step (batch 128, live peak
 * 87 MiB) sent 31 blocks a step to the system, at 1.5 none (step 0.963 of 1.0's time, 10
 * alternated rounds in one process, Zen 4); the seed ViT and DeiT-Tiny made none at 1.0.
 * A block that would pass the cap goes back to the system; lowering the cap
 * (vt_alloc_set_cache_limit) trims the cache at once, largest classes first. Before this cap, 500
 * tensors of distinct sizes freed at once left 2 GB cached with a live peak of 7.8 MB (issue 19).
 * EVICTION: a freed block that would pass the cap first makes room by releasing the cached blocks
 * of the classes requested longest ago (each class remembers the tick of its last request), and
 * is released itself only when that is not enough. Blocks of a shape no longer used (a batch size
 * run before, an eval pass) are what goes: releasing the incoming block instead kept those stale
 * blocks forever and sent the current step's blocks to the system every step (seed ViT at batch
 * 100 after 25 in one process: 30 system allocations and page-faulted blocks per step, none after).
 * When the system allocator fails the cache is emptied and the allocation retried once. Thread
 * safe (one mutex; allocations are per tensor, not per element). vt_alloc_fail_after() lets
 * tests fail the n-th allocation.
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
#define VT_SMALL 1024    /* classes of VT_ALIGN bytes up to here */
#define VT_PER_OCTAVE 8  /* then this many classes per power of two */
#define VT_NCLASSES (VT_SMALL / VT_ALIGN + 54 * VT_PER_OCTAVE) /* octaves k = 10 .. 63 */
#define VT_HUGE ((size_t)2 << 20) /* x86-64's transparent huge page */

typedef struct block { struct block *next; } block;
typedef struct { block *head; int64_t nblocks; } bucket;

static bucket buckets[VT_NCLASSES];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t live_bytes, cached_bytes, peak_bytes, max_live_bytes;
static int64_t cache_min_bytes = (int64_t)64 << 20;
static double cache_fraction = 1.5;
static vt_alloc_counts counts;
static int64_t fail_countdown = -1;
static int64_t request_tick, last_request[VT_NCLASSES]; /* for EVICTION */

/* the class of an n-byte request: its index and its block size */
static int size_class(size_t n, size_t *size) {
    if (n <= VT_SMALL) {
        size_t m = n ? (n + VT_ALIGN - 1) / VT_ALIGN : 1;
        *size = m * VT_ALIGN;
        return (int)m - 1;
    }
    int k = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* n in (2^k, 2^(k+1)], k >= 10 */
    size_t step = (size_t)1 << (k - 3);                         /* 2^k / VT_PER_OCTAVE */
    size_t m = (n + step - 1) / step;                           /* 9 .. 16 */
    *size = m * step;
    return VT_SMALL / VT_ALIGN + (k - 10) * VT_PER_OCTAVE + (int)(m - 9);
}

/* the block size of class c (inverse of size_class) */
static size_t class_size(int c) {
    if (c < VT_SMALL / VT_ALIGN) return (size_t)(c + 1) * VT_ALIGN;
    c -= VT_SMALL / VT_ALIGN;
    int k = 10 + c / VT_PER_OCTAVE;
    return (size_t)(c % VT_PER_OCTAVE + 9) << (k - 3);
}

static int64_t cache_cap_locked(void) {
    double rel = cache_fraction * (double)max_live_bytes;
    return rel > (double)cache_min_bytes ? (int64_t)rel : cache_min_bytes;
}

/* free cached blocks of class c until at most `keep` bytes stay cached or c has none left */
static void release_class_locked(int c, int64_t keep) {
    int64_t size = (int64_t)class_size(c);
    while (buckets[c].head && cached_bytes > keep) {
        block *b = buckets[c].head;
        buckets[c].head = b->next;
        buckets[c].nblocks--;
        free(b);
        cached_bytes -= size;
        counts.released++;
    }
}

/* free cached blocks, largest classes first, until at most `keep` bytes stay cached */
static void trim_cache_locked(int64_t keep) {
    for (int c = VT_NCLASSES - 1; c >= 0 && cached_bytes > keep; c--) release_class_locked(c, keep);
}

static void clear_cache_locked(void) { trim_cache_locked(0); }

/* release cached blocks of the least recently requested classes other than `keep_class` until
 * at most `keep` bytes stay cached (or nothing else is left) */
static void evict_stale_locked(int64_t keep, int keep_class) {
    while (cached_bytes > keep) {
        int oldest = -1;
        for (int c = 0; c < VT_NCLASSES; c++)
            if (c != keep_class && buckets[c].head && (oldest < 0 || last_request[c] < last_request[oldest]))
                oldest = c;
        if (oldest < 0) return;
        release_class_locked(oldest, keep);
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
    size_t size;
    int c = size_class(nbytes, &size);
    void *p = NULL;
    pthread_mutex_lock(&lock);
    if (fail_countdown >= 0 && fail_countdown-- == 0) {
        pthread_mutex_unlock(&lock);
        return vt_fail_null(VT_ENOMEM, "out of memory allocating %zu bytes (injected failure)", nbytes);
    }
    last_request[c] = ++request_tick;
    bucket *b = &buckets[c];
    if (b->head) {
        p = b->head;
        b->head = b->head->next;
        b->nblocks--;
        cached_bytes -= (int64_t)size;
        counts.cache_hits++;
    }
    if (!p) {
        if (!(p = system_alloc(size))) {
            clear_cache_locked();
            p = system_alloc(size);
        }
        if (p) counts.system_allocs++;
    }
    if (p) {
        counts.allocs++;
        live_bytes += (int64_t)size;
        if (live_bytes > peak_bytes) peak_bytes = live_bytes;
        if (live_bytes > max_live_bytes) max_live_bytes = live_bytes;
    }
    pthread_mutex_unlock(&lock);
    if (!p) return vt_fail_null(VT_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    return p;
}

void vt_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t size;
    int c = size_class(nbytes, &size);
    pthread_mutex_lock(&lock);
    live_bytes -= (int64_t)size;
    counts.frees++;
    int64_t cap = cache_cap_locked();
    if (cached_bytes + (int64_t)size > cap && (int64_t)size <= cap) evict_stale_locked(cap - (int64_t)size, c);
    if (cached_bytes + (int64_t)size <= cap) {
        block *blk = p;
        blk->next = buckets[c].head;
        buckets[c].head = blk;
        buckets[c].nblocks++;
        cached_bytes += (int64_t)size;
    } else {
        free(p);
        counts.released++;
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

int vt_alloc_set_cache_limit(int64_t min_bytes, double fraction) {
    if (min_bytes < 0) return vt_fail(VT_EVALUE, "set_cache_limit: min_bytes must be >= 0, got %lld", (long long)min_bytes);
    if (!(fraction >= 0 && fraction <= 1e6)) return vt_fail(VT_EVALUE, "set_cache_limit: fraction must be in [0, 1e6], got %g", fraction);
    pthread_mutex_lock(&lock);
    cache_min_bytes = min_bytes;
    cache_fraction = fraction;
    trim_cache_locked(cache_cap_locked());
    pthread_mutex_unlock(&lock);
    return VT_OK;
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

void vt_alloc_policy(vt_alloc_counts *out, int64_t *max_live, int64_t *cap, int64_t *min_bytes, double *fraction) {
    pthread_mutex_lock(&lock);
    *out = counts;
    out->cached_blocks = 0;
    for (int c = 0; c < VT_NCLASSES; c++) out->cached_blocks += buckets[c].nblocks;
    *max_live = max_live_bytes;
    *cap = cache_cap_locked();
    *min_bytes = cache_min_bytes;
    *fraction = cache_fraction;
    pthread_mutex_unlock(&lock);
}

size_t vt_alloc_block_size(size_t nbytes) {
    size_t size;
    (void)size_class(nbytes, &size);
    return size;
}
