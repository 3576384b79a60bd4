/* vitc ops: 2-d convolution over NCHW float32 tensors (conv2d), forward and backward side by side,
 * with torch.nn.functional semantics; pooling is in conv/pool.c.
 *
 * The kernel for each direction:
 *   stride-1 single-group convs with few output channels: the direct kernel (kernels/conv_direct.c),
 *   forward and dW; strided ones with few output channels: the same over phase images
 *   (kernels/conv_phase.c), forward and dW;
 *   kernel = stride, unpadded, one group, large images' cols, where the phase path does not take
 *   it: a GEMM per image over its patches (conv/patch.c), forward and both gradients (patch_applies
 *   says which and why);
 *   anything else: im2col + GEMM (conv/gemm.c).
 * Backward saves only x and w (PyTorch's convolution_backward): db = Σ_{n,h,w} dY;
 *   dx, stride 1: the transposed convolution, a forward conv of dY with W flipped and its in/out
 *   channels swapped (through whichever forward kernel applies to it, no col2im scatter);
 *   dx of a strided conv the phase path takes, on AVX-512: the transposed conv of each phase
 *   (kernels/conv_phase.c);
 *   dx, otherwise: col2im of W_gᵀ·dY_g (conv/gemm.c). */
#include <limits.h>
#include <omp.h>
#include <string.h>
#include "conv.h"
#include "ops_util.h"
#include "../kernels/conv_direct.h"

/* ---- conv2d geometry ---------------------------------------------------------------------- */

/* check shapes and args (conv2d's row in conv.def) and derive the output size */
static int conv_geometry(int xnd, const int64_t *xs, int wnd, const int64_t *ws, const vt_args *a, conv_geom *g) {
    char b1[128], b2[128];
    if (xnd != 4 || wnd != 4)
        return vt_fail(VT_ESHAPE, "conv2d: expected a 4-d input (N, C, H, W) and a 4-d weight (O, C/groups, kh, kw), got shapes %s and %s",
                       vt_shape_str(xnd, xs, b1, sizeof b1), vt_shape_str(wnd, ws, b2, sizeof b2));
#define A(name) a->i[IARG(conv2d, name)]
    *g = (conv_geom){.N = xs[0], .C = xs[1], .H = xs[2], .W = xs[3], .O = ws[0], .kh = ws[2], .kw = ws[3],
                     .sh = A(stride_h), .sw = A(stride_w), .pt = A(pad_top), .pb = A(pad_bottom), .pl = A(pad_left),
                     .pr = A(pad_right), .dh = A(dilation_h), .dw = A(dilation_w), .G = A(groups)};
#undef A
    const int64_t args[9] = {g->sh, g->sw, g->pt, g->pb, g->pl, g->pr, g->dh, g->dw, g->G};
    for (int k = 0; k < 9; k++)
        if (args[k] > INT_MAX) return vt_fail(VT_EVALUE, "conv2d: argument %lld is too large", (long long)args[k]);
    if (g->sh < 1 || g->sw < 1) return vt_fail(VT_EVALUE, "conv2d: stride must be positive, got (%lld, %lld)", (long long)g->sh, (long long)g->sw);
    if (g->pt < 0 || g->pb < 0 || g->pl < 0 || g->pr < 0) return vt_fail(VT_EVALUE, "conv2d: padding must be non-negative");
    if (g->dh < 1 || g->dw < 1) return vt_fail(VT_EVALUE, "conv2d: dilation must be positive, got (%lld, %lld)", (long long)g->dh, (long long)g->dw);
    if (g->G < 1) return vt_fail(VT_EVALUE, "conv2d: groups must be positive, got %lld", (long long)g->G);
    vt_shape_str(4, xs, b1, sizeof b1);
    vt_shape_str(4, ws, b2, sizeof b2);
    if (g->C % g->G || g->O % g->G)
        return vt_fail(VT_ESHAPE, "conv2d: in_channels %lld and out_channels %lld must both be divisible by groups %lld (input %s, weight %s)",
                       (long long)g->C, (long long)g->O, (long long)g->G, b1, b2);
    if (ws[1] != g->C / g->G)
        return vt_fail(VT_ESHAPE, "conv2d: weight %s expects %lld input channels, input %s has %lld (groups %lld)",
                       b2, (long long)(ws[1] * g->G), b1, (long long)g->C, (long long)g->G);
    if (g->kh < 1 || g->kw < 1) return vt_fail(VT_ESHAPE, "conv2d: weight %s has an empty kernel", b2);
    if (g->C == 0) return vt_fail(VT_ESHAPE, "conv2d: input %s has no channels", b1);
    int64_t ekh = g->dh * (g->kh - 1) + 1, ekw = g->dw * (g->kw - 1) + 1;
    int64_t hp = g->H + g->pt + g->pb, wp = g->W + g->pl + g->pr;
    if (ekh > hp || ekw > wp)
        return vt_fail(VT_ESHAPE, "conv2d: kernel size (%lld, %lld) (after dilation) is larger than the padded input (%lld, %lld) (input %s, weight %s)",
                       (long long)ekh, (long long)ekw, (long long)hp, (long long)wp, b1, b2);
    g->Ho = (hp - ekh) / g->sh + 1;
    g->Wo = (wp - ekw) / g->sw + 1;
    return VT_OK;
}

