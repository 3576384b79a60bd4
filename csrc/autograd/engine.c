/* vitc autograd: recording (vt_dispatch) and the backward pass (vt_backward). See node.h.
 *
 * THREADS: Python threads may run ops and backward passes at once (the binding releases the GIL).
 * Shared state and what guards it:
 *  - tensor, storage and node reference counts: atomic;
 *  - a leaf's .grad (accumulation, first assignment, Tensor.grad =) and node->retained: leaf_lock;
 *  - a node's backward scratch (deps, gbuf): claimed by one pass at a time (claim_node); a second
 *    pass through a node in use fails with a RuntimeError. There is no global tape: each forward
 *    builds its own graph, so threads with their own forwards never meet there;
 *  - grad mode (no_grad), the profiler's event buffer and the error message: per thread;
 *  - version counters: atomic increments; an in-place write in one thread racing a backward that
 *    reads the same saved tensor in another is the caller's race (as in PyTorch);
 *  - the allocator's cache: its own mutex (core/alloc.c); the RNG's offset: its own mutex
 *    (core/rng.c), so draws never repeat, but which thread gets which draws follows the order
 *    they ask in; the thread count: process-wide (core/threads.c).
 *  - gradient hooks run under the GIL, which the binding's hook runner takes (python/hooks.c);
 *    registering or removing one happens under the GIL too.
 * Not guarded: replacing a tensor's storage (Parameter.data = ...) while another thread runs an
 * op on that tensor; registering the first hook of a tensor while a backward in another thread
 * passes through it (the hooks may or may not run in that pass). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "../core/amp.h"
#include "node.h"
#include "profile.h"

static _Thread_local int grad_disabled; /* per thread, like torch.no_grad */
static _Thread_local int inference_on;  /* per thread, like torch.inference_mode */

int vt_grad_enabled(void) { return !grad_disabled; }
void vt_set_grad_enabled(int on) { grad_disabled = !on; }
int vt_inference_mode(void) { return inference_on; }
void vt_set_inference_mode(int on) { inference_on = on != 0; }

static vt_hooks_run_fn hooks_run;
static vt_hooks_release_fn hooks_release;
void vt_set_hook_functions(vt_hooks_run_fn run, vt_hooks_release_fn release) {
    hooks_run = run;
    hooks_release = release;
}
void **vt_hooks_slot(vt_tensor *t) { return t->grad_fn ? &t->grad_fn->hooks[t->output_nr] : &t->hooks; }
void vt_hooks_drop(void *hooks) {
    if (hooks && hooks_release) hooks_release(hooks);
}

static void meta_of(vt_meta *m, const vt_tensor *t) {
    m->dtype = t->dtype;
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
}

/* ops that rebuild their output 0 instead of a consumer saving it (vt_set_recompute, node.h) */
static struct { int op; vt_recompute_fn fn; } recomputes[8];
static int nrecomputes;
void vt_set_recompute(int op, vt_recompute_fn fn) {
    int i = 0; /* start-up only, before any op runs */
    while (i < nrecomputes && recomputes[i].op != op) i++;
    if (i == (int)(sizeof recomputes / sizeof recomputes[0])) return;
    recomputes[i].op = op;
    recomputes[i].fn = fn;
    if (i == nrecomputes) nrecomputes++;
}
static vt_recompute_fn recompute_fn(int op) {
    for (int i = 0; i < nrecomputes; i++)
        if (recomputes[i].op == op) return recomputes[i].fn;
    return NULL;
}

/* t is all of output 0 of p, as p made it (not a view of it, not another dtype) */
static int whole_output(const vt_tensor *t, const vt_node *p) {
    if (t->output_nr != 0 || t->offset != 0 || t->dtype != p->out_meta[0].dtype || t->ndim != p->out_meta[0].ndim ||
        !vt_is_contiguous(t))
        return 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != p->out_meta[0].shape[d]) return 0;
    return 1;
}

