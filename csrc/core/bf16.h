/* vitc core: bfloat16 as a storage dtype (the high 16 bits of an IEEE float32).
 * Conversions follow torch.bfloat16 (c10/util/BFloat16.h) bit for bit: float32 -> bfloat16 rounds
 * to nearest, ties to even (bits += 0x7FFF + lsb, keep the high half; a carry into the exponent
 * gives the next binade or ±inf, which is the correct overflow); every NaN becomes the quiet NaN
 * 0x7FC0 (the sign and payload are dropped). bfloat16 -> float32 is exact (bits << 16). */
#ifndef VT_BF16_H
#define VT_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t vt_f32_to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0; /* NaN */
    b += 0x7FFFu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

static inline float vt_bf16_to_f32(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

#endif