/* db[o] = Σ_{n,p} gy[n,o,p]; float SIMD sums per row, double across rows */
static void bias_grad(const float *gy, int64_t N, int64_t O, int64_t P, float *db) {
    #pragma omp parallel for if (N * O * P > 65536) schedule(static)
    for (int64_t o = 0; o < O; o++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *r = gy + (n * O + o) * P;
            float s = 0.0f;
            #pragma omp simd reduction(+:s)
            for (int64_t p = 0; p < P; p++) s += r[p];
            acc += s;
        }
        db[o] = (float)acc;
    }
}

/* y = conv(x, w) + b: the direct kernel where it wins (stride 1, one group, few output channels),
 * else im2col + GEMM */
static int direct_applies(const conv_geom *g) {
    return g->sh == 1 && g->sw == 1 && g->G == 1 && vt_k_conv2d_direct_wins(g->O, g->kh, g->kw);
}

static vt_conv_direct_geom direct_geom(const conv_geom *g) {
    return (vt_conv_direct_geom){.N = g->N, .C = g->C, .H = g->H, .W = g->W, .O = g->O, .kh = g->kh, .kw = g->kw,
                                 .pt = g->pt, .pb = g->pb, .pl = g->pl, .pr = g->pr, .dh = g->dh, .dw = g->dw};
}

/* a strided single-group conv with few output channels: the direct kernel over phase images */
static int phase_applies(const conv_geom *g) {
    vt_conv_direct_geom d = direct_geom(g);
    return g->G == 1 && vt_k_conv2d_phase_wins(&d, g->sh, g->sw);
}

/* kernel = stride, unpadded, one group: a GEMM per image over its patches (conv/patch.c), where the
 * phase path does not take it and an image's col (K × P floats, K = C·kh·kw, P = Ho·Wo) has at
 * least PATCH_MIN_COL floats. Measured (2 threads, Zen 4, vitc/torch ratios in one process, base
 * build against this one, alternately): DeiT-Tiny's 3 → 192 16×16/16 conv on 224², batch 32 (col
 * 768 × 196), forward 1.56× and forward + backward 1.45× faster than im2col + GEMM; LV-ViT-S's
 * 64 → 384 8×8/8 projection on 112² (batch 8, col 4096 × 196) forward 1.1-1.2×, forward + backward
 * level. Small cols lose: a 16 → 192 2×2/2 projection on 14² (col 64 × 49; im2col batches ~40 images
 * into one GEMM) ran its forward 1.2× slower, and on AVX2-only machines (VITC_ISA=avx2) LV-ViT's
 * 16 → 64 one ran level. On AVX-512 the phase path (up to 64 outputs) stays: its strided direct kernel
 * runs that projection's 51 MFLOP forward in ~0.28 ms (~185 GFLOP/s, as fast as vitc's GEMMs run
 * here), and the patch GEMMs ran it 2× slower; its dx alone through the patches made forward + backward 1.07× slower.
 * VITC_CONV_PATCH=1 sends every such conv here, 0 none (env_switch: tests, benchmarks; read at each call). */
#define PATCH_MIN_COL 32768

