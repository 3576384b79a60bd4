/* vitc autograd: a debug walk over the tape's saved tensors, for vitc.profiler.saved_tensors():
 * where a step's memory between forward and backward goes, op by op. It visits every node reachable
 * from a root once and reports each saved tensor with its storage, so the caller can count storages
 * shared by several nodes (a LayerNorm output saved by the Linear after it) once. Read-only; costs
 * nothing unless called. */
#include <stdlib.h>
#include "saved.h"

int vt_saved_walk(const vt_tensor *root, vt_saved_fn fn, void *ud) {
    if (!root->grad_fn) return VT_OK;
    int64_t cap = 64, top = 0, nseen = 0;
    vt_node **stack = malloc(sizeof(vt_node *) * (size_t)cap), **seen = malloc(sizeof(vt_node *) * (size_t)cap);
    if (!stack || !seen) { free(stack); free(seen); return vt_fail(VT_ENOMEM, "saved_tensors: out of memory"); }
    stack[top++] = root->grad_fn;
    seen[nseen++] = root->grad_fn;
    int st = VT_OK;
    while (top && !st) {
        vt_node *n = stack[--top];
        for (int i = 0; i < n->nsaved && !st; i++) {
            const vt_tensor *t = n->saved[i];
            int is_input_leaf = 0; /* a parameter or other leaf input of this node: not the step's memory */
            for (int j = 0; j < n->nin; j++)
                if (t && n->next[j].leaf && n->next[j].leaf->storage == t->storage) is_input_leaf = 1;
            st = fn(ud, n->op, i, t, is_input_leaf);
        }
        for (int j = 0; j < n->nin && !st; j++) {
            vt_node *m = n->next[j].node;
            if (!m) continue;
            int known = 0; /* linear search: a ViT's tape has hundreds of nodes, the walk is a debug aid */
            for (int64_t k = 0; k < nseen && !known; k++) known = seen[k] == m;
            if (known) continue;
            if (nseen == cap) { /* every node on the stack is also in seen: top <= nseen */
                vt_node **ns = realloc(seen, sizeof(vt_node *) * (size_t)(2 * cap));
                if (ns) seen = ns;
                vt_node **nt = ns ? realloc(stack, sizeof(vt_node *) * (size_t)(2 * cap)) : NULL;
                if (nt) stack = nt;
                if (!nt) { st = vt_fail(VT_ENOMEM, "saved_tensors: out of memory"); break; }
                cap *= 2;
            }
            seen[nseen++] = m;
            stack[top++] = m;
        }
    }
    free(stack);
    free(seen);
    return st;
}
