/* the dispatch table, expanded from ops.def; the Python binding hands it to vt_autograd_init */
#include "ops.h"

#define vt_nograd NULL
#define VT_OP(e, name, fwd, bwd) {#name, fwd, bwd},
const vt_op_info vt_op_table[] = {
#include "ops.def"
};
#undef VT_OP
_Static_assert(sizeof vt_op_table / sizeof vt_op_table[0] == VT_OP_COUNT, "op table and enum disagree");
