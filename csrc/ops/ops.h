/* vitc ops: every op's forward and backward (declared from ops.def) and the plain kernels the
 * families share. Kernels named vt_k_* do not record autograd; they return new references
 * (core/tensor.h rules) or NULL with the error set. */
#ifndef VT_OPS_H
#define VT_OPS_H
#include "../autograd/node.h"

#include <stddef.h>

/* The row's ARGS(...) list (see ops.def) is expanded here with these spellings of its entries. */
#define ARGS(...) __VA_ARGS__

enum {
#define VT_OP(e, name, fwd, bwd, args) VT_OP_##e,
#include "ops.def"
#undef VT_OP
    VT_OP_COUNT
};

#define VT_OP(e, name, fwd, bwd, args) int fwd(vt_ctx *c);
#include "ops.def"
#undef VT_OP
/* rows of ops that are not differentiable name `vt_nograd` as backward (NULL in the table) */
#define VT_OP(e, name, fwd, bwd, args) int bwd(vt_node *n, vt_tensor **gout, vt_tensor **gin);
#include "ops.def"
#undef VT_OP

/* ---- named arguments ----
 * Each row's INT / INT_LIST entries become the members of struct vt_iargs_<name> and its FLOAT
 * entries those of struct vt_fargs_<name>, in row order, after a placeholder (a struct needs a
 * member even for an op without arguments). A member's offset is the argument's slot:
 *     c->args->i[IARG(layer_norm, normalized_shape)],  n->args.f[FARG(layer_norm, eps)].
 * INT_LIST is a flexible array member, so the compiler rejects a row whose list is not the last
 * int; the list fills i[] from IARG(op, list) to ni (VT_LIST_LEN). The dispatch table checks
 * every call carries at least VT_NIARGS(op) ints and VT_NFARGS(op) floats before the forward
 * runs (ops_table.c), so forwards read their fixed arguments without counting. */
#define TENSOR(n)
#define OPT_TENSOR(n)
#define TENSORS(n)
#define FLOAT(n)
#define INT(n) int64_t n;
#define INT_LIST(n) int64_t n[];
#define VT_OP(e, name, fwd, bwd, args) struct vt_iargs_##name { int64_t vt_placeholder_; args };
#include "ops.def"
#undef VT_OP
#undef INT
#undef INT_LIST
#undef FLOAT
#define INT(n)
#define INT_LIST(n)
#define FLOAT(n) double n;
#define VT_OP(e, name, fwd, bwd, args) struct vt_fargs_##name { double vt_placeholder_; args };
#include "ops.def"
#undef VT_OP
#undef INT
#undef INT_LIST
#undef FLOAT
#undef TENSOR
#undef OPT_TENSOR
#undef TENSORS

#define IARG(op, name) ((int)(offsetof(struct vt_iargs_##op, name) / sizeof(int64_t)) - 1)
#define FARG(op, name) ((int)(offsetof(struct vt_fargs_##op, name) / sizeof(double)) - 1)
#define VT_NIARGS(op) ((int)(sizeof(struct vt_iargs_##op) / sizeof(int64_t)) - 1) /* fixed ints (not the list) */
#define VT_NFARGS(op) ((int)(sizeof(struct vt_fargs_##op) / sizeof(double)) - 1)
/* how many values an op's INT_LIST holds in args a (a vt_args pointer) */
#define VT_LIST_LEN(a, op, name) ((a)->ni - IARG(op, name))
/* two ops whose shared code reads argument `name` of the first for both keep it in one slot */
#define VT_SAME_IARG(op1, op2, name) _Static_assert(IARG(op1, name) == IARG(op2, name), #op1 " and " #op2 " disagree on " #name)
#define VT_SAME_FARG(op1, op2, name) _Static_assert(FARG(op1, name) == FARG(op2, name), #op1 " and " #op2 " disagree on " #name)
/* each op's ARGS as text for Python: entries "t:x" (tensor), "t?:w" (tensor or None), "t*:xs"
 * (any number of tensors, last), "i:k", "i*:shape" (int list, last int), "f:eps"; space separated */
extern const char *const vt_op_args[];