int vt_save(vt_ctx *c, const vt_tensor *t) {
    if (!c->save) return VT_OK;
    if (t->storage->is_inference)
        return vt_fail(VT_ERUNTIME, "Inference tensors cannot be saved for backward: %s needs a tensor made under "
                       "vitc.inference_mode() to compute gradients; make a normal copy outside inference mode "
                       "(t.clone()) and use that", vt_ops[c->op].name);
    if (c->nsaved >= VT_MAX_SAVED) return vt_fail(VT_ERUNTIME, "internal: too many saved tensors");
    vt_node *p = t->grad_fn;
    vt_recompute_fn fn = p && p->op != c->op && !p->released ? recompute_fn(p->op) : NULL;
    if (fn && whole_output(t, p) && fn(p, NULL)) { /* keep the producer, not t's bytes */
        __atomic_add_fetch(&p->refcount, 1, __ATOMIC_RELAXED);
        c->saved_src[c->nsaved] = p;
        c->saved_version[c->nsaved] = 0;
        c->saved[c->nsaved++] = NULL;
        return VT_OK;
    }
    vt_tensor *a = vt_alias(t);
    if (!a) return vt_last_code();
    c->saved_version[c->nsaved] = __atomic_load_n(&t->storage->version, __ATOMIC_RELAXED);
    c->saved[c->nsaved++] = a;
    return VT_OK;
}

/* a saved tensor whose bytes an in-place op rewrote since the forward cannot be trusted */
static int check_saved_versions(const vt_node *n) {
    for (int i = 0; i < n->nsaved; i++) {
        if (!n->saved[i]) continue; /* rebuilt from its producer, whose own saved tensors are checked */
        int64_t now = __atomic_load_n(&n->saved[i]->storage->version, __ATOMIC_RELAXED);
        if (now != n->saved_version[i]) {
            char b[128];
            return vt_fail(VT_ERUNTIME, "one of the variables needed for gradient computation has been modified by "
                           "an inplace operation: saved tensor %d of %s, shape %s, is at version %lld; expected "
                           "version %lld instead", i, vt_ops[n->op].name,
                           vt_shape_str(n->saved[i]->ndim, n->saved[i]->shape, b, sizeof b), (long long)now,
                           (long long)n->saved_version[i]);
        }
    }
    return VT_OK;
}

