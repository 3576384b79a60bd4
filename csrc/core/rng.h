/* vitc core: the counter-based random number generator.
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): the
 * value at counter c under key (seed) is a pure function of (seed, c), so element i of a random
 * op draws from counter (offset + i) whatever thread computes it. Each random op reserves a
 * block of counters from the global generator (seed, offset), making runs with the same seed
 * bitwise identical for any thread count or schedule. */
#ifndef VT_RNG_H
#define VT_RNG_H
#include <stdint.h>

void vt_rng_seed(uint64_t seed);
uint64_t vt_rng_get_seed(void);
uint64_t vt_rng_get_offset(void);
void vt_rng_get_state(uint64_t *seed, uint64_t *offset); /* both read under one lock */
void vt_rng_set_state(uint64_t seed, uint64_t offset);
/* reserve n counters; returns the first. Thread safe. */
uint64_t vt_rng_reserve(uint64_t n);
/* reserve n counters and read the seed they belong to under the same lock: a set_state from
 * another thread can never pair the old seed with the new offset (use this, not get_seed + reserve) */
uint64_t vt_rng_reserve_seeded(uint64_t n, uint64_t *seed);

/* four 32-bit words for counter c */
void vt_philox(uint64_t seed, uint64_t c, uint32_t out[4]);
/* uniform [0,1) float for element i of a block starting at counter base */
float vt_rng_uniform(uint64_t seed, uint64_t base, uint64_t i);
/* standard normal for element i (Box-Muller on two words of counter base+i) */
float vt_rng_normal(uint64_t seed, uint64_t base, uint64_t i);

/* fill p[0..n) from the global generator: normal != 0 gives N(0,1), else U[0,1) */
void vt_rng_fill(float *p, int64_t n, int normal);

#endif
