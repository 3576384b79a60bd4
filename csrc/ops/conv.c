/* vitc ops: 2-d convolution and pooling over NCHW float32 tensors, forward and backward side by
 * side, with torch.nn.functional semantics (output sizes, padding rules, argmax tie-breaking).
 *
 * conv2d = im2col + GEMM. col (C·kh·kw, columns) holds the input pixel each kernel tap sees at
 * each output position (0 in the padding); group g's output is W_g (O/g, K_g) · col_g, K_g =
 * C/g·kh·kw, through cblas_sgemm. Work is cut into pieces (conv_job): a block of output rows of
 * one image, sized so its col stays in cache between im2col and the GEMM, or, for small images,
 * a chunk of images batched into one GEMM whose (O, nb·P) result is scattered to NCHW. A 1×1
 * stride-1 unpadded conv needs no col: the image is its own col.
 * Backward saves only x and w and rebuilds col (PyTorch's convolution_backward):
 *   dW_g = Σ_pieces dY_g·col_gᵀ;  db = Σ_{n,h,w} dY;
 *   dx, stride 1: the transposed convolution, a forward conv of dY with W flipped and its in/out
 *   channels swapped (one GEMM with a long inner dimension, no scatter);
 *   dx, otherwise: dcol_g = W_gᵀ·dY_g, then col2im adds each col entry back onto its pixel.
 * Stride-1 single-group convs with few output channels skip col altogether (kernels/conv_direct.c):
 * their forward, their dx (the transposed conv) when it has few output channels too, and their dW;
 * strided ones with few output channels run it over phase images (kernels/conv_phase.c), forward and dW.
 * Threads: see conv_run. Pools are OpenMP loops over H×W planes. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "ops_util.h"
#include "../kernels/conv_direct.h"

#define BLAS_SINGLE_MNK 262144.0  /* OpenBLAS: SMP_THRESHOLD_MIN · GEMM_MULTITHREAD_THRESHOLD */
#define CONV_MIN_COLS 2048        /* batch images until a GEMM has this many columns ... */
#define CONV_MAX_COL (8 << 20)    /* ... while col stays under this many floats (32 MB) */
#define CONV_BLOCK (256 << 10)    /* one image's col is built in blocks of about this many floats */
#define CONV_MIN_BLOCK_COLS 512   /* but at least this many columns, for the GEMM's sake */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- conv2d geometry ---------------------------------------------------------------------- */

typedef struct {
    int64_t N, C, H, W, O, kh, kw, Ho, Wo;
    int64_t sh, sw, pt, pb, pl, pr, dh, dw, G;
} conv_geom;

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

/* output positions [*lo, *hi) of a row whose input column iw0 + ow·s lies in [0, W) */
static void valid_range(int64_t iw0, int64_t s, int64_t W, int64_t Wo, int64_t *lo, int64_t *hi) {
    int64_t l = iw0 >= 0 ? 0 : (-iw0 + s - 1) / s;
    int64_t h = iw0 <= W - 1 ? (W - 1 - iw0) / s + 1 : 0;
    l = min64(l, Wo);
    h = min64(h, Wo);
    *lo = l;
    *hi = h > l ? h : l;
}

/* row r = (c, ki, kj) of col for image x (C,H,W), output rows [oh0, oh1), into dst */
static void im2col_row(const conv_geom *g, const float *x, int64_t r, int64_t oh0, int64_t oh1, float *dst) {
    int64_t kk = g->kh * g->kw, c = r / kk, ki = r % kk / g->kw, kj = r % g->kw;
    const float *xc = x + c * g->H * g->W;
    int64_t lo, hi, iw0 = kj * g->dw - g->pl;
    valid_range(iw0, g->sw, g->W, g->Wo, &lo, &hi);
    for (int64_t oh = oh0; oh < oh1; oh++, dst += g->Wo) {
        int64_t ih = oh * g->sh - g->pt + ki * g->dh;
        if (ih < 0 || ih >= g->H) { memset(dst, 0, sizeof(float) * (size_t)g->Wo); continue; }
        const float *src = xc + ih * g->W + iw0;
        for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
        if (g->sw == 1) memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
        else if (g->sw == 2) for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow];
        else for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->sw];
        for (int64_t ow = hi; ow < g->Wo; ow++) dst[ow] = 0.0f;
    }
}

/* col (C·kh·kw, m·Pb) for images x[0..m) (each C·H·W) and output rows [oh0, oh1), Pb = their
 * count·Wo; OpenMP over col rows when `par` */
static void im2col(const conv_geom *g, const float *x, int64_t m, int64_t oh0, int64_t oh1, float *col, int par) {
    int64_t K = g->C * g->kh * g->kw, Pb = (oh1 - oh0) * g->Wo, L = m * Pb, rows = m * K;
    #pragma omp parallel for if (par && rows * Pb > 32768) schedule(static)
    for (int64_t t = 0; t < rows; t++) {
        int64_t j = t / K, r = t % K;
        im2col_row(g, x + j * g->C * g->H * g->W, r, oh0, oh1, col + r * L + j * Pb);
    }
}

