/* vitc ops: patch embedding rearrangements (ViT's, as lucidrains/vit-pytorch:vit_pytorch/vit.py writes it).
 * patchify is einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)': token n = i·w + j, feature
 * f = (a·p2 + b)·C + c takes x[·, c, i·p1 + a, j·p2 + b]. It is a pure permutation, so its
 * backward is the inverse permutation (unpatchify) and vice versa; one copy kernel serves all
 * four directions. */
#include <limits.h>
#include <string.h>
#include "ops_util.h"

typedef struct { int64_t B, C, h, w, p1, p2; } patch_geom;

/* Copy between an image (B, C, h·p1, w·p2) with element strides is[4] and contiguous tokens
 * (B, h·w, p1·p2·C). One task per token row: each image element belongs to exactly one token,
 * so writes never collide in either direction. Reads/writes of p2 runs are contiguous on the
 * image side when its last stride is 1. */
static void patch_copy(const patch_geom *g, float *img, const int64_t *is, float *tok, int to_tokens) {
    int64_t rows = g->B * g->h * g->w, D = g->p1 * g->p2 * g->C, C = g->C, p2 = g->p2;
    #pragma omp parallel for if (rows * D > 32768) schedule(static)
    for (int64_t t = 0; t < rows; t++) {
        int64_t b = t / (g->h * g->w), n = t % (g->h * g->w), i = n / g->w, j = n % g->w;
        float *trow = tok + t * D;
        for (int64_t a = 0; a < g->p1; a++)
            for (int64_t c = 0; c < C; c++) {
                float *src = img + b * is[0] + c * is[1] + (i * g->p1 + a) * is[2] + j * p2 * is[3];
                float *f = trow + a * p2 * C + c;
                if (to_tokens) for (int64_t q = 0; q < p2; q++) f[q * C] = src[q * is[3]];
                else for (int64_t q = 0; q < p2; q++) src[q * is[3]] = f[q * C];
            }
    }
}

VT_SAME_IARG(patchify, unpatchify, p1);
VT_SAME_IARG(patchify, unpatchify, p2);
static int patch_sizes(const vt_args *a, const char *who, int64_t *p1, int64_t *p2) {
    *p1 = a->i[IARG(patchify, p1)];
    *p2 = a->i[IARG(patchify, p2)];
    if (*p1 < 1 || *p2 < 1 || *p1 > INT_MAX || *p2 > INT_MAX)
        return vt_fail(VT_EVALUE, "%s: patch size must be positive, got (%lld, %lld)", who, (long long)*p1, (long long)*p2);
    return VT_OK;
}

/* x (B,C,H,W) -> geometry; H % p1 == W % p2 == 0 */
static int patchify_geom(int ndim, const int64_t *xs, const vt_args *a, patch_geom *g) {
    int64_t p1 = 1, p2 = 1;
    char b1[128];
    VT_TRY(patch_sizes(a, "patchify", &p1, &p2));
    if (ndim != 4)
        return vt_fail(VT_ESHAPE, "patchify: expected a 4-d input (B, C, H, W), got shape %s", vt_shape_str(ndim, xs, b1, sizeof b1));
    if (xs[2] % p1 || xs[3] % p2)
        return vt_fail(VT_ESHAPE, "patchify: image size (%lld, %lld) must be divisible by the patch size (%lld, %lld) (input %s)",
                       (long long)xs[2], (long long)xs[3], (long long)p1, (long long)p2, vt_shape_str(ndim, xs, b1, sizeof b1));
    *g = (patch_geom){xs[0], xs[1], xs[2] / p1, xs[3] / p2, p1, p2};
    return VT_OK;
}

