// Prepended to every kernel file when it is built (OpenClContext.Build): the precision the host asked for, and the
// rounding rules that make a kernel agree with the CPU reference.
//   real  double with -DUSE_F64 (needs cl_khr_fp64), float otherwise.
//   No contraction of a·b + c into one fused operation: the reference's definitions round the product and the sum
//   apart (VectorKernels.Axpy; VectorKernelsTests holds it), and on
//   outputs whose terms nearly cancel (a handful of terms, as in one short head) a fused rounding shows as a relative
//   difference far past 1e-12.
#ifdef USE_F64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif
#pragma OPENCL FP_CONTRACT OFF