/* dx[0..m) (each C·H·W) += col2im(dcol) for the col im2col(…, oh0, oh1) makes; one task per
 * (image, channel) plane, so no two tasks add into the same pixel */
static void col2im_add(const conv_geom *g, const float *dcol, int64_t m, int64_t oh0, int64_t oh1, float *dx, int par) {
    int64_t kk = g->kh * g->kw, Pb = (oh1 - oh0) * g->Wo, L = m * Pb, planes = m * g->C;
    #pragma omp parallel for if (par && planes * kk * Pb > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) {
        int64_t j = t / g->C, c = t % g->C;
        float *xc = dx + (j * g->C + c) * g->H * g->W;
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const float *src = dcol + (c * kk + ki * g->kw + kj) * L + j * Pb;
                int64_t lo, hi, iw0 = kj * g->dw - g->pl;
                valid_range(iw0, g->sw, g->W, g->Wo, &lo, &hi);
                for (int64_t oh = oh0; oh < oh1; oh++, src += g->Wo) {
                    int64_t ih = oh * g->sh - g->pt + ki * g->dh;
                    if (ih < 0 || ih >= g->H) continue;
                    float *d = xc + ih * g->W + iw0;
                    if (g->sw == 1) for (int64_t ow = lo; ow < hi; ow++) d[ow] += src[ow];
                    else for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sw] += src[ow];
                }
            }
    }
}

/* per-group GEMMs c_g = op(a_g)·op(b_g) (+ beta·c_g), a_g = a + g·ga etc. With `par`, groups too
 * small for OpenBLAS to thread run in an OpenMP loop: OpenBLAS runs a GEMM with
 * m·n·k <= 65536·4 on the calling thread (interface/gemm.c), so concurrent calls stay apart. */
typedef struct {
    int ta, tb;
    int64_t m, n, k;
    const float *a; int64_t lda, ga;
    const float *b; int64_t ldb, gb;
    float beta;
    float *c; int64_t ldc, gc;
} group_gemm;

static int run_group_gemm(const group_gemm *q, int64_t G, int par) {
    int small = par && G > 1 && (double)q->m * (double)q->n * (double)q->k <= BLAS_SINGLE_MNK;
    int st = VT_OK;
    #pragma omp parallel for if (small) schedule(static) reduction(|:st)
    for (int64_t gi = 0; gi < G; gi++)
        st |= vt_k_gemm(q->ta, q->tb, q->m, q->n, q->k, 1.0f, q->a + gi * q->ga, q->lda, q->b + gi * q->gb, q->ldb,
                        q->beta, q->c + gi * q->gc, q->ldc);
    return st;
}

/* One conv2d call's work as pieces: a chunk of nb images (the last may be shorter) when images
 * are small, else one image's block of rb output rows, sized so its col (K, rb·Wo) stays in the
 * core's cache between im2col and the GEMM that reads it. */
typedef struct {
    const conv_geom *g;
    int64_t P, K, Og, Kg, CHW;
    int64_t nb, nchunks;  /* images per chunk, chunks */
    int64_t rb, nblk;     /* output rows per piece, pieces per chunk (nb = 1 only; else rb = Ho) */
    int pointwise;        /* 1×1, stride 1, no padding, nb = 1: an image is its own col */
    const float *x, *w, *b, *gy;
    float *y, *dx;        /* forward output / input gradient (NULL: not wanted) */
} conv_job;

static void conv_plan(const conv_geom *g, conv_job *j) {
    int64_t K = g->C * g->kh * g->kw, P = g->Ho * g->Wo;
    int64_t nb = P >= CONV_MIN_COLS ? 1 : (CONV_MIN_COLS + P - 1) / P;
    nb = max64(1, min64(nb, min64(g->N, CONV_MAX_COL / max64(K * P, 1))));
    int64_t rb = g->Ho;
    if (nb == 1) {
        rb = max64((CONV_BLOCK + K * g->Wo - 1) / (K * g->Wo), (CONV_MIN_BLOCK_COLS + g->Wo - 1) / g->Wo);
        rb = min64(rb, g->Ho);
    }
    *j = (conv_job){.g = g, .P = P, .K = K, .Og = g->O / g->G, .Kg = K / g->G, .CHW = g->C * g->H * g->W,
                    .nb = nb, .nchunks = (g->N + nb - 1) / nb, .rb = rb, .nblk = (g->Ho + rb - 1) / rb};
    j->pointwise = nb == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && !(g->pt | g->pb | g->pl | g->pr);
}

/* images [n0, n0+m), output rows [oh0, oh1) of piece p; Pb = columns per image */
static void piece_range(const conv_job *j, int64_t p, int64_t *n0, int64_t *m, int64_t *oh0, int64_t *oh1) {
    int64_t ch = p / j->nblk, blk = p % j->nblk;
    *n0 = ch * j->nb;
    *m = min64(j->nb, j->g->N - *n0);
    *oh0 = blk * j->rb;
    *oh1 = min64(*oh0 + j->rb, j->g->Ho);
}

