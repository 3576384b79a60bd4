/* vitc kernels: the layer between core and the op families. Kernels compute; they record no
 * autograd and use nothing but core (csrc/core), so every op family may call them and none of them
 * calls an op. Tensors in and out follow core/tensor.h's ownership rules. */
#ifndef VT_KERNELS_H
#define VT_KERNELS_H
#include "activation.h" /* pointwise activations, GELU with its gradient */
#include "arith.h"      /* broadcasting add, mul, scale */
#include "conv_direct.h" /* direct stride-1 conv for few output channels */
#include "cpu.h"        /* whether the AVX2 + FMA kernels may run */
#include "fastmath.h"   /* vectorizable exp, tanh, sigmoid, normal CDF */
#include "gemm.h"       /* sgemm: own kernel or OpenBLAS; packed B panels */
#include "map.h"        /* a row function over broadcast operands */
#include "matmul.h"     /* matmul, linear and linear's gradients */
#include "reduce.h"     /* reduction passes, sum over dims, sum_to */
#include "view.h"       /* reshape, permute */
#endif
