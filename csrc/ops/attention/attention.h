/* vitc ops: the per-head attention kernels shared by the attention family (csrc/ops/attention/,
 * kernels.c).
 *
 * One head is the problem  S = q·kᵀ·scale (+mask),  P = softmax_rows(S),  P' = dropout(P),
 * O = P'·v  with q (tq×dh), k (tk×dh), v (tk×dv) given as row pointers with a row stride and unit
 * column stride, so the packed qkv projection (B, T, 3·H·Dh) is read in place (row stride 3·H·Dh).
 * The kernels are small-matrix register-tiled loops (AVX2+FMA or baseline SSE, picked at run time),
 * single threaded: callers parallelise over heads with OpenMP.
 *
 * The work is split into two phases so a step can sit between the softmax and the product with v
 * (DeepViT re-attention, arXiv 2103.11886, mixes the maps of all heads of an image and normalises them):
 *   forward:  vt_attn_probs  (S, mask, softmax -> P)        then  vt_attn_apply  (O = M·v)
 *   backward: vt_attn_apply_backward (dM = dO·vᵀ, dv = Mᵀ·dO)  then  vt_attn_probs_backward
 *             (dS = P⊙(dP − rowsum(dP⊙P)), dq = dS·k·scale, dk = dSᵀ·q·scale)
 * where M is whatever map multiplies v (P, dropout(P), or a head-mixed map). The fused
 * vt_attn_head_forward/backward run both phases per head with the maps kept in thread scratch. */
#ifndef VT_ATTENTION_H
#define VT_ATTENTION_H
#include <stddef.h>
#include <stdint.h>

typedef struct vt_attn_head {
    int64_t tq, tk, dh, dv;      /* query rows, key/value rows, q/k width, v width */
    const float *q, *k, *v;      /* row i at q + i*ldq (unit column stride) */
    int64_t ldq, ldk, ldv;
    float scale;
    /* optional mask on S (i, j) at offset i*ms0 + j*ms1: additive float, or bool keep (0 = -inf);
     * causal masks j > i. At most one of the three is set (the sdpa op checks). */
    const float *mask_add;
    const uint8_t *mask_keep;
    int64_t ms0, ms1;
    int causal;
    /* dropout on P: element (i, j) of this head is counter-RNG element elem0 + i*tk + j */
    float dropout_p;
    uint64_t seed, base, elem0;
    /* optional softmax row statistics, 2·tq floats (row i's max and 1/Σ at 2i, 2i+1): vt_attn_probs
     * writes them to stats_out, or, given stats_in from an earlier vt_attn_probs on the same
     * operands, skips the row reductions and rebuilds the same P bitwise in one pass */
    float *stats_out;
    const float *stats_in;
} vt_attn_head;

/* floats of per-thread scratch the fused head functions need (forward and backward); the phase
 * functions take `scratch` with at least the packing room round_up(max(dh, dv), 8)·round_up(max(tq, tk), 8)
 * (B operands are copied into BLAS-style column strips there) */
int64_t vt_attn_scratch_floats(int64_t tq, int64_t tk, int64_t dh, int64_t dv, int dropout);

/* P (tq×tk, ldp) = softmax(q·kᵀ·scale + mask), pre-dropout; a fully masked row gives zeros
 * (PyTorch's sdpa). ldp >= round_up(tk, 8) and p padded to that width (the pad is scratch). */
void vt_attn_probs(const vt_attn_head *h, float *p, int64_t ldp, float *scratch);
/* o (tq×dv, ldo) = m (tq×tk, ldm) · v */
void vt_attn_apply(const vt_attn_head *h, const float *m, int64_t ldm, float *o, int64_t ldo, float *scratch);
/* dm (tq×tk, lddm >= round_up(tk, 8)) = dout·vᵀ; dv (tk×dv) = mᵀ·dout unless dv is NULL */
void vt_attn_apply_backward(const vt_attn_head *h, const float *m, int64_t ldm, const float *dout,
                            int64_t lddo, float *dm, int64_t lddm, float *dv, int64_t lddv, float *scratch);
/* in place dp -> dS = P⊙(dp − rowsum(dp⊙P)); dq = dS·k·scale, dk = dSᵀ·q·scale (either NULL to skip) */
void vt_attn_probs_backward(const vt_attn_head *h, const float *p, int64_t ldp, float *dp, int64_t lddp,
                            float *dq, int64_t lddq, float *dk, int64_t lddk, float *scratch);