/* t (B,N,D) with patch (p1, p2) and grid (h, w) -> geometry; N = h·w, D % (p1·p2) == 0 */
static int unpatchify_geom(int ndim, const int64_t *ts, const vt_args *a, patch_geom *g) {
    int64_t p1 = 1, p2 = 1;
    char b1[128];
    VT_TRY(patch_sizes(a, "unpatchify", &p1, &p2));
    int64_t h = a->i[IARG(unpatchify, h)], w = a->i[IARG(unpatchify, w)];
    if (ndim != 3)
        return vt_fail(VT_ESHAPE, "unpatchify: expected a 3-d input (B, N, D), got shape %s", vt_shape_str(ndim, ts, b1, sizeof b1));
    if (h < 0 || w < 0 || h > INT_MAX || w > INT_MAX || h * w != ts[1])
        return vt_fail(VT_ESHAPE, "unpatchify: grid (%lld, %lld) does not hold the %lld tokens of input %s",
                       (long long)h, (long long)w, (long long)ts[1], vt_shape_str(ndim, ts, b1, sizeof b1));
    if (ts[2] % (p1 * p2))
        return vt_fail(VT_ESHAPE, "unpatchify: feature size %lld is not a multiple of p1·p2 = %lld (input %s)",
                       (long long)ts[2], (long long)(p1 * p2), vt_shape_str(ndim, ts, b1, sizeof b1));
    *g = (patch_geom){ts[0], ts[2] / (p1 * p2), h, w, p1, p2};
    return VT_OK;
}

/* image -> tokens (new contiguous tensor); img may be any strided view */
static vt_tensor *to_tokens(const patch_geom *g, const vt_tensor *img) {
    vt_tensor *t = vt_empty(VT_FLOAT32, 3, (int64_t[]){g->B, g->h * g->w, g->p1 * g->p2 * g->C});
    if (t) patch_copy(g, vt_f32(img), img->strides, vt_f32(t), 1);
    return t;
}

/* tokens -> image (new contiguous tensor) */
static vt_tensor *to_image(const patch_geom *g, vt_tensor *tok) {
    vt_tensor *tc = vt_contiguous(tok), *x = NULL;
    if (!tc) return NULL;
    int64_t shape[4] = {g->B, g->C, g->h * g->p1, g->w * g->p2}, strides[4];
    vt_contiguous_strides(4, shape, strides);
    if ((x = vt_empty(VT_FLOAT32, 4, shape))) patch_copy(g, vt_f32(x), strides, vt_f32(tc), 0);
    vt_tensor_decref(tc);
    return x;
}

int vt_patchify_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    patch_geom g;
    VT_TRY(vt_require_f32(x, "patchify", "input"));
    VT_TRY(patchify_geom(x->ndim, x->shape, c->args, &g));
    if (!(c->out[0] = to_tokens(&g, x))) return vt_last_code();
    c->nout = 1;
    return VT_OK;
}

int vt_patchify_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    patch_geom g;
    VT_TRY(patchify_geom(n->in_meta[0].ndim, n->in_meta[0].shape, &n->args, &g));
    gin[0] = gout[0] ? to_image(&g, gout[0]) : vt_zeros(VT_FLOAT32, 4, n->in_meta[0].shape);
    return gin[0] ? VT_OK : vt_last_code();
}

int vt_unpatchify_forward(vt_ctx *c) {
    vt_tensor *t = c->in[0];
    patch_geom g;
    VT_TRY(vt_require_f32(t, "unpatchify", "input"));
    VT_TRY(unpatchify_geom(t->ndim, t->shape, c->args, &g));
    if (!(c->out[0] = to_image(&g, t))) return vt_last_code();
    c->nout = 1;
    return VT_OK;
}

int vt_unpatchify_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    patch_geom g;
    VT_TRY(unpatchify_geom(n->in_meta[0].ndim, n->in_meta[0].shape, &n->args, &g));
    gin[0] = gout[0] ? to_tokens(&g, gout[0]) : vt_zeros(VT_FLOAT32, 3, n->in_meta[0].shape);
    return gin[0] ? VT_OK : vt_last_code();
}
