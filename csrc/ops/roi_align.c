/* vitc ops: RoIAlign forward (torchvision/csrc/ops/cpu/roi_align_kernel.cpp semantics: bilinear samples
 * on a regular grid inside each bin, averaged; samples beyond one pixel outside the map count as 0).
 * Arithmetic in float32 in torchvision's order, so results agree to rounding. No backward: the op pools
 * label maps, which carry no gradient (the row names vt_nograd). */
#pragma GCC optimize ("fp-contract=off") /* round every product as the float32 reference does */
#include <math.h>
#include "ops_util.h"

/* bilinear value of the (H, W) plane at (y, x), 0 beyond one pixel outside */
static float bilinear(const float *plane, int64_t H, int64_t W, float y, float x) {
    if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) return 0.0f;
    if (y <= 0.0f) y = 0.0f;
    if (x <= 0.0f) x = 0.0f;
    int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1, x1;
    if (y0 >= H - 1) { y1 = y0 = H - 1; y = (float)y0; } else y1 = y0 + 1;
    if (x0 >= W - 1) { x1 = x0 = W - 1; x = (float)x0; } else x1 = x0 + 1;
    float ly = y - (float)y0, lx = x - (float)x0, hy = 1.0f - ly, hx = 1.0f - lx;
    float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
    return w1 * plane[y0 * W + x0] + w2 * plane[y0 * W + x1] + w3 * plane[y1 * W + x0] + w4 * plane[y1 * W + x1];
}

int vt_roi_align_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    const char *who = WHO(c);
    const vt_tensor *in = c->in[0], *bx = c->in[1];
#define IA(name) c->args->i[IARG(roi_align, name)]
    int64_t OH = IA(out_h), OW = IA(out_w), ratio = IA(sampling_ratio), aligned = IA(aligned);
#undef IA
    double scale = c->args->f[FARG(roi_align, spatial_scale)];
    char buf[96];
    if (in->dtype != VT_FLOAT32 || bx->dtype != VT_FLOAT32)
        return vt_fail(VT_ETYPE, "%s: input and boxes must be float32, got %s and %s", who, vt_dtype_name(in->dtype),
                       vt_dtype_name(bx->dtype));
    if (in->ndim != 4 || in->shape[2] < 1 || in->shape[3] < 1)
        return vt_fail(VT_ESHAPE, "%s: input must be (B, C, H, W) with H, W >= 1, got %s", who,
                       vt_shape_str(in->ndim, in->shape, buf, sizeof buf));
    if (bx->ndim != 2 || bx->shape[1] != 5)
        return vt_fail(VT_ESHAPE, "%s: boxes must be (K, 5) rows (batch index, x1, y1, x2, y2), got %s", who,
                       vt_shape_str(bx->ndim, bx->shape, buf, sizeof buf));
    if (OH < 1 || OW < 1) return vt_fail(VT_EVALUE, "%s: output size must be >= 1, got %lldx%lld", who,
                                         (long long)OH, (long long)OW);
    if (!(scale > 0.0 && isfinite(scale))) return vt_fail(VT_EVALUE, "%s: spatial_scale must be > 0, got %g", who, scale);
    vt_tensor *x = vt_contiguous((vt_tensor *)in);
    if (!x) return vt_last_code();
    vt_tensor *b = vt_contiguous((vt_tensor *)bx);
    if (!b) { vt_tensor_decref(x); return vt_last_code(); }
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], K = b->shape[0];
    const float *X = vt_f32(x), *R = vt_f32(b);
    for (int64_t k = 0; k < K; k++) {
        float bi = R[k * 5];
        int finite = isfinite(R[k * 5 + 1]) && isfinite(R[k * 5 + 2]) && isfinite(R[k * 5 + 3]) && isfinite(R[k * 5 + 4]);
        if (!(bi >= 0.0f && bi < (float)B && bi == floorf(bi)) || !finite) {
            vt_tensor_decref(x); vt_tensor_decref(b);
            return vt_fail(VT_EINDEX, "%s: box %lld has batch index %g (input batch %lld) or a non-finite corner", who,
                           (long long)k, (double)bi, (long long)B);
        }
    }
    int64_t osh[4] = {K, C, OH, OW};
    vt_tensor *out = vt_empty(VT_FLOAT32, 4, osh);
    if (!out) { vt_tensor_decref(x); vt_tensor_decref(b); return vt_last_code(); }
    float *O = vt_f32(out), off = aligned ? 0.5f : 0.0f, sc = (float)scale;
    #pragma omp parallel for if (K * C * OH * OW > 16384) schedule(static)
    for (int64_t kc = 0; kc < K * C; kc++) {
        int64_t k = kc / C, ch = kc % C;
        const float *r = R + k * 5, *plane = X + ((int64_t)r[0] * C + ch) * H * W;
        float x1 = r[1] * sc - off, y1 = r[2] * sc - off;
        float rw = r[3] * sc - off - x1, rh = r[4] * sc - off - y1;
        if (!aligned) { rw = fmaxf(rw, 1.0f); rh = fmaxf(rh, 1.0f); }
        float bh = rh / (float)OH, bw = rw / (float)OW;
        int64_t gh = ratio > 0 ? ratio : (int64_t)ceilf(rh / (float)OH);
        int64_t gw = ratio > 0 ? ratio : (int64_t)ceilf(rw / (float)OW);
        float count = (float)(gh * gw > 1 ? gh * gw : 1);
        for (int64_t ph = 0; ph < OH; ph++)
            for (int64_t pw = 0; pw < OW; pw++) {
                float acc = 0.0f;
                for (int64_t iy = 0; iy < gh; iy++) {
                    float y = y1 + (float)ph * bh + ((float)iy + 0.5f) * bh / (float)gh;
                    for (int64_t ix = 0; ix < gw; ix++) {
                        float xx = x1 + (float)pw * bw + ((float)ix + 0.5f) * bw / (float)gw;
                        acc += bilinear(plane, H, W, y, xx);
                    }
                }
                O[((k * C + ch) * OH + ph) * OW + pw] = acc / count;
            }
    }
    vt_tensor_decref(x);
    vt_tensor_decref(b);
    return out1(c, out);
}