/* y of piece p: im2col, per-group GEMM (into y directly for one image, else into tmp), bias */
static int piece_forward(const conv_job *j, int64_t p, float *col, float *tmp, int par) {
    const conv_geom *g = j->g;
    int64_t n0, m, oh0, oh1;
    piece_range(j, p, &n0, &m, &oh0, &oh1);
    int64_t P = j->P, Pb = (oh1 - oh0) * g->Wo, L = m * Pb;
    const float *src = j->x + n0 * j->CHW + oh0 * g->Wo, *b = j->b;
    int64_t sld = P; /* a pointwise conv reads its columns straight from the image */
    if (!j->pointwise) { im2col(g, j->x + n0 * j->CHW, m, oh0, oh1, col, par); src = col; sld = L; }
    float *out = j->nb == 1 ? j->y + n0 * g->O * P + oh0 * g->Wo : tmp;
    int64_t old = j->nb == 1 ? P : L;
    group_gemm q = {0, 0, j->Og, L, j->Kg, j->w, j->Kg, j->Og * j->Kg, src, sld, j->Kg * sld, 0.0f, out, old, j->Og * old};
    VT_TRY(run_group_gemm(&q, g->G, par));
    if (out == tmp) { /* (O, m, P) -> (m, O, P), adding the bias on the way */
        #pragma omp parallel for if (par && g->O * L > 32768) schedule(static)
        for (int64_t t = 0; t < m * g->O; t++) {
            int64_t jj = t / g->O, o = t % g->O;
            const float *s = tmp + o * L + jj * P;
            float *d = j->y + (n0 + jj) * g->O * P + o * P, bo = b ? b[o] : 0.0f;
            for (int64_t i = 0; i < P; i++) d[i] = s[i] + bo;
        }
    } else if (b) {
        #pragma omp parallel for if (par && g->O * L > 32768) schedule(static)
        for (int64_t o = 0; o < g->O; o++) {
            float *d = out + o * P, bo = b[o];
            for (int64_t i = 0; i < L; i++) d[i] += bo;
        }
    }
    return VT_OK;
}

/* piece p's share of dW (added into dw) and of dx (col2im adds into it; dx arrives zeroed) */
static int piece_backward(const conv_job *j, int64_t p, float *col, float *tmp, float *dw, int par) {
    const conv_geom *g = j->g;
    int64_t n0, m, oh0, oh1;
    piece_range(j, p, &n0, &m, &oh0, &oh1);
    int64_t P = j->P, Pb = (oh1 - oh0) * g->Wo, L = m * Pb, Og = j->Og, Kg = j->Kg;
    const float *gsrc = j->gy + n0 * g->O * P + oh0 * g->Wo;
    int64_t gld = P;
    if (j->nb > 1) { /* (m, O, P) -> (O, m, P): one GEMM operand for the chunk */
        #pragma omp parallel for if (par && g->O * L > 32768) schedule(static)
        for (int64_t t = 0; t < m * g->O; t++) {
            int64_t jj = t / g->O, o = t % g->O;
            memcpy(tmp + o * L + jj * P, gsrc + jj * g->O * P + o * P, sizeof(float) * (size_t)P);
        }
        gsrc = tmp;
        gld = L;
    }
    if (dw) { /* dW_g (Og, Kg) += dY_g (Og, L) · col_gᵀ */
        const float *src = j->x + n0 * j->CHW + oh0 * g->Wo;
        int64_t sld = P;
        if (!j->pointwise) { im2col(g, j->x + n0 * j->CHW, m, oh0, oh1, col, par); src = col; sld = L; }
        group_gemm q = {0, 1, Og, Kg, L, gsrc, gld, Og * gld, src, sld, Kg * sld, 1.0f, dw, Kg, Og * Kg};
        VT_TRY(run_group_gemm(&q, g->G, par));
    }
    if (j->dx) { /* dcol_g (Kg, L) = W_gᵀ · dY_g, written over col_g; a pointwise conv's dcol is dx */
        float *dst = j->pointwise ? j->dx + n0 * j->CHW + oh0 * g->Wo : col;
        int64_t dld = j->pointwise ? P : L;
        group_gemm q = {1, 0, Kg, L, Og, j->w, Kg, Og * Kg, gsrc, gld, Og * gld, 0.0f, dst, dld, Kg * dld};
        VT_TRY(run_group_gemm(&q, g->G, par));
        if (!j->pointwise) col2im_add(g, col, m, oh0, oh1, j->dx + n0 * j->CHW, par);
    }
    return VT_OK;
}

/* Run every piece; dw (backward only, may be NULL) arrives zeroed. With work for every thread,
 * threads take contiguous ranges of pieces with private col/tmp buffers and single-threaded
 * GEMMs: OpenBLAS is set to one thread meanwhile (a threaded GEMM inside an OpenMP team would
 * oversubscribe the cores, and alternating between the two thread pools costs more than it
 * gains on a few cores). dW is summed in CONV_DW_PARTS contiguous parts of the pieces (fewer when
 * there are fewer units), each into its own buffer, then the parts in order: the parts do not
 * depend on the thread count (threads take whole parts), so neither do dW's bits. When a backward
 * needs dx, all pieces of an image stay in one thread (col2im of neighbouring row blocks overlaps).
 * With too little work to share, pieces run one after another and each step is threaded instead. */
