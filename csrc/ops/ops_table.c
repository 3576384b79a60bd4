/* the dispatch table, expanded from ops.def */
#include "ops.h"

#define vt_nograd NULL
#define VT_OP(e, name, fwd, bwd) {#name, fwd, bwd},
const vt_op_info vt_ops[] = {
#include "ops.def"
};
#undef VT_OP
const int vt_nops = sizeof vt_ops / sizeof vt_ops[0];
_Static_assert(sizeof vt_ops / sizeof vt_ops[0] == VT_OP_COUNT, "op table and enum disagree");
