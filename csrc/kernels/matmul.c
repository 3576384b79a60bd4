/* vitc kernels: matmul and linear on vt_k_gemm (gemm.c: our kernel for thin products, OpenBLAS
 * otherwise). A 2-d operand view goes to the GEMM as-is when one of its strides is 1: row-major
 * with lda = stride[0], or as the transpose flag with lda = stride[1]; only other layouts are
 * copied. Batched products loop over the broadcast batch index; when the right operand has no
 * batch dims the left operand's batch is folded into its rows (one large GEMM). */
#include <limits.h>
#include <string.h>
#include "matmul.h"
#include "gemm.h"
#include "reduce.h"
#include "view.h"

/* how a (rows, cols) matrix view with strides (s0, s1) goes to BLAS; 0 if it must be copied */
static int blas_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1, int *trans, int64_t *ld) {
    if (s1 == 1 || cols == 1) { *trans = 0; *ld = rows == 1 ? (cols > 0 ? cols : 1) : s0; return *ld >= (cols > 0 ? cols : 1); }
    if (s0 == 1 || rows == 1) { *trans = 1; *ld = cols == 1 ? (rows > 0 ? rows : 1) : s1; return *ld >= (rows > 0 ? rows : 1); }
    return 0;
}

/* a (..., m, k) · b (..., k, n), both >= 2-d, batch dims broadcast */
static vt_tensor *matmul_nd(const vt_tensor *a, const vt_tensor *b) {
    int na = a->ndim, nb = b->ndim;
    int64_t m = a->shape[na - 2], k = a->shape[na - 1], n = b->shape[nb - 1];
    if (b->shape[nb - 2] != k) {
        char b1[128], b2[128];
        return vt_fail_null(VT_ESHAPE, "matmul: shapes %s and %s are not aligned (%lld != %lld)",
                            vt_shape_str(na, a->shape, b1, sizeof b1), vt_shape_str(nb, b->shape, b2, sizeof b2),
                            (long long)k, (long long)b->shape[nb - 2]);
    }
    int nbd;
    int64_t bshape[VT_MAX_DIMS];
    if (vt_broadcast_shapes(na - 2, a->shape, nb - 2, b->shape, &nbd, bshape, "matmul")) return NULL;
    vt_tensor *ac = NULL, *bc = NULL, *out = NULL;
    int ta = 0, tb = 0;
    int64_t lda = 0, ldb = 0;
    if (!blas_layout(m, k, a->strides[na - 2], a->strides[na - 1], &ta, &lda)) {
        if (!(ac = vt_clone(a))) return NULL;
        a = ac;
        blas_layout(m, k, a->strides[na - 2], a->strides[na - 1], &ta, &lda);
    }
    if (!blas_layout(k, n, b->strides[nb - 2], b->strides[nb - 1], &tb, &ldb)) {
        if (!(bc = vt_clone(b))) goto done;
        b = bc;
        blas_layout(k, n, b->strides[nb - 2], b->strides[nb - 1], &tb, &ldb);
    }
    int64_t oshape[VT_MAX_DIMS];
    memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nbd);
    oshape[nbd] = m;
    oshape[nbd + 1] = n;
    if (!(out = vt_empty(VT_FLOAT32, nbd + 2, oshape))) goto done;
    /* fold a's batch into rows: b unbatched, a row-major with rows evenly spaced across batches */
    int fold = nb == 2 && !ta && nbd > 0;
    for (int d = na - 3; d >= 0 && fold; d--)
        fold = a->strides[d] == (d == na - 3 ? m * a->strides[na - 2] : a->strides[d + 1] * a->shape[d + 1]);
    int64_t batch = vt_shape_numel(nbd, bshape);
    if (fold || batch == 1) {
        if (vt_k_gemm(ta, tb, m * batch, n, k, 1.0f, vt_f32(a), lda, vt_f32(b), ldb, 0.0f, vt_f32(out), n)) {
            vt_tensor_decref(out);
            out = NULL;
        }
        goto done;
    }
    int64_t sa[VT_MAX_DIMS], sb[VT_MAX_DIMS];
    vt_tensor abat = *a, bbat = *b; /* batch-only geometry for stride broadcasting */
    abat.ndim = na - 2;
    bbat.ndim = nb - 2;
    vt_broadcast_strides(&abat, nbd, bshape, sa);
    vt_broadcast_strides(&bbat, nbd, bshape, sb);
    for (int64_t i = 0; i < batch; i++) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int d = nbd - 1; d >= 0; d--) {
            int64_t idx = rem % bshape[d];
            rem /= bshape[d];
            oa += idx * sa[d];
            ob += idx * sb[d];
        }
        if (vt_k_gemm(ta, tb, m, n, k, 1.0f, vt_f32(a) + oa, lda, vt_f32(b) + ob, ldb, 0.0f, vt_f32(out) + i * m * n, n)) {
            vt_tensor_decref(out);
            out = NULL;
            break;
        }
    }
