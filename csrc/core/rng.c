#include <math.h>
#include <pthread.h>
#include "rng.h"

static uint64_t g_seed = 0x5eed, g_offset = 0;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void vt_rng_seed(uint64_t seed) { vt_rng_set_state(seed, 0); }
/* every read and write of (seed, offset) holds g_lock, so a reader never sees half of a set_state */
void vt_rng_get_state(uint64_t *seed, uint64_t *offset) {
    pthread_mutex_lock(&g_lock);
    *seed = g_seed;
    *offset = g_offset;
    pthread_mutex_unlock(&g_lock);
}
uint64_t vt_rng_get_seed(void) { uint64_t s, o; vt_rng_get_state(&s, &o); return s; }
uint64_t vt_rng_get_offset(void) { uint64_t s, o; vt_rng_get_state(&s, &o); return o; }
void vt_rng_set_state(uint64_t seed, uint64_t offset) {
    pthread_mutex_lock(&g_lock);
    g_seed = seed;
    g_offset = offset;
    pthread_mutex_unlock(&g_lock);
}
uint64_t vt_rng_reserve_seeded(uint64_t n, uint64_t *seed) {
    pthread_mutex_lock(&g_lock);
    uint64_t base = g_offset;
    *seed = g_seed;
    g_offset += n;
    pthread_mutex_unlock(&g_lock);
    return base;
}
uint64_t vt_rng_reserve(uint64_t n) { uint64_t seed; return vt_rng_reserve_seeded(n, &seed); }

/* Philox4x32 round constants (Salmon et al. 2011, Table 2 / Random123) */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void vt_philox(uint64_t seed, uint64_t c, uint32_t out[4]) {
    uint32_t x0 = (uint32_t)c, x1 = (uint32_t)(c >> 32), x2 = 0, x3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * x0, p1 = (uint64_t)PHILOX_M1 * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0, y1 = (uint32_t)p1;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1, y3 = (uint32_t)p0;
        x0 = y0; x1 = y1; x2 = y2; x3 = y3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
}

float vt_rng_uniform(uint64_t seed, uint64_t base, uint64_t i) {
    uint32_t w[4];
    vt_philox(seed, base + i, w);
    return (float)(w[0] >> 8) * (1.0f / 16777216.0f); /* 24 random bits: exactly representable */
}

float vt_rng_normal(uint64_t seed, uint64_t base, uint64_t i) {
    uint32_t w[4];
    vt_philox(seed, base + i, w);
    double u1 = ((double)(w[0] >> 8) + 1.0) / 16777217.0; /* (0,1]: log is finite */
    double u2 = (double)(w[1] >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void vt_rng_fill(float *p, int64_t n, int normal) {
    uint64_t seed, base = vt_rng_reserve_seeded((uint64_t)n, &seed);
    #pragma omp parallel for if (n > 16384) schedule(static)
    for (int64_t i = 0; i < n; i++)
        p[i] = normal ? vt_rng_normal(seed, base, (uint64_t)i) : vt_rng_uniform(seed, base, (uint64_t)i);
}