static int patch_applies(const conv_geom *g) {
    if (!vt_conv_patch_applies(g)) return 0;
    int forced = env_switch("VITC_CONV_PATCH", -1);
    if (forced >= 0) return forced;
    return !phase_applies(g) && g->C * g->kh * g->kw * g->Ho * g->Wo >= PATCH_MIN_COL;
}

static int conv_forward_run(const conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    if (patch_applies(g)) return vt_conv_patch_forward(g, x, w, b, y);
    if (direct_applies(g)) {
        vt_conv_direct_geom d = direct_geom(g);
        return vt_k_conv2d_direct(&d, x, w, b, y);
    }
    if (phase_applies(g)) {
        vt_conv_direct_geom d = direct_geom(g);
        return vt_k_conv2d_phase(&d, g->sh, g->sw, x, w, b, y);
    }
    return vt_conv_gemm_forward(g, x, w, b, y);
}

int vt_conv2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0], *w = c->nin > 1 ? c->in[1] : NULL, *b = c->nin > 2 ? c->in[2] : NULL;
    VT_TRY(vt_require_f32(x, "conv2d", "input"));
    VT_TRY(vt_require_f32(w, "conv2d", "weight"));
    if (b) VT_TRY(vt_require_f32(b, "conv2d", "bias"));
    conv_geom g;
    VT_TRY(conv_geometry(x->ndim, x->shape, w->ndim, w->shape, c->args, &g));
    if (b && (b->ndim != 1 || b->shape[0] != g.O)) {
        char b1[128];
        return vt_fail(VT_ESHAPE, "conv2d: bias must have shape (%lld,), got %s", (long long)g.O, vt_shape_str(b->ndim, b->shape, b1, sizeof b1));
    }
    vt_tensor *xc = vt_contiguous(x), *wc = vt_contiguous(w), *bc = b ? vt_contiguous(b) : NULL, *y = NULL;
    int st = VT_OK;
    if (!xc || !wc || (b && !bc)) goto fail;
    if (!(y = vt_empty(VT_FLOAT32, 4, (int64_t[]){g.N, g.O, g.Ho, g.Wo}))) goto fail;
    if ((st = conv_forward_run(&g, vt_f32(xc), vt_f32(wc), bc ? vt_f32(bc) : NULL, vt_f32(y)))) goto fail;
    c->out[0] = y;
    c->nout = 1;
    /* the contiguous copies, so backward does not copy again */
    st = vt_save(c, xc);
    if (!st) st = vt_save(c, wc);
    vt_tensor_decref(xc);
    vt_tensor_decref(wc);
    vt_tensor_decref(bc);
    return st;
fail:
    if (!st) st = vt_last_code();
    vt_tensor_decref(xc);
    vt_tensor_decref(wc);
    vt_tensor_decref(bc);
    vt_tensor_decref(y);
    return st;
}

/* Stride-1 dx as a forward conv of dy with the kernel flipped and in/out channels swapped,
 * W'[g·Cg + c, o, i, j] = W[g·Og + o, c, kh-1-i, kw-1-j], padding d·(k-1) - p per side (the
 * transposed convolution): one GEMM with k = O/g·kh·kw per column and no col2im scatter.
 * Needs every padding <= d·(k-1), else the col2im path runs. */
static int transposed_dx(const conv_geom *g, const float *gy, const float *w, float *dx) {
    int64_t ekh = g->dh * (g->kh - 1), ekw = g->dw * (g->kw - 1), Og = g->O / g->G, Cg = g->C / g->G, kk = g->kh * g->kw;
    size_t bytes = sizeof(float) * (size_t)(g->O * Cg * kk);
    float *wt = vt_alloc(bytes);
    if (!wt) return vt_last_code();
    for (int64_t gi = 0; gi < g->G; gi++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t o = 0; o < Og; o++)
                for (int64_t t = 0; t < kk; t++)
                    wt[((gi * Cg + c) * Og + o) * kk + t] = w[((gi * Og + o) * Cg + c) * kk + kk - 1 - t];
    conv_geom t = {.N = g->N, .C = g->O, .H = g->Ho, .W = g->Wo, .O = g->C, .kh = g->kh, .kw = g->kw, .Ho = g->H,
                   .Wo = g->W, .sh = 1, .sw = 1, .pt = ekh - g->pt, .pb = ekh - g->pb, .pl = ekw - g->pl,
                   .pr = ekw - g->pr, .dh = g->dh, .dw = g->dw, .G = g->G};
    int st = conv_forward_run(&t, gy, wt, NULL, dx);
    vt_free(wt, bytes);
    return st;
}

