// Portable SIMD for the CPU backend's hand-written loops (normalizations, Gelu, attention).
//
// A vector is 16 floats as a GCC vector extension: the compiler lowers it to whatever the
// function is compiled for. Kernels mark their hot loops TANDEM_SIMD_CLONES, which (GCC on
// x86-64) builds each such function three times — AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) and
// the baseline — and picks one at load time from the CPU it runs on. The helpers below are
// always inlined into those clones, so they are compiled for the clone's instruction set.
//
// exp, erf, tanh and sigmoid are polynomial approximations (about 2 float32 ulp for exp; about
// 1.5e-7 absolute for erf), checked against the reference kernels in the CPU-vs-ref tests.
#pragma once

#include <cstdint>
#include <cstring>

// A function taking or returning a 64-byte vector compiled for a target without AVX-512 gets a
// "-Wpsabi" note about the calling convention; these helpers are always inlined, so the ABI
// never matters.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_ADDRESS__)
#define TANDEM_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TANDEM_SIMD_CLONES
#endif
#define TANDEM_SIMD_INLINE __attribute__((always_inline)) inline

namespace tandem::cpu::simd {

constexpr int64_t kWidth = 16;  // floats per vector
typedef float vfloat __attribute__((vector_size(64)));
typedef int32_t vint __attribute__((vector_size(64)));

TANDEM_SIMD_INLINE vfloat splat(float v) {
  // (Not vfloat{} + v: -0.0 + 0.0 is +0.0, so that is a real addition before the broadcast.)
  vfloat r;
  for (int i = 0; i < 16; ++i) r[i] = v;
  return r;
}
TANDEM_SIMD_INLINE vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TANDEM_SIMD_INLINE void store(float* p, vfloat v) {
  std::memcpy(p, &v, sizeof v);
}
// The first n (< kWidth) lanes from p; the others are `fill`.
TANDEM_SIMD_INLINE vfloat load_partial(const float* p, int64_t n, float fill = 0.0f) {
  vfloat v = splat(fill);
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
TANDEM_SIMD_INLINE void store_partial(float* p, vfloat v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

TANDEM_SIMD_INLINE vfloat max(vfloat a, vfloat b) {
  return a > b ? a : b;
}
TANDEM_SIMD_INLINE vfloat min(vfloat a, vfloat b) {
  return a < b ? a : b;
}
TANDEM_SIMD_INLINE vfloat abs(vfloat a) {
  return (vfloat)((vint)a & 0x7fffffff);
}
// a with the sign of s.
TANDEM_SIMD_INLINE vfloat copysign(vfloat a, vfloat s) {
  return (vfloat)(((vint)a & 0x7fffffff) | ((vint)s & (int32_t)0x80000000));
}

typedef float vfloat8 __attribute__((vector_size(32)));
typedef float vfloat4 __attribute__((vector_size(16)));

// Sum and maximum of the 16 lanes (halving tree).
TANDEM_SIMD_INLINE float reduce_add(vfloat v) {
  vfloat8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
              __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  vfloat4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}
TANDEM_SIMD_INLINE float reduce_max(vfloat v) {
  vfloat8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  vfloat8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  vfloat8 a = lo > hi ? lo : hi;
  vfloat4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3),
          d = __builtin_shufflevector(a, a, 4, 5, 6, 7);
  vfloat4 b = c > d ? c : d;
  const float m0 = b[0] > b[2] ? b[0] : b[2], m1 = b[1] > b[3] ? b[1] : b[3];
  return m0 > m1 ? m0 : m1;
}

// e^x = 2^n * 2^f with n = round(x log2 e) and f = x log2 e - n in [-1/2, 1/2]; 2^f by a
// degree-5 polynomial fitted for relative error (2.4e-7 at most, about 2 ulp), 2^n built in the
// exponent bits. x is first clamped to [-86.6, 88.3] (n in [-125, 127], so 2^n stays a normal
// float): far below the range the result is e^-86.6 (2.4e-38, as good as 0 next to any sum it
// joins), far above it saturates at 2.2e38; NaN stays NaN.
TANDEM_SIMD_INLINE vfloat exp(vfloat x) {
  const vfloat lo = splat(-86.6f), hi = splat(88.3f);
  // Written so that a NaN x fails both tests and passes through.
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // Adding 1.5 * 2^23 rounds x log2 e to an integer n held in the low mantissa bits.
  const float log2e = 1.44269504088896341f;
  const vfloat shifter = splat(12582912.0f);
  const vfloat t = x * log2e + shifter;
  const vfloat n = t - shifter;
  const vfloat f = x * log2e - n;
  vfloat p = splat(1.32764654699713e-3f);
  p = p * f + 9.675541892647743e-3f;
  p = p * f + 5.550713464617729e-2f;
  p = p * f + 2.4022120237350464e-1f;
  p = p * f + 6.931469440460205e-1f;
  p = p * f + 1.0000001192092896f;
  // 2^n: n + 127 in the exponent field.
  const vint scale = ((vint)t - ((vint)shifter - 127)) << 23;
  return p * (vfloat)scale;
}

// erf(x), Abramowitz & Stegun 7.1.26: 1 - (a1 t + ... + a5 t^5) e^(-x^2), t = 1 / (1 + p|x|),
// absolute error below 1.5e-7; odd in x.
TANDEM_SIMD_INLINE vfloat erf(vfloat x) {
  vfloat a = abs(x);
  vfloat t = 1.0f / (a * 0.3275911f + 1.0f);
  vfloat q = splat(1.061405429f);
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  vfloat y = 1.0f - q * t * exp(-a * a);
  return copysign(y, x);
}

// tanh(x) = (1 - e) / (1 + e) with e = e^(-2|x|), signed; never overflows.
TANDEM_SIMD_INLINE vfloat tanh(vfloat x) {
  vfloat e = exp(abs(x) * -2.0f);
  return copysign((1.0f - e) / (1.0f + e), x);
}

// 1 / (1 + e^-x).
TANDEM_SIMD_INLINE vfloat sigmoid(vfloat x) {
  return 1.0f / (1.0f + exp(-x));
}

}  // namespace tandem::cpu::simd

#pragma GCC diagnostic pop
