/* vitc autograd: the tape.
 * Every differentiable op is one row of csrc/ops/ops.def: a forward that fills a vt_ctx and a
 * backward that maps output gradients to input gradients. vt_dispatch() runs the forward and,
 * when grad mode is on and an input requires grad, records one vt_node (micrograd's idea: each
 * output remembers its parents and how to send gradients back). vt_backward() sorts the nodes
 * reachable from a root (iteratively, so deep models do not overflow the stack), runs them in
 * reverse topological order, accumulates into leaves' .grad and frees saved tensors afterwards
 * unless retain_graph is set. Ownership: see core/tensor.h rule 4. */
#ifndef VT_NODE_H
#define VT_NODE_H
#include "../core/tensor.h"

#define VT_MAX_IN 16
#define VT_MAX_OUT 3
#define VT_MAX_SAVED 8
#define VT_MAX_IARGS 24
#define VT_MAX_FARGS 8

/* non-tensor arguments of an op; their layout is documented on the op's row in ops.def */
typedef struct vt_args {
    int ni, nf;
    int64_t i[VT_MAX_IARGS];
    double f[VT_MAX_FARGS];
} vt_args;

typedef struct vt_meta {
    vt_dtype dtype;
    int ndim;
    int64_t shape[VT_MAX_DIMS];
} vt_meta;

/* where an input's gradient goes: the node that made the input, or the leaf tensor itself */
typedef struct vt_edge {
    struct vt_node *node; /* owned */
    int output_nr;
    vt_tensor *leaf;      /* owned */
} vt_edge;

/* what a forward sees: inputs (borrowed; NULL for an absent optional input), arguments, and the
 * outputs and saved tensors it must produce (new references). */
typedef struct vt_ctx {
    int op;
    int nin;
    vt_tensor *in[VT_MAX_IN];
    const vt_args *args;
    int nout;
    vt_tensor *out[VT_MAX_OUT];
    int save;            /* nonzero: a node will be recorded, fill saved[] */
    unsigned needs_input_grad; /* valid when save is set */
    int nsaved;
    vt_tensor *saved[VT_MAX_SAVED];
    int64_t saved_version[VT_MAX_SAVED]; /* storage versions at save time */
    struct vt_node *saved_src[VT_MAX_SAVED]; /* owned; see vt_node.saved_src */
} vt_ctx;

typedef struct vt_node {
    int64_t refcount;
    int op;
    int nin, nout;
    vt_edge next[VT_MAX_IN];
    unsigned needs_input_grad; /* bit i: input i wants a gradient */
    vt_meta in_meta[VT_MAX_IN], out_meta[VT_MAX_OUT];
    vt_args args;
    int nsaved;
    vt_tensor *saved[VT_MAX_SAVED];
    int64_t saved_version[VT_MAX_SAVED];
    /* owned: non-NULL when saved slot i is not kept but rebuilt at backward as output 0 of that node
     * (vt_set_recompute); saved[i] is then NULL outside this node's backward */
    struct vt_node *saved_src[VT_MAX_SAVED];
    int released;                      /* saved tensors freed by a backward */
    int amp_bf16;                      /* vt_amp_bf16() at record time: the backward's GEMM precision */
    vt_tensor *retained[VT_MAX_OUT];   /* weak: outputs that asked for retain_grad() */
    void *hooks[VT_MAX_OUT];           /* owned: gradient hooks of output k (see vt_hooks_slot) */
    /* engine scratch, valid only during vt_backward */
    int64_t deps;
    uint64_t visit;
    vt_tensor *gbuf[VT_MAX_OUT];
} vt_node;

typedef int (*vt_forward_fn)(vt_ctx *c);
/* gout[k] is NULL when no gradient reached output k (treat as zeros); fill gin[i] (new refs) for
 * each input i with (n->needs_input_grad >> i) & 1; leave the others NULL. */
typedef int (*vt_backward_fn)(vt_node *n, vt_tensor **gout, vt_tensor **gin);

