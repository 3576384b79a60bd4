/* vitc autograd: the saved-tensor walk (saved.c), a debug aid behind vitc.profiler.saved_tensors() */
#ifndef VT_SAVED_H
#define VT_SAVED_H
#include "node.h"

/* called once per saved tensor of each node reachable from root: op (row of ops.def), its slot,
 * the tensor (NULL: a slot rebuilt at backward from its producer, vt_set_recompute, which keeps no
 * bytes), and whether its storage is one of the node's leaf inputs (a parameter); nonzero stops */
typedef int (*vt_saved_fn)(void *ud, int op, int slot, const vt_tensor *t, int is_input_leaf);
int vt_saved_walk(const vt_tensor *root, vt_saved_fn fn, void *ud);
#endif