/* dropout multipliers of row i (0 or 1/(1−p)) into mult[0..tk) */
void vt_attn_dropout_row(const vt_attn_head *h, int64_t i, float *mult);

/* fused: o = dropout(P)·v, P (pre-dropout) copied to p (tq×tk, ldp) unless p is NULL */
void vt_attn_head_forward(const vt_attn_head *h, float *o, int64_t ldo, float *p, int64_t ldp, float *scratch);
/* fused backward from dout (NULL = zeros) and gp (gradient on the returned P, or NULL), with P the
 * saved pre-dropout map; dmask (tq×tk, lddm) receives dS when not NULL; dq/dk/dv may be NULL; o
 * (tq×dv, ldo), when not NULL, receives the forward's output dropout(P)·v again, bitwise. */
void vt_attn_head_backward(const vt_attn_head *h, const float *dout, int64_t lddo, const float *p, int64_t ldp,
                           const float *gp, int64_t ldgp, float *dq, int64_t lddq, float *dk, int64_t lddk,
                           float *dv, int64_t lddv, float *dmask, int64_t lddm, float *o, int64_t ldo, float *scratch);

/* n rounded up to a multiple of 8 (a kernel row's padded width) */
static inline int64_t pad8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* floats of B-operand packing room the phase functions need: kᵀ or vᵀ (w × tkp), or a copy of
 * q, k, v or dout (rows × w) */
static inline int64_t pack_floats(int64_t tq, int64_t tk, int64_t dh, int64_t dv) {
    int64_t w = pad8(dh > dv ? dh : dv), r = pad8(tq > tk ? tq : tk);
    return w * r;
}

/* the ISA variant of the register-tiled kernels under the phase functions, picked once at run time
 * (AVX2+FMA or baseline SSE); re-attention calls them directly for its head mixing */
typedef struct {
    void (*gemm)(int64_t m, int64_t n, int64_t kd, float alpha, const float *a, int64_t sar, int64_t sak,
                 const float *b, int64_t ldb, int bpacked, float *pk, float *c, int64_t ldc);
    void (*pack_bt)(int64_t rows, int64_t kd, const float *src, int64_t lds, int64_t np, float *dst);
    void (*softmax_rows)(float *s, int64_t rows, int64_t n, int64_t ld, float *stats);
    void (*softmax_known_rows)(float *s, int64_t rows, int64_t n, int64_t ld, const float *stats);
    void (*dsoftmax_rows)(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n);
    /* optional (NULL): P (tq × pad8(tk)) = softmax(alpha·q·kᵀ), kᵀ packed by pack_bt, no mask, in one
     * pass with the bits of gemm + softmax_rows (or softmax_known_rows with stats_in); 0 when the
     * shape does not suit it (nothing done) */
    int (*probs_fused)(int64_t tq, int64_t tk, int64_t kd, float alpha, const float *q, int64_t ldq, const float *bp,
                       float *p, int64_t ldp, float *stats_out, const float *stats_in);
    /* optional (NULL): ds (tq × pad8(tk)) = P⊙(dP − rowsum(dP⊙P)), dP = dout·vᵀ with vᵀ packed by pack_bt,
     * in one pass with the bits of gemm + dsoftmax_rows; 0 when the shape does not suit it */
    int (*dscores_fused)(int64_t tq, int64_t tk, int64_t kd, const float *dout, int64_t lddo, const float *bp,
                         const float *p, int64_t ldp, float *ds, int64_t ldds);
} attn_kernels;
/* the key counts the fused kernels take: rows of 2 to 8 vectors, held in registers */
static inline int vt_attn_fused_keys(int64_t tk) { return tk > 8 && tk <= 64; }
const attn_kernels *vt_attn_kernels(void);
/* the AVX-512 row kernels (kernels512.c), entries of the table above on CPUs that have it */
void vt_attn_softmax_rows_avx512(float *s, int64_t rows, int64_t n, int64_t ld, float *stats);
void vt_attn_softmax_known_rows_avx512(float *s, int64_t rows, int64_t n, int64_t ld, const float *stats);
void vt_attn_dsoftmax_rows_avx512(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n);
int vt_attn_probs_fused_avx512(int64_t tq, int64_t tk, int64_t kd, float alpha, const float *q, int64_t ldq,
                               const float *bp, float *p, int64_t ldp, float *stats_out, const float *stats_in);
int vt_attn_dscores_fused_avx512(int64_t tq, int64_t tk, int64_t kd, const float *dout, int64_t lddo, const float *bp,
                                 const float *p, int64_t ldp, float *ds, int64_t ldds);

#endif