done:
    vt_tensor_decref(ac);
    vt_tensor_decref(bc);
    return out;
}

vt_tensor *vt_k_as_matrix(const vt_tensor *t, int left) {
    int64_t shape[2] = {left ? 1 : t->shape[0], left ? t->shape[0] : 1};
    int64_t strides[2] = {left ? t->shape[0] * t->strides[0] : t->strides[0], left ? t->strides[0] : 1};
    return vt_view_of(t, 2, shape, strides, t->offset);
}

vt_tensor *vt_k_matmul(const vt_tensor *a, const vt_tensor *b) {
    if (a->ndim == 0 || b->ndim == 0)
        return vt_fail_null(VT_ESHAPE, "matmul: both arguments need at least 1 dimension (got %d-d and %d-d)", a->ndim, b->ndim);
    if (a->dtype != VT_FLOAT32 || b->dtype != VT_FLOAT32)
        return vt_fail_null(VT_ETYPE, "matmul: expected float32 tensors, got %s and %s", vt_dtype_name(a->dtype), vt_dtype_name(b->dtype));
    if (a->ndim >= 2 && b->ndim >= 2) return matmul_nd(a, b);
    vt_tensor *am = a->ndim == 1 ? vt_k_as_matrix(a, 1) : (vt_tensor_incref((vt_tensor *)a), (vt_tensor *)a);
    vt_tensor *bm = b->ndim == 1 ? vt_k_as_matrix(b, 0) : (vt_tensor_incref((vt_tensor *)b), (vt_tensor *)b);
    vt_tensor *r = am && bm ? matmul_nd(am, bm) : NULL, *out = NULL;
    if (r) { /* drop the dims that the 1-d operands added */
        int64_t shape[VT_MAX_DIMS];
        int nd = 0;
        for (int d = 0; d < r->ndim; d++) {
            if (a->ndim == 1 && d == r->ndim - 2) continue;
            if (b->ndim == 1 && d == r->ndim - 1) continue;
            shape[nd++] = r->shape[d];
        }
        out = vt_k_reshape(r, nd, shape);
    }
    vt_tensor_decref(am);
    vt_tensor_decref(bm);
    vt_tensor_decref(r);
    return out;
}

/* ---- linear: y = x·Wᵀ + b (PyTorch layout, W (out, in)) ------------------------------------- */

/* rows of x (..., in) as a linear layer's input: its leading dims' size (also when in = 0) */
static int64_t linear_rows(const vt_tensor *x, int64_t in) {
    return in ? vt_numel(x) / in : vt_shape_numel(x->ndim - 1, x->shape);
}

vt_tensor *vt_k_linear(const vt_tensor *x, const vt_tensor *w, const vt_tensor *b) {
    if (vt_require_f32(x, "linear", "input") || vt_require_f32(w, "linear", "weight") ||
        (b && vt_require_f32(b, "linear", "bias")))
        return NULL;
    if (x->ndim < 1 || w->ndim != 2)
        return vt_fail_null(VT_ESHAPE, "linear: input must be at least 1-d and weight 2-d (got %d-d and %d-d)",
                            x->ndim, w->ndim);
    int64_t in = w->shape[1], out = w->shape[0];
    if (x->shape[x->ndim - 1] != in)
        return vt_fail_null(VT_ESHAPE, "linear: input's last dim is %lld but weight expects %lld (weight shape (%lld, %lld))",
                            (long long)x->shape[x->ndim - 1], (long long)in, (long long)out, (long long)in);
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return vt_fail_null(VT_ESHAPE, "linear: bias must have shape (%lld,)", (long long)out);
    int64_t rows = linear_rows(x, in);
    vt_tensor *xc = vt_contiguous((vt_tensor *)x), *wc = NULL, *bc = NULL, *y = NULL;
    if (!xc) return NULL;
    int64_t yshape[VT_MAX_DIMS];
    memcpy(yshape, x->shape, sizeof yshape);
    yshape[x->ndim - 1] = out;
    if (!(y = vt_empty(VT_FLOAT32, x->ndim, yshape))) goto fail;
    int tw = 0;
    int64_t ldw = 0;
    if (!blas_layout(out, in, w->strides[0], w->strides[1], &tw, &ldw)) {
        if (!(wc = vt_clone(w))) goto fail;
        blas_layout(out, in, wc->strides[0], wc->strides[1], &tw, &ldw);
    }
    float *yp = vt_f32(y);
    if (b && !(bc = vt_contiguous((vt_tensor *)b))) goto fail;
    /* y (rows,out) = x (rows,in) · Wᵀ (+ b): W's layout flag is flipped because we need its transpose */
    if (bc ? vt_k_gemm_bias(!tw, rows, out, in, vt_f32(xc), in, vt_f32(wc ? wc : w), ldw, vt_f32(bc), yp, out)
           : vt_k_gemm(0, !tw, rows, out, in, 1.0f, vt_f32(xc), in, vt_f32(wc ? wc : w), ldw, 0.0f, yp, out))
        goto fail;
    vt_tensor_decref(xc);
    vt_tensor_decref(wc);
    vt_tensor_decref(bc);
    return y;
fail:
    vt_tensor_decref(xc);
    vt_tensor_decref(wc);
    vt_tensor_decref(bc);
    vt_tensor_decref(y);
    return NULL;
}