typedef struct vt_op_info {
    const char *name;
    vt_forward_fn forward;
    vt_backward_fn backward; /* NULL: not differentiable */
} vt_op_info;

/* the op table: its rows live in the op layer (csrc/ops/ops_table.c), which autograd does not
 * link against; vt_autograd_init points these at them before any op runs */
extern const vt_op_info *vt_ops;
extern int vt_nops;
/* start-up, once, before any op runs: install the op table and core's grad_fn release hook */
void vt_autograd_init(const vt_op_info *ops, int nops);

/* save a detached alias of t into c (no-op returning VT_OK when c->save is 0). When t is the whole
 * output 0 of a node whose op has a recompute function that accepts it, only that node is kept and
 * the backward rebuilds t (see vt_set_recompute). */
int vt_save(vt_ctx *c, const vt_tensor *t);

/* Recompute instead of save: an op whose output is cheap to make again from what its own node
 * saves anyway (LayerNorm: its input and statistics) registers fn; a consumer that saves that
 * output then keeps a reference to the producing node instead of the output's bytes, and the
 * engine calls fn(producer, &out) right before the consumer's backward (bitwise the forward's
 * output: the same kernel on the same inputs) and drops the result after it. fn(producer, NULL)
 * asks whether it can (and whether the op's memory switch is on): nonzero yes. */
typedef int (*vt_recompute_fn)(const vt_node *producer, vt_tensor **out);
void vt_set_recompute(int op, vt_recompute_fn fn);

/* run op `op` on inputs; outputs returned in out[] (new refs), their count in *nout */
int vt_dispatch(int op, int nin, vt_tensor **in, const vt_args *args, int *nout, vt_tensor **out);
/* reverse-mode pass from root; grad NULL means ones (root must then be a single element) */
int vt_backward(vt_tensor *root, vt_tensor *grad, int retain_graph);

int vt_grad_enabled(void);
void vt_set_grad_enabled(int on);

void vt_node_decref(vt_node *n);
void vt_node_forget_output(vt_node *n, const vt_tensor *t);
/* the lock around every write of a leaf's .grad (engine.c); the binding takes it for Tensor.grad = */
void vt_leaf_grad_lock(void);
void vt_leaf_grad_unlock(void);
/* dst takes src's autograd history (src NULL: none); for in-place ops and detach_() */
void vt_set_history(vt_tensor *dst, const vt_tensor *src);
/* ask for t.grad to be kept after backward (non-leaf); leaves always keep theirs */
int vt_retain_grad(vt_tensor *t);

/* Gradient hooks (Tensor.register_hook). Autograd keeps them as opaque objects and calls the two
 * functions the binding installs at start-up: run(hooks, &grad) runs them on a gradient during
 * backward (it may replace *grad: drops the old reference, stores a new one; a nonzero status stops
 * the backward), release(hooks) drops them. A non-leaf's hooks live in its grad_fn's slot for its
 * output, as PyTorch keeps them on the node, so they outlive the tensor object; a leaf's on the
 * tensor, run once per backward on the leaf's summed gradient before it is added into .grad.
 * Non-leaf hooks run before a retain_grad() copy is taken (PyTorch's order). */
typedef int (*vt_hooks_run_fn)(void *hooks, vt_tensor **grad);
typedef void (*vt_hooks_release_fn)(void *hooks);
void vt_set_hook_functions(vt_hooks_run_fn run, vt_hooks_release_fn release);
/* where t's hooks are kept: its grad_fn's slot for it, or t->hooks for a leaf */
void **vt_hooks_slot(vt_tensor *t);
void vt_hooks_drop(void *hooks);

/* inference mode (per thread, like torch.inference_mode): the storage of new outputs (not views of
 * an input's storage) is marked is_inference, and vt_save refuses a tensor on such storage, so using
 * one in a recorded graph fails where the node is made. The caller turns grad mode off as well. */
int vt_inference_mode(void);
void vt_set_inference_mode(int on);

#endif
