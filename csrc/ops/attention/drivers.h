/* vitc ops, attention (private to csrc/ops/attention/): what the ops' drivers share. Every op here
 * runs heads or whole images in parallel with OpenMP, one scratch block per thread: the thread
 * count, scratch and small view helpers below serve all of them. The packed multi-head attention
 * driver (packed.c: forward and backward on the (B, T, 3·H·Dh) projection, staged per image where
 * that fits L2) serves attention and qkv_attention (mha.c). */
#ifndef VT_ATTENTION_DRIVERS_H
#define VT_ATTENTION_DRIVERS_H
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "../ops_util.h"
#include "attention.h"

/* ---- threads and scratch -------------------------------------------------------------------- */

typedef struct { float *buf; size_t bytes; int64_t per; } scratch_set;

static inline int scratch_alloc(scratch_set *s, int64_t per, int nthreads) {
    s->per = per;
    s->bytes = sizeof(float) * (size_t)per * (size_t)nthreads;
    s->buf = vt_alloc(s->bytes);
    return s->buf ? VT_OK : vt_last_code();
}

static inline void scratch_free(scratch_set *s) {
    if (s->buf) vt_free(s->buf, s->bytes);
    s->buf = NULL;
}

static inline float *scratch_mine(const scratch_set *s) { return s->buf + s->per * omp_get_thread_num(); }

/* threads for `heads` heads of `flops` multiply-adds in all */
static inline int team_size(int64_t heads, int64_t flops) {
    int nt = omp_get_max_threads();
    if (flops < 65536 || heads < 2) return 1;
    return heads < nt ? (int)heads : nt;
}

/* heads are handed out in chunks (about 16 per thread), not statically: on a busy machine a thread
 * that loses its core would otherwise hold up the whole op. Each head's arithmetic is the same
 * whichever thread runs it, so results stay bitwise identical. */
static inline int64_t chunk_size(int64_t heads, int nt) {
    int64_t c = heads / (16 * (int64_t)nt);
    return c > 0 ? c : 1;
}

/* pull the next head's rows toward L1 while this one computes: heads are Dh-wide column blocks of
 * rows 3·H·Dh floats apart, a pattern the hardware prefetchers do not follow */
static inline void prefetch_rows(const float *p, int64_t rows, int64_t width, int64_t ld) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width; c += 16) __builtin_prefetch(p + r * ld + c, 0, 1); /* prefetcht2: measured best here */
}

static inline vt_tensor *rng_state(uint64_t seed, uint64_t base) {
    vt_tensor *r = vt_empty(VT_INT64, 1, (int64_t[]){2});
    if (r) { vt_i64(r)[0] = (int64_t)seed; vt_i64(r)[1] = (int64_t)base; }
    return r;
}

/* a view whose last dim has unit stride (the kernels' one layout requirement), as a new ref */
static inline vt_tensor *unit_last(vt_tensor *t) {
    if (t->ndim == 0 || t->strides[t->ndim - 1] == 1 || t->shape[t->ndim - 1] <= 1) {
        vt_tensor_incref(t);
        return t;
    }
    return vt_clone(t);
}

static inline int check_dropout(const char *who, double p) {
    if (!(p >= 0.0 && p <= 1.0)) return vt_fail(VT_EVALUE, "%s: dropout_p must be in [0, 1], got %g", who, p);
    return VT_OK;
}

/* ---- memory switches ------------------------------------------------------------------------ */

/* VITC_ATTN_RECOMPUTE=1: the attention ops (attention, qkv_attention, scaled_dot_product_attention)
 * do not keep the (..., L, S) softmax maps for backward but recompute each head's map there from
 * the saved q and k with the forward's own kernels, so the gradients are bitwise the same. The
 * packed ops keep each row's max and 1/Σ (2 floats a row) and rebuild P in one exp pass
 * (vt_attn_probs with stats_in); the cost is one more q·kᵀ and that pass per head in backward.
 * DeiT-Tiny at batch 32 keeps 12 × 14.9 MB of maps otherwise. VITC_ATTN_RECOMPUTE=0 keeps them.
 * Unset (or empty), the default: recompute where a head's map (L·S floats) is at least as large as
 * the q and k rows it is rebuilt from ((L + S)·E floats), i.e. T ≥ 2·Dh for self-attention: DeiT-Tiny
 * (T 197, Dh 64) and LV-ViT-Tiny-MNIST (T 50, Dh 16) drop their maps, the seed ViT (T 17, Dh 64),
 * whose maps are small (0.9 MB a layer) and whose step the recompute slows by 3 % (bench/ab.py
 * --model seed, =0 against =1), keeps them; DeiT-Tiny's step: 0.996 and 1.009 against main's
 * kept maps (two runs, bench/ab.py --model deit, noise ±5 %). Read at every
 * forward (getenv), so tests and benches can flip it in-process. */
static inline int attn_recompute_maps(int64_t L, int64_t S, int64_t E) {
    const char *e = getenv("VITC_ATTN_RECOMPUTE");
    if (e && e[0]) return strcmp(e, "0") != 0;
    return L * S > 0 && L * S >= (L + S) * E;
}

