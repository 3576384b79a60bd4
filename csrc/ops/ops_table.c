/* the dispatch table and the argument specs, expanded from ops.def; vt_ops_install hands the table
 * to autograd at start-up */
#include "ops.h"

/* every forward is entered through a check that the call carries the row's fixed arguments and
 * that a bfloat16 input goes only to an op that takes it (ops_util.c) */
#define VT_OP(e, name, fwd, bwd, args)                                   \
    static int checked_##fwd(vt_ctx *c) {                                \
        VT_TRY(vt_arg_count(c, VT_NIARGS(name), VT_NFARGS(name)));       \
        VT_TRY(vt_bf16_gate(c));                                         \
        return fwd(c);                                                   \
    }                                                                    \
    _Static_assert(VT_NIARGS(name) <= VT_MAX_IARGS && VT_NFARGS(name) <= VT_MAX_FARGS, #name ": too many arguments");
#include "ops.def"
#undef VT_OP

#define vt_nograd NULL
#define VT_OP(e, name, fwd, bwd, args) {#name, checked_##fwd, bwd},
const vt_op_info vt_op_table[] = {
#include "ops.def"
};
#undef VT_OP
_Static_assert(sizeof vt_op_table / sizeof vt_op_table[0] == VT_OP_COUNT, "op table and enum disagree");

#define TENSOR(n) " t:" #n
#define OPT_TENSOR(n) " t?:" #n
#define TENSORS(n) " t*:" #n
#define INT(n) " i:" #n
#define INT_LIST(n) " i*:" #n
#define FLOAT(n) " f:" #n
#define VT_OP(e, name, fwd, bwd, args) "" args,
const char *const vt_op_args[] = {
#include "ops.def"
};
#undef VT_OP

void vt_ops_install(void) {
    vt_autograd_init(vt_op_table, VT_OP_COUNT);
#define VT_OP(e, name, fwd, bwd, args)
#define VT_RECOMPUTE(e, fn) vt_set_recompute(VT_OP_##e, fn);
#include "ops.def"
#undef VT_RECOMPUTE
#undef VT_OP
}