void vt_node_decref(vt_node *n) {
    if (!n || __atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (int i = 0; i < n->nin; i++) {
        vt_node_decref(n->next[i].node);
        vt_tensor_decref(n->next[i].leaf);
    }
    for (int i = 0; i < n->nsaved; i++) {
        vt_tensor_decref(n->saved[i]);
        vt_node_decref(n->saved_src[i]);
    }
    for (int k = 0; k < n->nout; k++) vt_tensor_decref(n->gbuf[k]);
    for (int k = 0; k < VT_MAX_OUT; k++) vt_hooks_drop(n->hooks[k]);
    free(n);
}

void vt_node_forget_output(vt_node *n, const vt_tensor *t) {
    if (t->output_nr < 0 || t->output_nr >= VT_MAX_OUT || n->retained[t->output_nr] != t) return;
    vt_leaf_grad_lock(); /* a backward in another thread may be reading it (leaf_lock below) */
    if (n->retained[t->output_nr] == t) n->retained[t->output_nr] = NULL;
    vt_leaf_grad_unlock();
}

int vt_retain_grad(vt_tensor *t) {
    if (!t->requires_grad)
        return vt_fail(VT_ERUNTIME, "can't retain_grad on a tensor that has requires_grad=False");
    vt_leaf_grad_lock();
    if (t->grad_fn) t->grad_fn->retained[t->output_nr] = t;
    t->retains_grad = 1;
    vt_leaf_grad_unlock();
    return VT_OK;
}

/* dst takes src's place in the graph: its grad_fn and output slot (src NULL: dst leaves the graph and
 * stops requiring grad). An in-place op that vitc records out of place (vitc/_ops/inplace.py) writes the
 * result's values into dst and then gives dst the result's history, as PyTorch rebases an in-place
 * output's history; detach_() drops it. A retain_grad() request moves with dst. */
void vt_set_history(vt_tensor *dst, const vt_tensor *src) {
    vt_node *old = dst->grad_fn;
    if (old) vt_node_forget_output(old, dst);
    vt_leaf_grad_lock();
    if (src && src->grad_fn) {
        __atomic_add_fetch(&src->grad_fn->refcount, 1, __ATOMIC_RELAXED);
        dst->grad_fn = src->grad_fn;
        dst->output_nr = src->output_nr;
        dst->requires_grad = 1;
        if (dst->retains_grad) dst->grad_fn->retained[dst->output_nr] = dst;
    } else {
        dst->grad_fn = NULL;
        dst->output_nr = 0;
        dst->requires_grad = 0;
    }
    vt_leaf_grad_unlock();
    vt_node_decref(old);
}

static void release_ctx_saved(vt_ctx *c) {
    for (int k = 0; k < c->nsaved; k++) {
        vt_tensor_decref(c->saved[k]);
        vt_node_decref(c->saved_src[k]);
    }
    c->nsaved = 0;
}

static void release_ctx(vt_ctx *c) {
    for (int k = 0; k < c->nout; k++) { vt_tensor_decref(c->out[k]); c->out[k] = NULL; }
    release_ctx_saved(c);
}

/* inference mode: outputs with storage of their own are inference tensors; views of an input (and
 * an input handed back) keep their storage's status, so views of normal tensors stay normal and
 * views of inference tensors (detach too) are inference tensors, as in PyTorch */
static void mark_inference(vt_ctx *c) {
    for (int k = 0; k < c->nout; k++) {
        int view = 0;
        for (int i = 0; i < c->nin && !view; i++) view = c->in[i] && c->in[i]->storage == c->out[k]->storage;
        if (!view) c->out[k]->storage->is_inference = 1;
    }
}

int vt_dispatch(int op, int nin, vt_tensor **in, const vt_args *args, int *nout, vt_tensor **out) {
    static const vt_args no_args;
    if (op < 0 || op >= vt_nops) return vt_fail(VT_EVALUE, "unknown op id %d", op);
    const vt_op_info *info = &vt_ops[op];
    if (nin > VT_MAX_IN) return vt_fail(VT_EVALUE, "%s: too many tensor arguments (%d)", info->name, nin);
    /* every op's first argument is a tensor; forwards check the rest (vt_need_inputs) */
    if (nin < 1 || !in[0]) return vt_fail(VT_ETYPE, "%s: the first argument must be a tensor", info->name);
    vt_ctx c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.nin = nin;
    c.args = args ? args : &no_args;
    unsigned needs = 0;
    for (int i = 0; i < nin; i++) {
        c.in[i] = in[i];
        if (in[i] && in[i]->requires_grad) needs |= 1u << i;
    }
    c.save = needs && info->backward && vt_grad_enabled();
    c.needs_input_grad = needs;
    int64_t t0 = vt_profiling() ? vt_prof_now() : 0;
    int st = info->forward(&c);
    if (t0) vt_prof_record(op, VT_PROF_FORWARD, in[0]->ndim, in[0]->shape, t0);
    if (st) { release_ctx(&c); return st; }
    if (c.nout <= 0 || c.nout > VT_MAX_OUT) { release_ctx(&c); return vt_fail(VT_ERUNTIME, "internal: %s made %d outputs", info->name, c.nout); }
    if (c.save) {
        vt_node *n = calloc(1, sizeof *n);
        if (!n) { release_ctx(&c); return vt_fail(VT_ENOMEM, "out of memory recording %s", info->name); }
        n->refcount = 1; /* dropped below once the outputs hold theirs */
        n->op = op;
        n->nin = nin;
        n->nout = c.nout;
        n->needs_input_grad = needs;
        n->amp_bf16 = vt_amp_bf16();
        n->args = *c.args;
        for (int i = 0; i < nin; i++) {
            if (!in[i]) continue;
            meta_of(&n->in_meta[i], in[i]);
            if (!(needs >> i & 1)) continue;
            if (in[i]->grad_fn) {
                n->next[i].node = in[i]->grad_fn;
                n->next[i].output_nr = in[i]->output_nr;
                __atomic_add_fetch(&in[i]->grad_fn->refcount, 1, __ATOMIC_RELAXED);
            } else {
                n->next[i].leaf = in[i];
                vt_tensor_incref(in[i]);
            }
        }
        n->nsaved = c.nsaved;
        memcpy(n->saved, c.saved, sizeof(vt_tensor *) * (size_t)c.nsaved);
        memcpy(n->saved_version, c.saved_version, sizeof(int64_t) * (size_t)c.nsaved);
        memcpy(n->saved_src, c.saved_src, sizeof(vt_node *) * (size_t)c.nsaved);
        for (int k = 0; k < c.nout; k++) {
            vt_tensor *o = c.out[k];
            meta_of(&n->out_meta[k], o);
            if (o->dtype != VT_FLOAT32) continue; /* indices are not differentiable */
            o->grad_fn = n;
            o->output_nr = k;
            o->requires_grad = 1;
            __atomic_add_fetch(&n->refcount, 1, __ATOMIC_RELAXED);
        }
        vt_node_decref(n);
    } else {
        release_ctx_saved(&c);
    }
    if (inference_on) mark_inference(&c);
    *nout = c.nout;
    for (int k = 0; k < c.nout; k++) out[k] = c.out[k];
    return VT_OK;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* dst += src; dst contiguous float32, same shape */
static int accumulate_into(vt_tensor *dst, vt_tensor *src) {
    vt_tensor *s = vt_contiguous(src);
    if (!s) return vt_last_code();
    float *d = vt_f32(dst);
    const float *p = vt_f32(s);
    int64_t n = vt_numel(dst);
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) d[i] += p[i];
    vt_tensor_decref(s);
    return VT_OK;
}

/* a tensor we may add into in place: nobody else can see its storage */
static int exclusively_owned(const vt_tensor *t) {
    return t->refcount == 1 && t->storage->refcount == 1 && vt_is_contiguous(t) && !t->grad_fn;
}

/* *slot += g, stealing g; *slot may be NULL */
static int accumulate_slot(vt_tensor **slot, vt_tensor *g) {
    if (!*slot) { *slot = g; return VT_OK; }
    if (!exclusively_owned(*slot)) {
        vt_tensor *c = vt_clone(*slot);
        if (!c) { vt_tensor_decref(g); return vt_last_code(); }
        vt_tensor_decref(*slot);
        *slot = c;
    }
    int st = accumulate_into(*slot, g);
    vt_tensor_decref(g);
    return st;
}

/* Leaf gradients are shared state: Python threads running backward passes at once (each on its
 * own graph) may reach the same parameter, and `d[i] += p[i]` from two of them loses updates.
 * One process-wide lock serialises every write of a leaf's .grad (accumulation, the first
 * assignment, Tensor.grad = ...) and of node->retained, as PyTorch's AccumulateGrad locks. Nothing
 * is freed while it is held: a release may need the GIL (core/tensor.h rule 3), whose holder may
 * be waiting for this lock. */
static pthread_mutex_t leaf_lock = PTHREAD_MUTEX_INITIALIZER;
void vt_leaf_grad_lock(void) { pthread_mutex_lock(&leaf_lock); }
void vt_leaf_grad_unlock(void) { pthread_mutex_unlock(&leaf_lock); }

/* leaf.grad += g (stealing g); the stored grad is always a private contiguous tensor */
static int accumulate_leaf(vt_tensor *leaf, vt_tensor *g) {
    vt_tensor *s = NULL; /* the contiguous gradient read by the sum (allocated under the lock) */
    int st = VT_OK;
    pthread_mutex_lock(&leaf_lock);
    /* the leaf's .data may have been given another shape after the forward (as torch, an error) */
    const vt_tensor *have = leaf->grad ? leaf->grad : leaf;
    if (!vt_same_shape(have, g) || !vt_same_shape(leaf, g)) {
        char a[96], b[96];
        st = vt_fail(VT_ERUNTIME, "backward: the gradient of shape %s does not match the leaf's %s of shape %s (was "
                     "its .data replaced by a tensor of another shape?)", vt_shape_str(g->ndim, g->shape, a, sizeof a),
                     leaf->grad ? ".grad" : "data", vt_shape_str(have->ndim, have->shape, b, sizeof b));
    } else if (leaf->grad) {
        if (!(s = vt_contiguous(g))) st = vt_last_code();
        float *d = st ? NULL : vt_f32(leaf->grad);
        const float *p = st ? NULL : vt_f32(s);
        int64_t n = st ? 0 : vt_numel(leaf->grad);
        #pragma omp parallel for if (n > 65536) schedule(static)
        for (int64_t i = 0; i < n; i++) d[i] += p[i];
    } else if (exclusively_owned(g)) {
        leaf->grad = g;
        g = NULL;
    } else if (!(leaf->grad = vt_clone(g))) {
        st = vt_last_code();
    }
    pthread_mutex_unlock(&leaf_lock);
    vt_tensor_decref(s);
    vt_tensor_decref(g);
    return st;
}

/* a new reference to the output n->retained[k], or NULL; the output may be being freed by another
 * thread (its count already 0, vt_node_forget_output waiting for the lock): then it is not taken */
static vt_tensor *retained_ref(vt_node *n, int k) {
    pthread_mutex_lock(&leaf_lock);
    vt_tensor *r = n->retained[k];
    int64_t c = r ? __atomic_load_n(&r->refcount, __ATOMIC_ACQUIRE) : 0;
    while (c > 0 && !__atomic_compare_exchange_n(&r->refcount, &c, c + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {}
    pthread_mutex_unlock(&leaf_lock);
    return c > 0 ? r : NULL;
}

static int check_grad_shape(const vt_node *n, int i, const vt_tensor *g) {
    const vt_meta *m = &n->in_meta[i];
    int ok = g->ndim == m->ndim && g->dtype == VT_FLOAT32;
    for (int d = 0; ok && d < m->ndim; d++) ok = g->shape[d] == m->shape[d];
    if (ok) return VT_OK;
    char b1[128], b2[128];
    return vt_fail(VT_ERUNTIME, "internal: %s backward gave input %d a gradient of shape %s, expected %s",
                   vt_ops[n->op].name, i, vt_shape_str(g->ndim, g->shape, b1, sizeof b1),
                   vt_shape_str(m->ndim, m->shape, b2, sizeof b2));
}

static void release_saved(vt_node *n) {
    for (int i = 0; i < n->nsaved; i++) {
        vt_tensor_decref(n->saved[i]);
        n->saved[i] = NULL;
        vt_node_decref(n->saved_src[i]);
        n->saved_src[i] = NULL;
    }
    n->nsaved = 0;
    n->released = 1;
}

/* the saved slots n keeps as their producers: rebuild them for n's backward (dropped after it).
 * The producer's own saved tensors must be as the forward left them, as for any saved tensor. */
static int rebuild_saved(vt_node *n) {
    for (int i = 0; i < n->nsaved; i++) {
        vt_node *p = n->saved_src[i];
        if (!p || n->saved[i]) continue;
        if (p->released)
            return vt_fail(VT_ERUNTIME, "Trying to backward through the graph a second time (or directly access saved "
                           "tensors after they have already been freed): %s needs the output of %s, whose saved "
                           "tensors are freed; specify retain_graph=True the first time", vt_ops[n->op].name,
                           vt_ops[p->op].name);
        VT_TRY(check_saved_versions(p));
        int64_t t0 = vt_profiling() ? vt_prof_now() : 0;
        VT_TRY(recompute_fn(p->op)(p, &n->saved[i]));
        if (t0) vt_prof_record(p->op, VT_PROF_FORWARD, p->in_meta[0].ndim, p->in_meta[0].shape, t0);
    }
    return VT_OK;
}
static void drop_rebuilt(vt_node *n) {
    for (int i = 0; i < n->nsaved; i++)
        if (n->saved_src[i]) { vt_tensor_decref(n->saved[i]); n->saved[i] = NULL; }
}

typedef struct { vt_node **v; int64_t n, cap; } node_vec;
static int vec_push(node_vec *s, vt_node *n) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 256;
        vt_node **v = realloc(s->v, sizeof *v * (size_t)cap);
        if (!v) return vt_fail(VT_ENOMEM, "out of memory in backward");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = n;
    return VT_OK;
}

/* A node's deps and gbuf are scratch of one backward pass, so two passes (Python threads) must not
 * run through the same node at once: a pass claims each node it collects (visit: 0 -> its stamp)
 * and gives them back when it ends. A node another pass holds is an error, not a race; graphs
 * that share nothing (each thread its own forward, shared leaves) never meet here. */
static int claim_node(vt_node *n, uint64_t stamp) {
    uint64_t free_ = 0;
    if (__atomic_compare_exchange_n(&n->visit, &free_, stamp, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return VT_OK;
    return vt_fail(VT_ERUNTIME, "backward: another thread is running a backward pass through this graph (at %s) "
                   "at the same time; run backward passes that share graph nodes one after the other",
                   vt_ops[n->op].name);
}
static void release_node(vt_node *n) { __atomic_store_n(&n->visit, 0, __ATOMIC_RELEASE); }

/* Leaves with hooks: their gradients of one pass are summed here and go through the hooks once,
 * at the end of the pass, before they are added into .grad (PyTorch runs a leaf's hooks once, on the
 * sum, in AccumulateGrad). */
typedef struct { vt_tensor *leaf; vt_tensor *g; } hooked_leaf;
typedef struct { hooked_leaf *v; int64_t n, cap; } hooked_vec;

/* the pass's gradient for leaf += g (stealing g) */
static int hooked_add(hooked_vec *h, vt_tensor *leaf, vt_tensor *g) {
    for (int64_t j = 0; j < h->n; j++)
        if (h->v[j].leaf == leaf) return accumulate_slot(&h->v[j].g, g);
    if (h->n == h->cap) {
        int64_t cap = h->cap ? h->cap * 2 : 8;
        hooked_leaf *v = realloc(h->v, sizeof *v * (size_t)cap);
        if (!v) { vt_tensor_decref(g); return vt_fail(VT_ENOMEM, "out of memory in backward"); }
        h->v = v;
        h->cap = cap;
    }
    vt_tensor_incref(leaf);
    h->v[h->n++] = (hooked_leaf){leaf, g};
    return VT_OK;
}

/* run each leaf's hooks on its summed gradient, then add it into .grad; frees the table */
static int hooked_flush(hooked_vec *h, int st) {
    for (int64_t j = 0; j < h->n; j++) {
        vt_tensor *leaf = h->v[j].leaf, *g = h->v[j].g;
        if (!st && leaf->hooks && hooks_run) st = hooks_run(leaf->hooks, &g);
        if (!st) st = accumulate_leaf(leaf, g);
        else vt_tensor_decref(g);
        vt_tensor_decref(leaf);
    }
    free(h->v);
    return st;
}

/* leaf.grad += g (stealing g), through the leaf's hooks when it has any */
static int to_leaf(hooked_vec *h, vt_tensor *leaf, vt_tensor *g) {
    return leaf->hooks ? hooked_add(h, leaf, g) : accumulate_leaf(leaf, g);
}

int vt_backward(vt_tensor *root, vt_tensor *grad, int retain_graph) {
    if (!root->requires_grad)
        return vt_fail(VT_ERUNTIME, "element 0 of tensors does not require grad and does not have a grad_fn");
    if (root->dtype != VT_FLOAT32) return vt_fail(VT_ETYPE, "backward: only float32 tensors have gradients");
    vt_tensor *g0;
    if (grad) {
        if (!vt_same_shape(grad, root) || grad->dtype != VT_FLOAT32) {
            char b1[128], b2[128];
            return vt_fail(VT_ESHAPE, "backward: gradient has shape %s (%s), tensor has shape %s (float32)",
                           vt_shape_str(grad->ndim, grad->shape, b1, sizeof b1), vt_dtype_name(grad->dtype),
                           vt_shape_str(root->ndim, root->shape, b2, sizeof b2));
        }
        vt_tensor_incref(grad);
        g0 = grad;
    } else {
        if (vt_numel(root) != 1)
            return vt_fail(VT_ERUNTIME, "grad can be implicitly created only for scalar outputs (shape has %lld elements)",
                           (long long)vt_numel(root));
        g0 = vt_full(VT_FLOAT32, root->ndim, root->shape, 1.0);
        if (!g0) return vt_last_code();
    }
    hooked_vec hooked = {0};
    if (!root->grad_fn) {
        int rst = to_leaf(&hooked, root, g0);
        return hooked_flush(&hooked, rst);
    }

    /* collect the graph: iterative DFS marking each node with this pass's stamp */
    static uint64_t stamp_counter;
    uint64_t stamp = __atomic_add_fetch(&stamp_counter, 1, __ATOMIC_RELAXED);
    node_vec all = {0}, ready = {0}, stack = {0};
    int st = VT_OK;
    vt_node *start = root->grad_fn;
    if ((st = claim_node(start, stamp)) || (st = vec_push(&stack, start))) {
        if (!st) release_node(start); /* claimed but not recorded: give it back */
        goto done;
    }
    while (stack.n) {
        vt_node *n = stack.v[--stack.n];
        if ((st = vec_push(&all, n))) { release_node(n); goto done; }
        if (n->released) {
            st = vt_fail(VT_ERUNTIME, "Trying to backward through the graph a second time (or directly access "
                         "saved tensors after they have already been freed); specify retain_graph=True "
                         "the first time");
            goto done;
        }
        for (int i = 0; i < n->nin; i++) {
            vt_node *m = n->next[i].node;
            if (m && __atomic_load_n(&m->visit, __ATOMIC_ACQUIRE) != stamp) {
                if ((st = claim_node(m, stamp))) goto done;
                if ((st = vec_push(&stack, m))) { release_node(m); goto done; }
            }
        }
    }
    for (int64_t j = 0; j < all.n; j++) {
        all.v[j]->deps = 0;
        memset(all.v[j]->gbuf, 0, sizeof all.v[j]->gbuf);
    }
    for (int64_t j = 0; j < all.n; j++)
        for (int i = 0; i < all.v[j]->nin; i++)
            if (all.v[j]->next[i].node) all.v[j]->next[i].node->deps++;

    start->gbuf[root->output_nr] = g0;
    g0 = NULL;
    if ((st = vec_push(&ready, start))) goto done;
    while (ready.n) {
        vt_node *n = ready.v[--ready.n];
        int any = 0;
        for (int k = 0; k < n->nout; k++) {
            if (!n->gbuf[k]) continue;
            any = 1;
            if (n->hooks[k] && hooks_run && (st = hooks_run(n->hooks[k], &n->gbuf[k]))) goto done;
            vt_tensor *r = retained_ref(n, k);
            if (r) {
                vt_tensor *c = vt_clone(n->gbuf[k]);
                st = c ? accumulate_leaf(r, c) : vt_last_code();
                vt_tensor_decref(r);
                if (st) goto done;
            }
        }
        vt_tensor *gin[VT_MAX_IN] = {0};
        if (any) {
            st = check_saved_versions(n);
            if (!st) st = rebuild_saved(n);
            int64_t t0 = vt_profiling() ? vt_prof_now() : 0;
            int amp_was = vt_amp_set_bf16(n->amp_bf16); /* the forward's precision (core/amp.h) */
            if (!st) st = vt_ops[n->op].backward(n, n->gbuf, gin);
            vt_amp_set_bf16(amp_was);
            if (t0) vt_prof_record(n->op, VT_PROF_BACKWARD, n->in_meta[0].ndim, n->in_meta[0].shape, t0);
            drop_rebuilt(n);
            for (int k = 0; k < n->nout; k++) { vt_tensor_decref(n->gbuf[k]); n->gbuf[k] = NULL; }
            if (st) { for (int i = 0; i < n->nin; i++) vt_tensor_decref(gin[i]); goto done; }
        }
        for (int i = 0; i < n->nin && !st; i++) {
            vt_tensor *g = gin[i];
            gin[i] = NULL;
            if (g && !(n->needs_input_grad >> i & 1)) { vt_tensor_decref(g); g = NULL; }
            if (g && (st = check_grad_shape(n, i, g))) { vt_tensor_decref(g); break; }
            vt_edge *e = &n->next[i];
            int64_t t0 = g && vt_profiling() ? vt_prof_now() : 0;
            vt_meta gm;
            if (t0) meta_of(&gm, g);
            if (!e->node && !e->leaf) { /* an input that needs no gradient */
                vt_tensor_decref(g);
                continue;
            }
            /* into the producing node's gradient slot, or into the leaf's .grad; both take g */
            if (g && (st = e->node ? accumulate_slot(&e->node->gbuf[e->output_nr], g) : to_leaf(&hooked, e->leaf, g)))
                break;
            if (t0) vt_prof_record(n->op, VT_PROF_ACCUMULATE, gm.ndim, gm.shape, t0);
            if (e->node && --e->node->deps == 0 && (st = vec_push(&ready, e->node))) break;
        }
        for (int i = 0; i < n->nin; i++) vt_tensor_decref(gin[i]);
        if (st) goto done;
        if (!retain_graph) release_saved(n);
    }
done:
    st = hooked_flush(&hooked, st);
    vt_tensor_decref(g0);
    for (int64_t j = 0; j < all.n; j++)
        for (int k = 0; k < VT_MAX_OUT; k++) { vt_tensor_decref(all.v[j]->gbuf[k]); all.v[j]->gbuf[k] = NULL; }
    for (int64_t j = 0; j < all.n; j++) release_node(all.v[j]);
    for (int64_t j = 0; j < stack.n; j++) release_node(stack.v[j]);
    free(all.v);
    free(ready.v);
    free(stack.v);
    return st;
}
