/* vitc core: the one tensor struct, its storage, and the rules of ownership.
 *
 * OWNERSHIP (the only place these rules are written; every file follows them)
 * --------------------------------------------------------------------------
 * 1. Storage and tensors are reference counted (atomic counts, so Python threads may share them).
 *    A tensor owns one reference to its storage; views (reshape, permute, slice, expand, alias)
 *    are new tensors holding another reference to the same storage.
 * 2. A function that returns `vt_tensor *` returns a NEW reference (caller must vt_tensor_decref),
 *    unless its comment says "borrowed". Arguments are BORROWED unless the comment says "steals".
 *    On failure a function returns NULL (or a nonzero vt_status) with the error message set
 *    (core/error.h) and owns nothing new.
 * 3. A storage either owns its bytes (allocated by vt_alloc, freed with it) or wraps foreign
 *    memory (a NumPy array): then `release(owner)` is called once when the last reference goes;
 *    the Python binding passes a release that drops the array (taking the GIL itself).
 * 4. Autograd: a tensor owns a reference to `grad_fn` (the node that made it) and to `grad`.
 *    A node owns references to the nodes and leaf tensors its inputs came from, and to the
 *    tensors it saved for backward. Saved tensors are always detached aliases (vt_alias), never
 *    the output itself, so no reference cycle tensor -> node -> tensor can form.
 *    A saved tensor remembers its storage's `version`; backward refuses to use one that an
 *    in-place op has modified since (PyTorch's version counter).
 *    `node->retained[k]` is a weak pointer to an output that asked for retain_grad(); the tensor
 *    clears it when freed.
 * 5. `pyobj` is a weak back-pointer to the Python wrapper (the wrapper owns one reference to the
 *    tensor); the binding uses it to hand out the same Python object for the same tensor.
 * 6. `Tensor.numpy()` is zero-copy: the array's base is the Python wrapper, which keeps the tensor
 *    and its storage alive. `from_numpy` is zero-copy for aligned C-contiguous WRITEABLE
 *    float32/int64/bool arrays: the storage keeps the array alive (rule 3). A read-only array
 *    (np.frombuffer over bytes, np.memmap mode='r', flags.writeable False) is copied, so every
 *    storage is writable memory and in-place ops (copy_, fill_, optimizer steps, running
 *    statistics) never need to ask; PyTorch instead shares it with a warning and a write
 *    crashes. Hence .numpy() may always hand out a writeable view.
 * 7. In-place writes refuse destinations that hold one element in several places (a stride-0,
 *    expanded dimension of size > 1): the result would depend on the write order. A source that
 *    partially overlaps the destination's bytes is read through a temporary copy (copy_).
 *
 * Shapes and strides are counted in elements, not bytes. Strides may be 0 (expand) but never
 * negative. ndim <= VT_MAX_DIMS.
 */
#ifndef VT_TENSOR_H
#define VT_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

#define VT_MAX_DIMS 8

/* VT_BFLOAT16 is a storage dtype (core/bf16.h): tensors of it can be created, copied, viewed,
 * converted and held as optimizer state; compute ops take float32 and refuse it by name. */
typedef enum { VT_FLOAT32 = 0, VT_INT64 = 1, VT_BOOL = 2, VT_BFLOAT16 = 3, VT_NDTYPES } vt_dtype;

typedef struct vt_storage {
    int64_t refcount;
    int64_t version;   /* bumped by every in-place op on these bytes; autograd checks it (node.h) */
    int is_inference;  /* made under inference mode: autograd refuses to save its tensors (node.h) */
    void *data;
    size_t nbytes;
    void (*release)(void *owner); /* NULL: data came from vt_alloc */
    void *owner;
} vt_storage;

struct vt_node;

typedef struct vt_tensor {
    int64_t refcount;
    vt_storage *storage;
    int64_t offset; /* elements from storage->data */
    int ndim;
    vt_dtype dtype;
    int64_t shape[VT_MAX_DIMS];
    int64_t strides[VT_MAX_DIMS];
    /* autograd */
    int requires_grad;      /* leaf flag set by the user, or "has grad_fn" for results */
    int retains_grad;
    struct vt_tensor *grad; /* owned; NULL until a backward reaches it */
    struct vt_node *grad_fn;/* owned; NULL for leaves */
    int output_nr;          /* which output of grad_fn this is */
    void *hooks;            /* owned by autograd, opaque here: a leaf's gradient hooks (node.h) */
    void *pyobj;            /* weak, see rule 5 */
} vt_tensor;

size_t vt_dtype_size(vt_dtype dt);
const char *vt_dtype_name(vt_dtype dt);

