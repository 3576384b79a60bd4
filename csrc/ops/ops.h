/* vitc ops: every op's forward and backward (declared from ops.def). An op family (one
 * csrc/ops/<family>.def and its .c) uses core, autograd and the kernel layer (csrc/kernels: the
 * vt_k_* computations several families share), never another family. */
#ifndef VT_OPS_H
#define VT_OPS_H
#include "../autograd/node.h"
#include "../kernels/kernels.h"

enum {
#define VT_OP(e, name, fwd, bwd) VT_OP_##e,
#include "ops.def"
#undef VT_OP
    VT_OP_COUNT
};

#define VT_OP(e, name, fwd, bwd) int fwd(vt_ctx *c);
#include "ops.def"
#undef VT_OP
/* rows of ops that are not differentiable name `vt_nograd` as backward (NULL in the table) */
#define VT_OP(e, name, fwd, bwd) int bwd(vt_node *n, vt_tensor **gout, vt_tensor **gin);
#include "ops.def"
#undef VT_OP

/* the rows of ops.def as a table (ops_table.c); the binding hands it to vt_autograd_init */
extern const vt_op_info vt_op_table[];

/* ---- shared helpers (defined in the file named in brackets) ---- */
/* argument access with range checks: fail with VT_EVALUE naming the op when missing */
int vt_arg_count(const vt_ctx *c, int ni, int nf);                          /* [ops_util] */
int vt_need_inputs(const vt_ctx *c, int n); /* [ops_util] the first n tensor arguments are present */
/* [ops_util] dst[0:n) = src[0:n) with non-temporal stores when dst is 16-byte aligned: for data
 * written now and read much later (activations saved for backward), so the copy neither evicts
 * the working set nor reads dst's lines first */
void vt_stream_copy(float *dst, const float *src, int64_t n);

#endif