/* VITC_QKV_RECOMPUTE=1: qkv_attention does not keep its (B, T, 3·H·Dh) projection nor its attention
 * output (B, T, H·Dh, before the output projection) for backward but recomputes them there from the
 * input and weights it keeps anyway, the way its forward computed them (same plan, same kernels:
 * bitwise the same, unless vitc.set_num_threads changed between the two and with it the plan); the
 * cost is the qkv GEMM and each head's map·v once more in backward. */
static inline int qkv_recompute(void) { return env_switch("VITC_QKV_RECOMPUTE", 0); }

/* ---- the packed multi-head attention driver (packed.c) ------------------------------------- */

/* how a forward runs: threads, whether whole images are staged (by_image), scratch per thread */
typedef struct { int nt, staged; int64_t sq, per; } fwd_plan;

fwd_plan vt_attn_forward_plan(int64_t B, int64_t T, int64_t H, int64_t Dh, double p);

/* qkv_attention's projection, fused into the staged forward: each image's qkv rows are computed
 * straight into the thread's staging buffer (x_b·Wᵀ + bias against Wᵀ packed once for all
 * images), then streamed to the saved qkv tensor when a backward will need it. The projection's
 * 3·H·Dh-wide output is never written and read back through memory before attention. */
typedef struct { const float *x; int64_t sbx, ldx; vt_gemm_panel wt; const float *bias; } qkv_proj;

/* qkv_attention's optional output projection y = out·W_oᵀ + b_o, fused into the staged forward:
 * the image's heads write into scratch (T × H·Dh), y_b is computed from there, and the attention
 * output is streamed to its saved tensor (ao, for W_o's gradient) when a backward needs it. */
typedef struct { vt_gemm_panel wt; const float *bias; int64_t Do; } out_proj;

/* VITC_ATTN_RECOMPUTE=2: as 1, and qkv_attention with its output projection does not keep the
 * attention output (B, T, H·Dh) for W_o's gradient either but rebuilds it in backward from the
 * rebuilt maps and v (map·v once more per head, the forward's kernel: bitwise the same). DeiT-Tiny
 * at batch 32 keeps 12 × 4.8 MB of attention outputs otherwise. */
static inline int attn_recompute_out(void) {
    const char *e = getenv("VITC_ATTN_RECOMPUTE");
    return e && strcmp(e, "2") == 0;
}

/* drop_out: qkv_attention keeps no attention output (VITC_QKV_RECOMPUTE or attn_recompute_out())
 * recompute_from: NULL, or what qkv_attention saves in qkv's slot when it recomputes qkv in
 * backward (its bias, or its weight without one: 1-d or 2-d, so never mistaken for qkv) */
typedef struct { int64_t B, T, H, Dh; double scale, p; int need_weights, drop_out; vt_tensor *recompute_from; } attn_geom;

/* qkv (B, T, 3·H·Dh): q, k, v are the three consecutive H·Dh chunks of the last dim, head h owns
 * channels [h·Dh, (h+1)·Dh) of each. Saves qkv, A (B, H, T, T) and the dropout draws; with
 * attn_recompute_maps() and no returned map, A's slot holds the softmax row statistics (B·H·T, 2)
 * instead (2-d: the backward recomputes the maps from them). With pj
 * (staged plans only) qkv is an empty tensor filled here, or NULL when nothing is saved. With po
 * (staged plans only) the output is y and *ao the attention output to save (NULL without save). */
int vt_attn_packed_forward(vt_ctx *c, vt_tensor *qkv, qkv_proj *pj, out_proj *po, const fwd_plan *pl,
                           const attn_geom *ag, vt_tensor **ao);

/* qkv_attention's input gradient dx = dqkv·W, computed per image from the staged dqkv rows while
 * they are in L2 (staged plans only): W (3·H·Dh × D, contiguous) in, *dx a new (B, T, D) tensor out,
 * left NULL when the plan did not stage (the caller then takes dx from dqkv in memory). Only
 * where vt_k_gemm would take the own kernel for dqkv·W, whose bits the panel reproduces */
typedef struct { const float *w; int64_t D; vt_tensor *dx; } in_grad;

/* the backward of vt_attn_packed_forward into one packed dqkv (B, T, 3·H·Dh) (*dx_out); with wo,
 * gout[0] is the gradient of qkv_attention's projected output y = out·W_oᵀ + b_o; ao, when not
 * NULL (B, T, H·Dh), receives the forward's attention output again (qkv_attention did not keep it) */
int vt_attn_packed_backward(vt_node *n, vt_tensor *x, vt_tensor *A, vt_tensor *rng, vt_tensor **gout,
                            const vt_tensor *wo, in_grad *ig, vt_tensor *ao, vt_tensor **dx_out);

/* attention and qkv_attention keep their common arguments in the same slots, read through
 * attention's names by the code both share */
VT_SAME_IARG(attention, qkv_attention, heads);
VT_SAME_IARG(attention, qkv_attention, need_weights);
VT_SAME_IARG(attention, qkv_attention, default_scale);
VT_SAME_FARG(attention, qkv_attention, scale);
VT_SAME_FARG(attention, qkv_attention, dropout_p);
#define ATTN_I(a, name) ((a)->i[IARG(attention, name)])
#define ATTN_F(a, name) ((a)->f[FARG(attention, name)])
/* the scale: Dh^-1/2 when default_scale, else the given one */
#define ATTN_SCALE(a, Dh) (ATTN_I(a, default_scale) ? 1.0 / sqrt((double)(Dh)) : ATTN_F(a, scale))

#endif