#define CONV_DW_PARTS 8

static int conv_run(const conv_job *j, float *dw) {
    const conv_geom *g = j->g;
    int backward = j->gy != NULL;
    int64_t npieces = j->nchunks * j->nblk, unit = backward && j->dx ? j->nblk : 1, nunits = npieces / unit;
    if (npieces == 0) return VT_OK;
    if (j->Og > INT_MAX || j->K > INT_MAX || j->nb * j->P > INT_MAX)
        return vt_fail(VT_ESHAPE, "conv2d: a GEMM dimension exceeds the BLAS integer range");
    int64_t dwsz = backward && dw ? j->Og * j->Kg * g->G : 0;
    int64_t nparts = dwsz ? min64(nunits, CONV_DW_PARTS) : nunits;
    int nt = (int)min64(omp_get_max_threads(), nparts);
    if (!dwsz) nparts = nt; /* no dW: one part per thread */
    int nbuf = nt > 1 ? nt : 1;
    int64_t colsz = j->pointwise ? 0 : j->K * j->nb * j->rb * g->Wo, tmpsz = j->nb > 1 ? g->O * j->nb * j->P : 0;
    int64_t per = colsz + tmpsz, total = per * nbuf + dwsz * (nparts - 1);
    size_t bytes = sizeof(float) * (size_t)total;
    float *buf = total ? vt_alloc(bytes) : NULL;
    if (total && !buf) return vt_last_code();
    float *dwp = dwsz && nparts > 1 ? buf + per * nbuf : NULL; /* dW of parts 1.. (part 0 sums into dw) */
    if (dwp) memset(dwp, 0, sizeof(float) * (size_t)(dwsz * (nparts - 1)));
    int st = VT_OK;
    if (nbuf == 1) {
        for (int64_t q = 0; q < nparts && !st; q++) {
            float *partdw = !q ? dw : dwp ? dwp + dwsz * (q - 1) : NULL;
            for (int64_t p = nunits * q / nparts * unit; p < nunits * (q + 1) / nparts * unit && !st; p++)
                st = backward ? piece_backward(j, p, buf, buf + colsz, partdw, 1) : piece_forward(j, p, buf, buf + colsz, 1);
        }
    } else {
        int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        #pragma omp parallel num_threads(nt) reduction(|:st)
        {
            int t = omp_get_thread_num();
            float *col = buf + per * t, *tmp = col + colsz;
            for (int64_t q = nparts * t / nt; q < nparts * (t + 1) / nt && !st; q++) {
                float *partdw = !q ? dw : dwp ? dwp + dwsz * (q - 1) : NULL;
                int64_t p1 = nunits * (q + 1) / nparts * unit;
                for (int64_t p = nunits * q / nparts * unit; p < p1 && !st; p++)
                    st |= backward ? piece_backward(j, p, col, tmp, partdw, 0) : piece_forward(j, p, col, tmp, 0);
            }
        }
        openblas_set_num_threads(blas_threads);
    }
    if (dwsz && nparts > 1 && !st) {
        #pragma omp parallel for if (dwsz * nparts > 32768) schedule(static)
        for (int64_t e = 0; e < dwsz; e++)
            for (int64_t q = 1; q < nparts; q++) dw[e] += dwp[dwsz * (q - 1) + e];
    }
    /* a worker thread's message is in its own thread-local buffer: restate it here */
    if (st == VT_ENOMEM) st = vt_fail(VT_ENOMEM, "conv2d: out of memory in a GEMM");
    else if (st) st = vt_fail(VT_ESHAPE, "conv2d: a GEMM dimension exceeds the BLAS integer range");
    if (buf) vt_free(buf, bytes);
    return st;
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

static int conv_forward_run(const conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    if (direct_applies(g)) {
        vt_conv_direct_geom d = direct_geom(g);
        return vt_k_conv2d_direct(&d, x, w, b, y);
    }
    if (phase_applies(g)) {
        vt_conv_direct_geom d = direct_geom(g);
        return vt_k_conv2d_phase(&d, g->sh, g->sw, x, w, b, y);
    }
    conv_job j;
    conv_plan(g, &j);
    j.x = x;
    j.w = w;
    j.b = b;
    j.y = y;
    return conv_run(&j, NULL);
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
    int st = VT_OK;
    if (need_x && !(gin[0] = (transposed ? vt_empty : vt_zeros)(VT_FLOAT32, 4, x->shape))) goto fail;
    if (need_w && !(gin[1] = vt_zeros(VT_FLOAT32, 4, w->shape))) goto fail;
    if (need_b && !(gin[2] = vt_empty(VT_FLOAT32, 1, &g.O))) goto fail;
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
    if (need_w || (need_x && !transposed)) {
        conv_job j;
        conv_plan(&g, &j);
        j.x = vt_f32(x);
        j.w = vt_f32(w);
        j.gy = vt_f32(gy);
        j.dx = need_x && !transposed ? vt_f32(gin[0]) : NULL;
        if ((st = conv_run(&j, need_w ? vt_f32(gin[1]) : NULL))) goto fail;
    }
    if (need_b) bias_grad(vt_f32(gy), g.N, g.O, g.Ho * g.Wo, vt_f32(gin[2]));
    vt_tensor_decref(gy);
    return VT_OK;
fail:
    if (!st) st = vt_last_code();
    vt_tensor_decref(gy);
    return st; /* the engine releases whatever gin[] holds */
}

/* ---- pooling geometry -------------------------------------------------------------------- */

/* (N, C, H, W) or (C, H, W): `planes` H×W planes */
static int pool_input(const char *who, const vt_tensor *x, int64_t *planes, int64_t *H, int64_t *W) {
    VT_TRY(vt_require_f32(x, who, "input"));
    char b1[128];
    if (x->ndim != 3 && x->ndim != 4)
        return vt_fail(VT_ESHAPE, "%s: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape %s", who,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    for (int d = x->ndim == 4; d < x->ndim; d++)
        if (x->shape[d] == 0)
            return vt_fail(VT_ESHAPE, "%s: input %s has an empty non-batch dimension", who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    *H = x->shape[x->ndim - 2];
    *W = x->shape[x->ndim - 1];
    *planes = vt_numel(x) / (*H * *W);
    return VT_OK;
}

/* PyTorch's pooling_output_shape: floor or ceil division; with ceil_mode the last window must
 * start inside the input or its left padding */
static int pool_out(const char *who, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int ceil, int64_t *out) {
    int64_t span = in + 2 * p - d * (k - 1) - 1;
    int64_t o = (span < 0 ? -1 : (span + (ceil ? s - 1 : 0)) / s) + 1;
    if (ceil && o > 0 && (o - 1) * s >= in + p) o--;
    if (o < 1)
        return vt_fail(VT_ESHAPE, "%s: output size is too small (input size %lld, kernel %lld, stride %lld, padding %lld, dilation %lld)",
                       who, (long long)in, (long long)k, (long long)s, (long long)p, (long long)d);
    *out = o;
    return VT_OK;
}

typedef struct { int64_t kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo; } pool_geom;

/* kernel, stride, padding (<= kernel/2 as PyTorch requires), dilation (max_pool2d only; else 1) and
 * the output size; both pools keep the window arguments in the same slots */
VT_SAME_IARG(max_pool2d, avg_pool2d, kernel_h); VT_SAME_IARG(max_pool2d, avg_pool2d, kernel_w);
VT_SAME_IARG(max_pool2d, avg_pool2d, stride_h); VT_SAME_IARG(max_pool2d, avg_pool2d, stride_w);
VT_SAME_IARG(max_pool2d, avg_pool2d, pad_h); VT_SAME_IARG(max_pool2d, avg_pool2d, pad_w);
static int pool_geometry(const char *who, const vt_args *a, int dil, int ceil, int64_t H, int64_t W, pool_geom *p) {
#define A(name) a->i[IARG(max_pool2d, name)]
    *p = (pool_geom){.kh = A(kernel_h), .kw = A(kernel_w), .sh = A(stride_h), .sw = A(stride_w), .ph = A(pad_h),
                     .pw = A(pad_w), .dh = dil ? A(dilation_h) : 1, .dw = dil ? A(dilation_w) : 1};
#undef A
    const int64_t args[8] = {p->kh, p->kw, p->sh, p->sw, p->ph, p->pw, p->dh, p->dw};
    for (int k = 0; k < 8; k++)
        if (args[k] > INT_MAX || args[k] < INT_MIN) return vt_fail(VT_EVALUE, "%s: argument %lld is out of range", who, (long long)args[k]);
    if (p->kh < 1 || p->kw < 1) return vt_fail(VT_EVALUE, "%s: kernel_size must be positive, got (%lld, %lld)", who, (long long)p->kh, (long long)p->kw);
    if (p->sh < 1 || p->sw < 1) return vt_fail(VT_EVALUE, "%s: stride must be positive, got (%lld, %lld)", who, (long long)p->sh, (long long)p->sw);
    if (p->ph < 0 || p->pw < 0) return vt_fail(VT_EVALUE, "%s: padding must be non-negative, got (%lld, %lld)", who, (long long)p->ph, (long long)p->pw);
    if (p->dh < 1 || p->dw < 1) return vt_fail(VT_EVALUE, "%s: dilation must be positive, got (%lld, %lld)", who, (long long)p->dh, (long long)p->dw);
    if (p->ph > p->kh / 2 || p->pw > p->kw / 2)
        return vt_fail(VT_EVALUE, "%s: padding (%lld, %lld) should be at most half of kernel_size (%lld, %lld)", who,
                       (long long)p->ph, (long long)p->pw, (long long)p->kh, (long long)p->kw);
    VT_TRY(pool_out(who, H, p->kh, p->sh, p->ph, p->dh, ceil, &p->Ho));
    return pool_out(who, W, p->kw, p->sw, p->pw, p->dw, ceil, &p->Wo);
}

/* shape of x with its last two dims replaced by (Ho, Wo) */
static void pooled_shape(int ndim, const int64_t *xs, int64_t Ho, int64_t Wo, int64_t *out) {
    memcpy(out, xs, sizeof(int64_t) * (size_t)ndim);
    out[ndim - 2] = Ho;
    out[ndim - 1] = Wo;
}

/* ---- max_pool2d --------------------------------------------------------------------------- */

/* running max and its int32 index over one tap's reach [lo, hi) of an output row; inlined with
 * constant strides so the compiler vectorizes the selects */
static inline __attribute__((always_inline)) void max_row_idx(const float *restrict xr, int64_t sw, float *restrict y,
                                                              int32_t *restrict idx, int64_t lo, int64_t hi, int32_t base) {
    for (int64_t ow = lo; ow < hi; ow++) {
        float v = xr[ow * sw], m = y[ow];
        int take = (v > m) | (v != v);
        y[ow] = take ? v : m;
        idx[ow] = take ? base + (int32_t)(ow * sw) : idx[ow];
    }
}

/* One plane, a whole output row at a time: for each tap (ki, kj) in window order, compare it
 * with the running max of every output column it reaches, so the inner loop runs over ow without
 * bounds checks and vectorizes. Indices (ip may be NULL) start at the window's first valid tap;
 * they are tracked as int32 in the front half of each int64 row (same width as the float mask,
 * so the select vectorizes too) and widened in place, back to front, when the row is done.
 * Planes of 2^31 pixels or more take the int64 loop. */
static void max_pool_plane(const pool_geom *p, const float *xs, int64_t H, int64_t W, float *y, int64_t *ip) {
    int narrow = H * W <= INT32_MAX;
    for (int64_t oh = 0; oh < p->Ho; oh++, y += p->Wo, ip = ip ? ip + p->Wo : NULL) {
        int32_t *i32 = (int32_t *)ip;
        int64_t h0 = oh * p->sh - p->ph, ki0 = h0 >= 0 ? 0 : (-h0 + p->dh - 1) / p->dh;
        for (int64_t ow = 0; ow < p->Wo; ow++) {
            int64_t w0 = ow * p->sw - p->pw, kj0 = w0 >= 0 ? 0 : (-w0 + p->dw - 1) / p->dw;
            int64_t first = (h0 + ki0 * p->dh) * W + w0 + kj0 * p->dw;
            y[ow] = -INFINITY;
            if (ip && narrow) i32[ow] = (int32_t)first;
            else if (ip) ip[ow] = first;
        }
        for (int64_t ki = ki0; ki < p->kh && h0 + ki * p->dh < H; ki++) {
            int64_t ih = h0 + ki * p->dh;
            const float *xr = xs + ih * W;
            for (int64_t kj = 0; kj < p->kw; kj++) {
                int64_t lo, hi, iw0 = kj * p->dw - p->pw, sw = p->sw;
                valid_range(iw0, sw, W, p->Wo, &lo, &hi);
                /* torch's rule: take v when v > max or v is NaN (so the last NaN wins) */
                if (ip && narrow) {
                    if (sw == 1) max_row_idx(xr + iw0, 1, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                    else if (sw == 2) max_row_idx(xr + iw0, 2, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                    else max_row_idx(xr + iw0, sw, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                } else if (ip) {
                    for (int64_t ow = lo; ow < hi; ow++) {
                        float v = xr[iw0 + ow * sw];
                        if (v > y[ow] || v != v) { y[ow] = v; ip[ow] = ih * W + iw0 + ow * sw; }
                    }
                } else {
                    for (int64_t ow = lo; ow < hi; ow++) {
                        float v = xr[iw0 + ow * sw];
                        y[ow] = (v > y[ow]) | (v != v) ? v : y[ow];
                    }
                }
            }
        }
        if (ip && narrow)
            for (int64_t ow = p->Wo - 1; ow >= 0; ow--) ip[ow] = i32[ow];
    }
}

/* per output: the max over the in-bounds taps (padding never wins), first index on ties, a NaN
 * wins (the last NaN's index, as torch's max_pool2d_with_indices), index = ih·W + iw in the plane */
int vt_max_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W;
    VT_TRY(pool_input("max_pool2d", x, &planes, &H, &W));
    int return_indices = c->args->i[IARG(max_pool2d, return_indices)] != 0;
    pool_geom p;
    VT_TRY(pool_geometry("max_pool2d", c->args, 1, c->args->i[IARG(max_pool2d, ceil_mode)] != 0, H, W, &p));
    int want_idx = return_indices || c->save;
    int64_t oshape[4];
    pooled_shape(x->ndim, x->shape, p.Ho, p.Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL, *idx = NULL;
    if (!xc) return vt_last_code();
    if (!(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) goto fail;
    if (want_idx && !(idx = vt_empty(VT_INT64, x->ndim, oshape))) goto fail;
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t *ip = idx ? vt_i64(idx) : NULL, HW = H * W, OP = p.Ho * p.Wo;
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) max_pool_plane(&p, xp + t * HW, H, W, yp + t * OP, ip ? ip + t * OP : NULL);
    vt_tensor_decref(xc);
    xc = NULL;
    c->out[0] = y;
    c->nout = 1;
    int st = VT_OK;
    if (idx) {
        st = vt_save(c, idx);
        if (return_indices) { c->out[c->nout++] = idx; idx = NULL; }
        vt_tensor_decref(idx);
    }
    return st;
fail:
    vt_tensor_decref(xc);
    vt_tensor_decref(y);
    vt_tensor_decref(idx);
    return vt_last_code();
}

/* dx[plane][idx] += dy: the gradient goes to the argmax of each window */
int vt_max_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    vt_tensor *idx = n->saved[0];
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const vt_meta *om = &n->out_meta[0];
    int64_t HW = m->shape[m->ndim - 2] * m->shape[m->ndim - 1], OP = om->shape[om->ndim - 2] * om->shape[om->ndim - 1];
    int64_t planes = vt_shape_numel(m->ndim - 2, m->shape);
    const float *gp = vt_f32(g);
    const int64_t *ip = vt_i64(idx);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * OP > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t k = 0; k < OP; k++) {
            int64_t i = ip[t * OP + k]; /* outside the plane when a dilated window missed it (-inf) */
            if (i >= 0 && i < HW) dx[t * HW + i] += gp[t * OP + k];
        }
    vt_tensor_decref(g);
    return VT_OK;
}

/* ---- avg_pool2d ---------------------------------------------------------------------------- */

/* torch's avg_pool2d window: [h0, h1) clipped to the input; the divisor counts the window as
 * clipped to the padded input (count_include_pad) or to the input, unless divisor_override */
typedef struct { int64_t h0, h1, w0, w1; float div; } avg_window; /* div 0: empty window, output 0 */

static void avg_win(const pool_geom *p, int64_t H, int64_t W, int cip, int64_t divisor, int64_t oh, int64_t ow, avg_window *r) {
    int64_t h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw;
    int64_t h1 = min64(h0 + p->kh, H + p->ph), w1 = min64(w0 + p->kw, W + p->pw);
    int64_t padded = (h1 - h0) * (w1 - w0);
    h0 = max64(h0, 0); w0 = max64(w0, 0); h1 = min64(h1, H); w1 = min64(w1, W);
    int64_t d = divisor ? divisor : cip ? padded : (h1 - h0) * (w1 - w0);
    *r = (avg_window){h0, h1, w0, w1, h0 < h1 && w0 < w1 ? (float)d : 0.0f};
}

/* y[lo..hi) += x[ow·sw] (one tap's reach along an output row); inlined with constant strides */
static inline __attribute__((always_inline)) void add_row(const float *restrict xr, int64_t sw, float *restrict y,
                                                          int64_t lo, int64_t hi) {
    for (int64_t ow = lo; ow < hi; ow++) y[ow] += xr[ow * sw];
}

/* one plane, a row at a time: window sums tap by tap in window order (as torch sums), then the
 * division by each window's divisor */
static void avg_pool_plane(const pool_geom *p, const float *xs, int64_t H, int64_t W, int cip, int64_t divisor, float *y) {
    for (int64_t oh = 0; oh < p->Ho; oh++, y += p->Wo) {
        memset(y, 0, sizeof(float) * (size_t)p->Wo);
        for (int64_t ki = 0; ki < p->kh; ki++) {
            int64_t ih = oh * p->sh - p->ph + ki;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kj = 0; kj < p->kw; kj++) {
                int64_t lo, hi, iw0 = kj - p->pw;
                valid_range(iw0, p->sw, W, p->Wo, &lo, &hi);
                const float *xr = xs + ih * W + iw0;
                if (p->sw == 1) add_row(xr, 1, y, lo, hi);
                else if (p->sw == 2) add_row(xr, 2, y, lo, hi);
                else add_row(xr, p->sw, y, lo, hi);
            }
        }
        for (int64_t ow = 0; ow < p->Wo; ow++) {
            avg_window r;
            avg_win(p, H, W, cip, divisor, oh, ow, &r);
            y[ow] = r.div != 0.0f ? y[ow] / r.div : 0.0f;
        }
    }
}

static int avg_args(vt_ctx *c, const vt_tensor *x, int64_t *planes, int64_t *H, int64_t *W, pool_geom *p) {
    VT_TRY(pool_input("avg_pool2d", x, planes, H, W));
    int64_t divisor = c->args->i[IARG(avg_pool2d, divisor_override)];
    if (divisor < 0 || divisor > INT_MAX) return vt_fail(VT_EVALUE, "avg_pool2d: divisor_override must be positive, got %lld", (long long)divisor);
    return pool_geometry("avg_pool2d", c->args, 0, c->args->i[IARG(avg_pool2d, ceil_mode)] != 0, *H, *W, p);
}

int vt_avg_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W;
    pool_geom p;
    VT_TRY(avg_args(c, x, &planes, &H, &W, &p));
    int cip = c->args->i[IARG(avg_pool2d, count_include_pad)] != 0;
    int64_t divisor = c->args->i[IARG(avg_pool2d, divisor_override)], oshape[4];
    pooled_shape(x->ndim, x->shape, p.Ho, p.Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL;
    if (!xc || !(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) { vt_tensor_decref(xc); return vt_last_code(); }
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t HW = H * W, OP = p.Ho * p.Wo;
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) avg_pool_plane(&p, xp + t * HW, H, W, cip, divisor, yp + t * OP);
    vt_tensor_decref(xc);
    c->out[0] = y;
    c->nout = 1;
    return VT_OK;
}

int vt_avg_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    vt_tensor shell = {.ndim = m->ndim, .dtype = VT_FLOAT32};
    memcpy(shell.shape, m->shape, sizeof shell.shape);
    vt_ctx c = {.op = n->op, .args = &n->args};
    int64_t planes, H, W;
    pool_geom p;
    VT_TRY(avg_args(&c, &shell, &planes, &H, &W, &p));
    int cip = n->args.i[IARG(avg_pool2d, count_include_pad)] != 0;
    int64_t divisor = n->args.i[IARG(avg_pool2d, divisor_override)], HW = H * W, OP = p.Ho * p.Wo;
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const float *gp = vt_f32(g);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < p.Ho; oh++)
            for (int64_t ow = 0; ow < p.Wo; ow++) {
                avg_window r;
                avg_win(&p, H, W, cip, divisor, oh, ow, &r);
                if (r.div == 0.0f) continue;
                float v = gp[t * OP + oh * p.Wo + ow] / r.div;
                for (int64_t ih = r.h0; ih < r.h1; ih++)
                    for (int64_t iw = r.w0; iw < r.w1; iw++) dx[t * HW + ih * W + iw] += v;
            }
    vt_tensor_decref(g);
    return VT_OK;
}

/* ---- adaptive_avg_pool2d ------------------------------------------------------------------- */

/* window of output i of o over n inputs: [⌊i·n/o⌋, ⌈(i+1)·n/o⌉) (torch's start_index/end_index) */
static inline int64_t ad_start(int64_t i, int64_t n, int64_t o) { return i * n / o; }
static inline int64_t ad_end(int64_t i, int64_t n, int64_t o) { return ((i + 1) * n + o - 1) / o; }

static int adaptive_args(const vt_args *a, const char *who, int64_t *oh, int64_t *ow) {
    *oh = a->i[IARG(adaptive_avg_pool2d, output_h)];
    *ow = a->i[IARG(adaptive_avg_pool2d, output_w)];
    if (*oh < 0 || *ow < 0 || *oh > INT_MAX || *ow > INT_MAX)
        return vt_fail(VT_EVALUE, "%s: output_size must be non-negative, got (%lld, %lld)", who, (long long)*oh, (long long)*ow);
    return VT_OK;
}

int vt_adaptive_avg_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W, Ho, Wo, oshape[4];
    VT_TRY(pool_input("adaptive_avg_pool2d", x, &planes, &H, &W));
    VT_TRY(adaptive_args(c->args, "adaptive_avg_pool2d", &Ho, &Wo));
    pooled_shape(x->ndim, x->shape, Ho, Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL;
    if (!xc || !(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) { vt_tensor_decref(xc); return vt_last_code(); }
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t HW = H * W, OP = Ho * Wo;
    #pragma omp parallel for if (planes * HW > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            int64_t h0 = ad_start(oh, H, Ho), h1 = ad_end(oh, H, Ho);
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t w0 = ad_start(ow, W, Wo), w1 = ad_end(ow, W, Wo);
                double s = 0; /* global pooling sums whole planes: keep the error at float rounding */
                for (int64_t ih = h0; ih < h1; ih++) {
                    const float *r = xp + t * HW + ih * W;
                    float rs = 0.0f;
                    #pragma omp simd reduction(+:rs)
                    for (int64_t iw = w0; iw < w1; iw++) rs += r[iw];
                    s += rs;
                }
                yp[t * OP + oh * Wo + ow] = (float)(s / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    vt_tensor_decref(xc);
    c->out[0] = y;
    c->nout = 1;
    return VT_OK;
}

int vt_adaptive_avg_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    int64_t Ho, Wo;
    VT_TRY(adaptive_args(&n->args, "adaptive_avg_pool2d", &Ho, &Wo));
    int64_t H = m->shape[m->ndim - 2], W = m->shape[m->ndim - 1], HW = H * W, OP = Ho * Wo;
    int64_t planes = vt_shape_numel(m->ndim - 2, m->shape);
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const float *gp = vt_f32(g);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * HW > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            int64_t h0 = ad_start(oh, H, Ho), h1 = ad_end(oh, H, Ho);
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t w0 = ad_start(ow, W, Wo), w1 = ad_end(ow, W, Wo);
                float v = gp[t * OP + oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dx[t * HW + ih * W + iw] += v;
            }
        }
    vt_tensor_decref(g);
    return VT_OK;
}