/* ---- shared helpers (defined in the family named in brackets) ---- */
/* argument access with range checks: fail with VT_EVALUE naming the op when missing */
int vt_arg_count(const vt_ctx *c, int ni, int nf); /* [ops_util] (the dispatch table calls it for every op) */
int vt_need_inputs(const vt_ctx *c, int n); /* [ops_util] the first n tensor arguments are present */
int vt_require_f32(const vt_tensor *t, const char *who, const char *what);  /* [ops_util] */
int vt_require_dtype(const vt_tensor *t, vt_dtype dt, const char *who, const char *what); /* [ops_util] */
vt_tensor *vt_k_sum_to(const vt_tensor *g, int ndim, const int64_t *shape); /* [reduce] sum broadcast dims away */
vt_tensor *vt_k_add(const vt_tensor *a, const vt_tensor *b);   /* [elementwise] broadcasting */
vt_tensor *vt_k_mul(const vt_tensor *a, const vt_tensor *b);   /* [elementwise] broadcasting */
vt_tensor *vt_k_scale(const vt_tensor *a, float s);            /* [elementwise] a*s */
/* C (m,n) = op(A)·op(B) (+ beta·C) for 2-d or batched 3-d float32 views; transposed views go to
 * BLAS as flags. [blas] */
vt_tensor *vt_k_matmul(const vt_tensor *a, const vt_tensor *b);
int vt_k_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* y = x·Wᵀ + b (b may be NULL), and its gradients: each of dx, dw, db non-NULL is filled [blas] */
vt_tensor *vt_k_linear(const vt_tensor *x, const vt_tensor *w, const vt_tensor *b);
int vt_k_linear_grads(const vt_tensor *g, const vt_tensor *x, const vt_tensor *w, vt_tensor **dx, vt_tensor **dw,
                      vt_tensor **db);
enum { VT_GEMM_AUTO, VT_GEMM_BLAS, VT_GEMM_OWN };
void vt_gemm_set_mode(int mode); /* [gemm] VT_GEMM_*: which path every product takes (benchmarks, tests) */
/* [gemm] where AUTO sends C = op(A)·B (beta 0): 0 OpenBLAS, 1 our kernel, 2 OpenBLAS mirrored (Cᵀ = Bᵀ·A) */
int vt_gemm_auto_path(int transa, int64_t m, int64_t n, int64_t k);
/* [gemm] the path vt_k_gemm takes for that product now, VITC_GEMM / vt_gemm_set_mode included */
int vt_gemm_path_now(int transa, int64_t m, int64_t n, int64_t k);
/* [gemm] op(B) (k × n) packed once, then C (m×n, ldc) = A·B + beta·C (A plain, rows lda apart;
 * beta 0 or 1) for many A on the calling thread, bitwise as vt_k_gemm's own kernel computes them.
 * init allocates; pack strip s for every s in [0, nstrips) (any threads) before the first rows
 * call; free releases. B must stay alive meanwhile. */
typedef struct { float *p; const float *b; int64_t k, n, nstrips, sbk, sbn; size_t bytes; } vt_gemm_panel;
int vt_gemm_panel_init(vt_gemm_panel *pn, int transb, int64_t k, int64_t n, const float *b, int64_t ldb);
void vt_gemm_panel_pack(const vt_gemm_panel *pn, int64_t s);
void vt_gemm_panel_rows(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                        int64_t ldc);
/* y (m × n, contiguous) = a·op(B) + bias (bias NULL: none): the bias fills y first and the product
 * adds to it, as vt_k_linear does, so the bits are vt_k_linear's on the own kernel */
void vt_gemm_panel_linear(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, const float *bias,
                          float *y);
void vt_gemm_panel_free(vt_gemm_panel *pn);
/* [ops_util] dst[0:n) = src[0:n) with non-temporal stores when dst is 16-byte aligned: for data
 * written now and read much later (activations saved for backward), so the copy neither evicts
 * the working set nor reads dst's lines first */
void vt_stream_copy(float *dst, const float *src, int64_t n);
vt_tensor *vt_k_reshape(const vt_tensor *t, int ndim, const int64_t *shape); /* [shape] view or copy */
vt_tensor *vt_k_permute(const vt_tensor *t, const int64_t *dims);            /* [shape] view */

#endif
