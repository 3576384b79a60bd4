/* vitc core: the strided N-d iterator shared by copies (core) and elementwise kernels (ops). */
#include "iter.h"

/* row r of the coalesced walk: chunk `r % nchunks` of outer row `r / nchunks` */
static inline void iter_row(int64_t r, int64_t nchunks, int64_t chunk, int64_t inner, int m, const int64_t *sh,
                            int64_t st[][VT_MAX_DIMS], int nops, char **base, const int64_t *is, vt_row_fn fn,
                            void *ctx) {
    int64_t row = r / nchunks, part = r % nchunks;
    int64_t start = part * chunk, len = inner - start < chunk ? inner - start : chunk;
    if (len <= 0) return;
    char *p[VT_MAX_OPERANDS];
    for (int k = 0; k < nops; k++) p[k] = base[k] + start * is[k];
    int64_t rem = row;
    for (int d = m - 2; d >= 0; d--) {
        int64_t idx = rem % sh[d];
        rem /= sh[d];
        for (int k = 0; k < nops; k++) p[k] += idx * st[k][d];
    }
    fn(len, p, is, ctx);
}

void vt_iter(int nd, const int64_t *shape, int nops, char **base, int64_t strides[][VT_MAX_DIMS],
             vt_row_fn fn, void *ctx) {
    int64_t sh[VT_MAX_DIMS], st[VT_MAX_OPERANDS][VT_MAX_DIMS];
    int m = 0;
    /* drop size-1 dims and merge dims that are contiguous for every operand */
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 0) return;
        if (shape[d] == 1) continue;
        int merge = m > 0;
        for (int k = 0; k < nops && merge; k++) merge = st[k][m - 1] == strides[k][d] * shape[d];
        if (merge) {
            sh[m - 1] *= shape[d];
            for (int k = 0; k < nops; k++) st[k][m - 1] = strides[k][d];
        } else {
            sh[m] = shape[d];
            for (int k = 0; k < nops; k++) st[k][m] = strides[k][d];
            m++;
        }
    }
    if (m == 0) { /* a single element */
        int64_t s1[VT_MAX_OPERANDS] = {0};
        fn(1, base, s1, ctx);
        return;
    }
    int64_t inner = sh[m - 1], rows = 1;
    for (int d = 0; d < m - 1; d++) rows *= sh[d];
    int64_t is[VT_MAX_OPERANDS];
    for (int k = 0; k < nops; k++) is[k] = st[k][m - 1];
    /* split long single rows so both cores get work */
    int64_t chunk = inner, nchunks = 1;
    if (rows == 1 && inner > 65536) { nchunks = 64; chunk = (inner + 63) / 64; }
    int64_t total = rows * nchunks;
    /* small work runs inline: `omp parallel if (0)` would still start a one-thread team, which
     * costs more than a few-element kernel */
    if (rows * inner <= 32768) {
        for (int64_t r = 0; r < total; r++) iter_row(r, nchunks, chunk, inner, m, sh, st, nops, base, is, fn, ctx);
        return;
    }
    /* dynamic: a thread that wakes late (idle threads sleep after a short spin) leaves its chunks to
     * the one already running instead of making it wait at the end; rows are independent */
    #pragma omp parallel for schedule(dynamic, 2)
    for (int64_t r = 0; r < total; r++) iter_row(r, nchunks, chunk, inner, m, sh, st, nops, base, is, fn, ctx);
}