/* memory (core/alloc.c): 64-byte aligned, cached by size class under a cap; fault injection for tests */
void *vt_alloc(size_t nbytes);
void vt_free(void *p, size_t nbytes);
void vt_alloc_fail_after(int64_t n); /* the n-th next allocation fails (n<0: never) */
void vt_alloc_clear_cache(void);
void vt_alloc_stats(int64_t *live_bytes, int64_t *cached_bytes, int64_t *peak_bytes);
void vt_alloc_reset_peak(void); /* peak <- live, to measure one region (torch.cuda.reset_peak_memory_stats) */
/* cache cap = max(min_bytes, fraction x highest live bytes seen); trims the cache to it now */
int vt_alloc_set_cache_limit(int64_t min_bytes, double fraction);
typedef struct {
    int64_t allocs, frees;  /* vt_alloc / vt_free calls that succeeded */
    int64_t cache_hits;     /* allocations served from the cache */
    int64_t system_allocs;  /* allocations that went to the system */
    int64_t released;       /* blocks given back to the system (over the cap, trims) */
    int64_t cached_blocks;  /* blocks in the cache now */
} vt_alloc_counts;
void vt_alloc_policy(vt_alloc_counts *counts, int64_t *max_live_bytes, int64_t *cap_bytes, int64_t *min_bytes,
                     double *fraction);
size_t vt_alloc_block_size(size_t nbytes); /* the size class a request of nbytes is served from */

/* construction */
vt_tensor *vt_empty(vt_dtype dt, int ndim, const int64_t *shape);
vt_tensor *vt_zeros(vt_dtype dt, int ndim, const int64_t *shape);
vt_tensor *vt_full(vt_dtype dt, int ndim, const int64_t *shape, double value);
vt_tensor *vt_empty_like(const vt_tensor *t);
vt_tensor *vt_zeros_like(const vt_tensor *t);
vt_tensor *vt_wrap_foreign(vt_dtype dt, int ndim, const int64_t *shape, void *data,
                           void (*release)(void *), void *owner);
/* a view of t's storage with the given geometry (checked against the storage's size) */
vt_tensor *vt_view_of(const vt_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset);
vt_tensor *vt_alias(const vt_tensor *t);      /* same view, no autograd history */
vt_tensor *vt_contiguous(vt_tensor *t);       /* t itself (new ref) when already contiguous */
vt_tensor *vt_clone(const vt_tensor *t);      /* always a fresh contiguous copy */
int vt_copy_into(vt_tensor *dst, const vt_tensor *src); /* same shape & dtype; any strides */

void vt_tensor_incref(vt_tensor *t);
void vt_tensor_decref(vt_tensor *t);
/* Core never looks inside a node: when the last reference to a tensor with a grad_fn or hooks
 * goes, vt_tensor_decref calls this hook, which autograd installs at start-up; it drops the
 * tensor's reference to t->grad_fn (and the node's weak pointer to t, rule 4) and its hooks. */
typedef void (*vt_grad_fn_release_fn)(vt_tensor *t);
void vt_set_grad_fn_release(vt_grad_fn_release_fn fn);
void vt_storage_decref(vt_storage *s);

/* geometry helpers */
int64_t vt_numel(const vt_tensor *t);
int64_t vt_shape_numel(int ndim, const int64_t *shape);
int vt_is_contiguous(const vt_tensor *t);
void vt_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
int vt_same_shape(const vt_tensor *a, const vt_tensor *b);
int vt_check_shape(int ndim, const int64_t *shape, const char *who); /* sizes >= 0, ndim ok */
int vt_normalize_dim(int64_t *dim, int ndim, const char *who);     /* -1 -> ndim-1, range check */
/* VT_ETYPE naming `who` and `what` unless t is present and of dtype dt (float32) */
int vt_require_dtype(const vt_tensor *t, vt_dtype dt, const char *who, const char *what);
int vt_require_f32(const vt_tensor *t, const char *who, const char *what);
/* NumPy broadcasting of two shapes into out (ndim = max); VT_ESHAPE naming `who` if impossible */
int vt_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                        int64_t *out, const char *who);
/* strides of t seen as broadcast to (ndim, shape): 0 on broadcast dims */
void vt_broadcast_strides(const vt_tensor *t, int ndim, const int64_t *shape, int64_t *strides);
char *vt_shape_str(int ndim, const int64_t *shape, char *buf, size_t n); /* "(2, 3)" */

/* every op that writes into an existing tensor calls this once (rule 4: saved-tensor versions) */
static inline void vt_mark_modified(vt_tensor *t) { __atomic_add_fetch(&t->storage->version, 1, __ATOMIC_RELAXED); }

static inline float *vt_f32(const vt_tensor *t) { return (float *)t->storage->data + t->offset; }
static inline int64_t *vt_i64(const vt_tensor *t) { return (int64_t *)t->storage->data + t->offset; }
static inline uint8_t *vt_u8(const vt_tensor *t) { return (uint8_t *)t->storage->data + t->offset; }
static inline uint16_t *vt_bf16(const vt_tensor *t) { return (uint16_t *)t->storage->data + t->offset; }

#endif
