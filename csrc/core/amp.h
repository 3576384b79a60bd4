/* vitc core: the bf16 mixed-precision switch (vitc.autocast). One process-wide flag, read by the
 * GEMM entry points (kernels/gemm.c hands off to kernels/gemm_bf16.c when it is on) and captured
 * per recorded node by autograd, which sets it around that node's backward, so a backward runs
 * its products in the precision its forward ran in, wherever .backward() is called. */
#ifndef VT_AMP_H
#define VT_AMP_H

/* 1 while the GEMMs take bf16 inputs (f32 accumulation and outputs), else 0 */
int vt_amp_bf16(void);
/* set the flag (0 or 1); returns the previous value */
int vt_amp_set_bf16(int on);

#endif
