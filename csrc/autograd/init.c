/* vitc autograd: start-up wiring. Autograd sits between core and the ops: core calls back into it
 * through a hook (the last reference to a tensor that has a grad_fn), and it reaches the ops only
 * through the table the caller hands it here, so neither layer below the ops names an op. */
#include "node.h"

const vt_op_info *vt_ops;
int vt_nops;

/* the node that made t loses its output t (weak pointer, core/tensor.h rule 4) and t's reference;
 * a leaf's hooks go with it */
static void release_grad_fn(vt_tensor *t) {
    if (t->grad_fn) {
        vt_node_forget_output(t->grad_fn, t);
        vt_node_decref(t->grad_fn);
    }
    void *hooks = t->hooks;
    t->hooks = NULL;
    vt_hooks_drop(hooks);
}

void vt_autograd_init(const vt_op_info *ops, int nops) {
    vt_ops = ops;
    vt_nops = nops;
    vt_set_grad_fn_release(release_grad_fn);
}
