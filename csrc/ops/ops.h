/* vitc ops: every op's forward and backward (declared from ops.def). An op family (one
 * csrc/ops/<family>.def and its .c) uses core, autograd and the kernel layer (csrc/kernels: the
 * vt_k_* computations several families share), never another family. */
#ifndef VT_OPS_H
#define VT_OPS_H
#include "../autograd/node.h"
#include "../kernels/kernels.h"

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

/* the rows of ops.def as a table (ops_table.c) */
extern const vt_op_info vt_op_table[];
/* start-up, once, before any op runs: hands the table to autograd (vt_autograd_init) and registers
 * the ops whose outputs are rebuilt instead of saved (vt_set_recompute) */
void vt_ops_install(void);
#define VT_OP(e, name, fwd, bwd, args)
#define VT_RECOMPUTE(e, fn) int fn(const vt_node *n, vt_tensor **out);
#include "ops.def"
#undef VT_RECOMPUTE
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

/* ---- shared helpers (defined in the file named in brackets) ---- */
/* argument access with range checks: fail with VT_EVALUE naming the op when missing */
int vt_arg_count(const vt_ctx *c, int ni, int nf); /* [ops_util] (the dispatch table calls it for every op) */
int vt_bf16_gate(const vt_ctx *c); /* [ops_util] VT_ETYPE unless the op takes bfloat16 or no input is bfloat16 */
int vt_need_inputs(const vt_ctx *c, int n); /* [ops_util] the first n tensor arguments are present */
/* [ops_util] dst[0:n) = src[0:n) with non-temporal stores when dst is 16-byte aligned: for data
 * written now and read much later (activations saved for backward), so the copy neither evicts
 * the working set nor reads dst's lines first */
void vt_stream_copy(float *dst, const float *src, int64_t n);

#endif