/* dx (x's shape, new) = g·W (g contiguous, rows × out), then ⊙ mul when mul (contiguous, x's size) */
static int linear_dx(const vt_tensor *g, const vt_tensor *x, const vt_tensor *w, int64_t rows, const vt_tensor *mul,
                     vt_tensor **dx) {
    int64_t in = w->shape[1], out = w->shape[0];
    if (!(*dx = vt_empty(VT_FLOAT32, x->ndim, x->shape))) return vt_last_code();
    int tw = 0; int64_t ldw = 0;
    vt_tensor *wc = NULL;
    if (!blas_layout(out, in, w->strides[0], w->strides[1], &tw, &ldw)) {
        if (!(wc = vt_clone(w))) return vt_last_code();
        blas_layout(out, in, wc->strides[0], wc->strides[1], &tw, &ldw);
    }
    const float *wp = vt_f32(wc ? wc : w);
    int st = mul ? vt_k_gemm_mul(tw, rows, in, out, vt_f32(g), out, wp, ldw, vt_f32(mul), in, vt_f32(*dx), in)
                 : vt_k_gemm(0, tw, rows, in, out, 1.0f, vt_f32(g), out, wp, ldw, 0.0f, vt_f32(*dx), in);
    vt_tensor_decref(wc);
    return st;
}

int vt_k_linear_dx_times(const vt_tensor *gout, const vt_tensor *x, const vt_tensor *w, const vt_tensor *mul,
                         vt_tensor **dx) {
    *dx = NULL;
    int64_t in = w->shape[1];
    if (!vt_is_contiguous(mul) || mul->dtype != VT_FLOAT32 || vt_numel(mul) != vt_numel(x))
        return vt_fail(VT_ERUNTIME, "linear: the gradient's factor must be contiguous float32 of the input's size");
    int64_t rows = linear_rows(x, in);
    vt_tensor *g = vt_contiguous((vt_tensor *)gout);
    if (!g) return vt_last_code();
    int st = linear_dx(g, x, w, rows, mul, dx);
    vt_tensor_decref(g);
    if (st) {
        vt_tensor_decref(*dx);
        *dx = NULL;
    }
    return st;
}

int vt_k_linear_grads(const vt_tensor *gout, const vt_tensor *x, const vt_tensor *w, vt_tensor **dx,
                      vt_tensor **dw, vt_tensor **db) {
    int64_t in = w->shape[1], out = w->shape[0];
    int64_t rows = linear_rows(x, in);
    vt_tensor *g = vt_contiguous((vt_tensor *)gout), *xc = NULL;
    if (!g) return vt_last_code();
    if (dx && linear_dx(g, x, w, rows, NULL, dx)) goto fail;
    if (dw) {
        if (!(xc = vt_contiguous((vt_tensor *)x))) goto fail;
        if (!(*dw = vt_empty(VT_FLOAT32, 2, w->shape))) goto fail;
        if (vt_k_gemm(1, 0, out, in, rows, 1.0f, vt_f32(g), out, vt_f32(xc), in, 0.0f, vt_f32(*dw), in)) goto fail;
    }
    if (db) {
        vt_tensor *g2 = vt_k_reshape(g, 2, (int64_t[]){rows, out});
        if (!g2) goto fail;
        *db = vt_k_sum_to(g2, 1, &out);
        vt_tensor_decref(g2);
        if (!*db) goto fail;
    }
    vt_tensor_decref(g);
    vt_tensor_decref(xc);
    return VT_OK;
fail:;
    int st = vt_last_code();
    vt_tensor_decref(g);
    vt_tensor_decref(xc);
    vt_tensor **all[3] = {dx, dw, db};
    for (int i = 0; i < 3; i++)
        if (all[i]) { vt_tensor_decref(*all[i]); *all[i] = NULL; }
    return st;
}
