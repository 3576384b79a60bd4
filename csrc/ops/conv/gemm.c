/* vitc ops: conv2d through im2col + GEMM (conv.c chooses it when no direct kernel applies).
 *
 * col (C·kh·kw, columns) holds the input pixel each kernel tap sees at each output position (0 in
 * the padding); group g's output is W_g (O/g, K_g) · col_g, K_g = C/g·kh·kw, through cblas_sgemm.
 * Work is cut into pieces (conv_job): a block of output rows of one image, sized so its col stays
 * in cache between im2col and the GEMM, or, for small images, a chunk of images batched into one
 * GEMM whose (O, nb·P) result is scattered to NCHW. A 1×1 stride-1 unpadded conv needs no col: the
 * image is its own col. Backward rebuilds col from the saved x (PyTorch's convolution_backward):
 *   dW_g = Σ_pieces dY_g·col_gᵀ;  dcol_g = W_gᵀ·dY_g, then col2im adds each col entry back onto
 *   its pixel. Threads: see conv_run. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>
#include "../conv.h"
#include "../ops_util.h"

#define BLAS_SINGLE_MNK 262144.0  /* OpenBLAS: SMP_THRESHOLD_MIN · GEMM_MULTITHREAD_THRESHOLD */
#define CONV_MIN_COLS 2048        /* batch images until a GEMM has this many columns ... */
#define CONV_MAX_COL (8 << 20)    /* ... while col stays under this many floats (32 MB) */
#define CONV_BLOCK (256 << 10)    /* one image's col is built in blocks of about this many floats */
#define CONV_MIN_BLOCK_COLS 512   /* but at least this many columns, for the GEMM's sake */

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
    st = conv_worker_status(st);
    if (buf) vt_free(buf, bytes);
    return st;
}

/* the job of one call: backward when gy is given (then y and b are unused) */
static int run_job(const conv_geom *g, const float *x, const float *w, const float *b, float *y, const float *gy,
                   float *dx, float *dw) {
    conv_job j;
    conv_plan(g, &j);
    j.x = x, j.w = w, j.b = b, j.y = y, j.gy = gy, j.dx = dx;
    return conv_run(&j, dw);
}

int vt_conv_gemm_forward(const conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    return run_job(g, x, w, b, y, NULL, NULL, NULL);
}

int vt_conv_gemm_backward(const conv_geom *g, const float *x, const float *w, const float *gy, float *dx, float *dw) {
    return run_job(g, x, w, NULL, NULL, gy, dx, dw);
}
