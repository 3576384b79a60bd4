/* vitc kernels: pointwise activations (no autograd; new references or NULL with the error set,
 * core/tensor.h rules). */
#ifndef VT_KERNELS_ACTIVATION_H
#define VT_KERNELS_ACTIVATION_H
#include "../core/tensor.h"

/* what vt_k_act computes: y = f(x) from a; or a backward kind from a = the incoming gradient and
 * b = the saved output y (TANH, SIGMOID, RELU) or the saved input x (the others) */
enum {
    A_TANH, A_SIGMOID, A_RELU, A_LEAKY, A_SILU, A_GELU, A_GELU_TANH,               /* y = f(x) */
    A_TANH_BW, A_SIGMOID_BW, A_RELU_BW,                                            /* (g, y) */
    A_LEAKY_BW, A_SILU_BW, A_GELU_BW, A_GELU_TANH_BW,                              /* (g, x) */
};
/* kind applied elementwise to float32 a (and b for backward kinds, broadcast); c is leaky_relu's
 * negative slope; `who` names the op in errors */
vt_tensor *vt_k_act(const char *who, int kind, float c, const vt_tensor *a, const vt_tensor *b);

/* GELU, exact erf form (approximate = 0) or tanh form (approximate = 1) */
vt_tensor *vt_k_gelu(const vt_tensor *x, int approximate);
/* g ⊙ GELU'(x), the gradient through a GELU whose input was x */
vt_tensor *vt_k_gelu_backward(const vt_tensor *g, const vt_tensor *x, int approximate);
/* *a = GELU(h) and *d = GELU'(h), new contiguous tensors of h's shape, in one pass (the FFN
 * backward needs both): a has vt_k_gelu's bits and g ⊙ d vt_k_gelu_backward(g, h)'s */
int vt_gelu_with_grad(const vt_tensor *h, int approximate, vt_tensor **a, vt_tensor **d);
/* out[0:n) = GELU(in[0:n)) on contiguous floats, the same bits as vt_k_gelu */
void vt_gelu_floats(float *out, const float *in, int64_t n, int approximate);

#endif
