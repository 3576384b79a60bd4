/* vitc kernels: a + b, a ⊙ b and a·s over broadcast float32 operands. Each element is one IEEE
 * operation, so the bits equal those of the elementwise ops add, mul and mul_scalar. */
#include "arith.h"
#include "map.h"
#include "../core/simd.h"

enum { ADD, MUL, SCALE };
typedef struct { int kind; float s; } arith_ctx;

VT_SIMD_CLONES static void arith_row(int64_t n, char **p, const int64_t *st, void *vctx) {
    const arith_ctx *k = vctx;
    float *o = (float *)p[0];
    const float *a = (const float *)p[1], *b = k->kind == SCALE ? a : (const float *)p[2];
    int64_t so = st[0] / 4, sa = st[1] / 4, sb = k->kind == SCALE ? sa : st[2] / 4;
    const float s = k->s;
    if (so == 1 && sa == 1 && sb == 1) /* the usual case, as one vectorized loop */
        switch (k->kind) {
        case ADD: for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i]; break;
        case MUL: for (int64_t i = 0; i < n; i++) o[i] = a[i] * b[i]; break;
        case SCALE: for (int64_t i = 0; i < n; i++) o[i] = a[i] * s; break;
        }
    else
        switch (k->kind) {
        case ADD: for (int64_t i = 0; i < n; i++) o[i * so] = a[i * sa] + b[i * sb]; break;
        case MUL: for (int64_t i = 0; i < n; i++) o[i * so] = a[i * sa] * b[i * sb]; break;
        case SCALE: for (int64_t i = 0; i < n; i++) o[i * so] = a[i * sa] * s; break;
        }
}

static vt_tensor *arith(const char *who, int kind, float s, const vt_tensor *a, const vt_tensor *b) {
    arith_ctx k = {kind, s};
    const vt_tensor *in[2] = {a, b};
    return vt_map(who, VT_FLOAT32, b ? 2 : 1, in, arith_row, &k);
}

vt_tensor *vt_k_add(const vt_tensor *a, const vt_tensor *b) { return arith("add", ADD, 0, a, b); }
vt_tensor *vt_k_mul(const vt_tensor *a, const vt_tensor *b) { return arith("mul", MUL, 0, a, b); }
vt_tensor *vt_k_scale(const vt_tensor *a, float s) { return arith("mul", SCALE, s, a, NULL); }