int vt_conv2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *w = n->saved[1];
    conv_geom g;
    VT_TRY(conv_geometry(x->ndim, x->shape, w->ndim, w->shape, &n->args, &g));
    int need_x = n->needs_input_grad & 1, need_w = n->needs_input_grad >> 1 & 1;
    int need_b = n->nin > 2 && (n->needs_input_grad >> 2 & 1);
    int64_t ekh = g.dh * (g.kh - 1), ekw = g.dw * (g.kw - 1);
    int transposed = g.sh == 1 && g.sw == 1 && g.pt <= ekh && g.pb <= ekh && g.pl <= ekw && g.pr <= ekw;
    vt_tensor *gy = gout[0] ? vt_contiguous(gout[0]) : vt_zeros(VT_FLOAT32, 4, (int64_t[]){g.N, g.O, g.Ho, g.Wo});
    if (!gy) return vt_last_code();
    int st = VT_OK, patch = patch_applies(&g); /* written over whole: no zeroing */
    if (need_x && !(gin[0] = (transposed || patch ? vt_empty : vt_zeros)(VT_FLOAT32, 4, x->shape))) goto fail;
    if (need_w && !(gin[1] = (patch ? vt_empty : vt_zeros)(VT_FLOAT32, 4, w->shape))) goto fail;
    if (need_b && !(gin[2] = vt_empty(VT_FLOAT32, 1, &g.O))) goto fail;
    if (patch && (need_x || need_w)) { /* conv/patch.c */
        if ((st = vt_conv_patch_backward(&g, vt_f32(x), vt_f32(w), vt_f32(gy), need_x ? vt_f32(gin[0]) : NULL,
                                         need_w ? vt_f32(gin[1]) : NULL))) goto fail;
        need_x = need_w = 0;
    }
    if (need_x && transposed && (st = transposed_dx(&g, vt_f32(gy), vt_f32(w), vt_f32(gin[0])))) goto fail;
    if (need_w && direct_applies(&g)) { /* dW from the padded planes, no col (kernels/conv_direct.c) */
        vt_conv_direct_geom d = direct_geom(&g);
        if ((st = vt_k_conv2d_direct_wgrad(&d, vt_f32(x), vt_f32(gy), vt_f32(gin[1])))) goto fail;
        need_w = 0;
    }
    if (need_w && phase_applies(&g)) { /* dW of a strided conv, through phase images (kernels/conv_phase.c) */
        vt_conv_direct_geom d = direct_geom(&g);
        if ((st = vt_k_conv2d_phase_wgrad(&d, g.sh, g.sw, vt_f32(x), vt_f32(gy), vt_f32(gin[1])))) goto fail;
        need_w = 0;
    }
    if (need_x && !transposed && g.G == 1) { /* dx of a strided conv, phase by phase (kernels/conv_phase.c) */
        vt_conv_direct_geom d = direct_geom(&g);
        if (vt_k_conv2d_phase_dgrad_wins(&d, g.sh, g.sw)) {
            if ((st = vt_k_conv2d_phase_dgrad(&d, g.sh, g.sw, vt_f32(w), vt_f32(gy), vt_f32(gin[0])))) goto fail;
            need_x = 0;
        }
    }
    if (need_w || (need_x && !transposed)) {
        float *dx = need_x && !transposed ? vt_f32(gin[0]) : NULL, *dw = need_w ? vt_f32(gin[1]) : NULL;
        if ((st = vt_conv_gemm_backward(&g, vt_f32(x), vt_f32(w), vt_f32(gy), dx, dw))) goto fail;
    }
    if (need_b) bias_grad(vt_f32(gy), g.N, g.O, g.Ho * g.Wo, vt_f32(gin[2]));
    vt_tensor_decref(gy);
    return VT_OK;
fail:
    if (!st) st = vt_last_code();
    vt_tensor_decref(gy);
    return st; /* the engine releases whatever gin[] holds */
}
