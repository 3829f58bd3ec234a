// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.
//
// The CPU decode step's matrix-vector products (cpu_gemv.py compiles this
// with the machine's C compiler and -march=native, and calls it by ctypes).
//
// One stream's decode step multiplies one activation row by every weight
// of the text model, so it is bound by reading the weights: each weight row
// is streamed once and converted to fp32 in registers. Plain C loops that
// the compiler vectorizes for this CPU (AVX-512, AVX2 or NEON); GCC 12 made
// scalar code of vector-extension conversions, hence loops.
//
//   y[n] = scale[n] * sum_k w[n, k] * x[k] + bias[n]
//
// Weights are fp32, bf16 or int8; activations, scale, bias and y are fp32
// or bf16 (the model's dtype); the sums are fp32, except int8 x bf16 where
// the CPU has byte dot products: exact int32 sums over a 16-bit fixed-point
// copy of x (dot_i8_fixed below).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { F32 = 0, BF16 = 1, I8 = 2 };

/* Fewer weights than this are read by the calling thread alone: waking the
 * pool costs more than it saves (ATen's grain is 32768 elements). */
#define PARALLEL_GRAIN 65536

static inline float bf16_to_f32(uint16_t h)
{
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t f32_to_bf16(float f)
{
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return 0x7fc0;  /* NaN stays NaN */
  }
  u += 0x7fffu + ((u >> 16) & 1u);  /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static inline float load_value(const void * p, int type, int64_t i)
{
  return type == BF16 ? bf16_to_f32(((const uint16_t *)p)[i]) :
         ((const float *)p)[i];
}

/* sum_k w[k] x[k] over [0, len), x fp32, one function per weight type. The
 * 64 partial sums are independent chains (four vectors of 16 on AVX-512),
 * so the loop waits on memory rather than on the FMA's latency; a prefetch
 * 1 KiB ahead (int8 rows: 0.76 vs 1.05 ms for an 8192x2048 weight) keeps
 * the converting loop fed. */
#define PREFETCH_BYTES 1024
#define DOT(name, type, value) \
  static float name(const type * restrict w, const float * restrict x, int64_t len) \
  { \
    float part[64] = {0}; \
    int64_t k = 0; \
    for (; k + 64 <= len; k += 64) { \
      __builtin_prefetch((const char *)(w + k) + PREFETCH_BYTES, 0, 0); \
      for (int j = 0; j < 64; j++) { \
        part[j] += value(w[k + j]) * x[k + j]; \
      } \
    } \
    float s = 0.0f; \
    for (int j = 0; j < 64; j++) { \
      s += part[j]; \
    } \
    for (; k < len; k++) { \
      s += value(w[k]) * x[k]; \
    } \
    return s; \
  }

#define AS_FLOAT(v) ((float)(v))
DOT(dot_f32, float, AS_FLOAT)
DOT(dot_bf16, uint16_t, bf16_to_f32)
DOT(dot_i8, int8_t, AS_FLOAT)

#if defined(__AVX512BF16__)
#include <immintrin.h>
#define HAVE_DPBF16 1
/* bf16 weights and bf16 activations where the CPU multiplies bf16 pairs
 * into fp32 sums itself (vdpbf16ps): one instruction per 32 weights, where
 * the loop above spends three on converting them. */
static float dot_bf16_bf16(const uint16_t * w, const uint16_t * x, int64_t len)
{
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 128 <= len; k += 128) {
    a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + k),
                          (__m512bh)_mm512_loadu_si512(x + k));
    a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + k + 32),
                          (__m512bh)_mm512_loadu_si512(x + k + 32));
    a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(w + k + 64),
                          (__m512bh)_mm512_loadu_si512(x + k + 64));
    a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(w + k + 96),
                          (__m512bh)_mm512_loadu_si512(x + k + 96));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1),
                                               _mm512_add_ps(a2, a3)));
  for (; k < len; k++) {
    s += bf16_to_f32(w[k]) * bf16_to_f32(x[k]);
  }
  return s;
}
#else
#define HAVE_DPBF16 0
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define HAVE_VNNI 1
#else
#define HAVE_VNNI 0
#endif

/* int8 weights times bf16 activations, in integers: converting each weight
 * to fp32 takes three instructions per 16 weights (on two cores: ~24 GB/s
 * of int8 rows, and 8192-wide rows left to ATen's slower kernel; these
 * sums read either shape at ~25-27, near a plain sum's ~30). Instead the
 * row x is rounded to 16-bit fixed point once per call (q = round(x / s),
 * s = max|x| / 32767: within s / 2 of x, finer than bf16's own rounding
 * of its largest values), offset to u = q + 32768 and split into bytes
 * u = 256 hi + lo. The CPU's unsigned-by-signed byte dot products
 * (vpdpbusd) then sum w hi, w lo and w (for the offset) exactly in int32:
 * three instructions per 64 weights. |sum w hi| <= K 127 255 stays in
 * int32 for K <= I8_FIXED_MAX_K. */
#define I8_FIXED_MAX_K 65536
#define Q_MAX 32767

typedef struct
{
  uint8_t * hi;
  uint8_t * lo;
  float step;  /* s */
} fixed_row;

/* Fill r from x (fp32, len K); 0 where every x is finite, else -1 (the
 * caller then takes the float loop, whose sums carry NaN and inf). */
static int to_fixed(const float * x, int64_t K, fixed_row * r)
{
  float top = 0.0f;
  for (int64_t k = 0; k < K; k++) {
    float a = x[k] < 0 ? -x[k] : x[k];
    if (!(a <= 3.4e38f)) {
      return -1;  /* NaN or inf */
    }
    top = a > top ? a : top;
  }
  r->step = top > 0 ? top / Q_MAX : 1.0f;
  for (int64_t k = 0; k < K; k++) {
    int32_t q = (int32_t)__builtin_lrintf(x[k] / r->step);
    q = q > Q_MAX ? Q_MAX : (q < -Q_MAX ? -Q_MAX : q);
    uint32_t u = (uint32_t)(q + 32768);
    r->hi[k] = (uint8_t)(u >> 8);
    r->lo[k] = (uint8_t)(u & 255u);
  }
  return 0;
}

/* Whether int8 rows with bf16 activations take the fixed-point sums, and
 * how long a row they take (0: not on this CPU). */
int64_t kosmos_int8_fixed_max_k(void)
{
  return HAVE_VNNI ? I8_FIXED_MAX_K : 0;
}

/* sum_k w[k] q[k] for one int8 row, exactly. */
static int64_t dot_i8_fixed(const int8_t * w, const fixed_row * r, int64_t len)
{
  int64_t hi = 0, lo = 0, sum = 0;
  int64_t k = 0;
#if HAVE_VNNI
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i h0 = _mm512_setzero_si512(), h1 = h0, l0 = h0, l1 = h0, s0 = h0,
    s1 = h0;
  for (; k + 128 <= len; k += 128) {
    __builtin_prefetch((const char *)(w + k) + PREFETCH_BYTES, 0, 0);
    __builtin_prefetch((const char *)(w + k) + PREFETCH_BYTES + 64, 0, 0);
    __m512i w0 = _mm512_loadu_si512(w + k);
    __m512i w1 = _mm512_loadu_si512(w + k + 64);
    h0 = _mm512_dpbusd_epi32(h0, _mm512_loadu_si512(r->hi + k), w0);
    h1 = _mm512_dpbusd_epi32(h1, _mm512_loadu_si512(r->hi + k + 64), w1);
    l0 = _mm512_dpbusd_epi32(l0, _mm512_loadu_si512(r->lo + k), w0);
    l1 = _mm512_dpbusd_epi32(l1, _mm512_loadu_si512(r->lo + k + 64), w1);
    s0 = _mm512_dpbusd_epi32(s0, ones, w0);
    s1 = _mm512_dpbusd_epi32(s1, ones, w1);
  }
  hi = _mm512_reduce_add_epi32(_mm512_add_epi32(h0, h1));
  lo = _mm512_reduce_add_epi32(_mm512_add_epi32(l0, l1));
  sum = _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
#endif
  for (; k < len; k++) {
    hi += w[k] * (int32_t)r->hi[k];
    lo += w[k] * (int32_t)r->lo[k];
    sum += w[k];
  }
  return 256 * hi + lo - 32768 * sum;
}

static float dot_row(const void * w, int type, int64_t n, int64_t K, const float * x)
{
  if (type == I8) {
    return dot_i8((const int8_t *)w + n * K, x, K);
  }
  if (type == BF16) {
    return dot_bf16((const uint16_t *)w + n * K, x, K);
  }
  return dot_f32((const float *)w + n * K, x, K);
}

/*
 * x: [K], w: [N, K], y: [N]; scale and bias: [N] or NULL. x, scale, bias
 * and y are of act_type. Returns 0, or -1 when x's fp32 copy cannot be
 * allocated.
 */
int kosmos_gemv(
  const void * x, void * y, int act_type,
  const void * w, int w_type, const void * scale, const void * bias,
  int64_t N, int64_t K, int threads)
{
  float * xf = malloc(sizeof(float) * (size_t)(K > 0 ? K : 1));
  if (xf == NULL) {
    return -1;
  }
  for (int64_t k = 0; k < K; k++) {
    xf[k] = load_value(x, act_type, k);
  }
#if HAVE_DPBF16
  const int pairs = w_type == BF16 && act_type == BF16;
#endif
  /* int8 weights with bf16 activations (int8wo) sum in fixed point where
   * the CPU has byte dot products; fp32 activations keep the float loop. */
  fixed_row fixed = {NULL, NULL, 0.0f};
  if (HAVE_VNNI && w_type == I8 && act_type == BF16 && K <= I8_FIXED_MAX_K) {
    fixed.hi = malloc((size_t)(K > 0 ? 2 * K : 1));
    if (fixed.hi == NULL) {
      free(xf);
      return -1;
    }
    fixed.lo = fixed.hi + K;
    if (to_fixed(xf, K, &fixed) != 0) {
      free(fixed.hi);
      fixed.hi = NULL;
    }
  }
  #pragma omp parallel for num_threads(threads) schedule(static) \
    if (N * K >= PARALLEL_GRAIN)
  for (int64_t n = 0; n < N; n++) {
    float v;
    if (fixed.hi != NULL) {
      v = (float)dot_i8_fixed((const int8_t *)w + n * K, &fixed, K) *
        fixed.step;
#if HAVE_DPBF16
    } else if (pairs) {
      v = dot_bf16_bf16((const uint16_t *)w + n * K, (const uint16_t *)x, K);
#endif
    } else {
      v = dot_row(w, w_type, n, K, xf);
    }
    if (scale != NULL) {
      v *= load_value(scale, act_type, n);
    }
    if (bias != NULL) {
      v += load_value(bias, act_type, n);
    }
    if (act_type == BF16) {
      ((uint16_t *)y)[n] = f32_to_bf16(v);
    } else {
      ((float *)y)[n] = v;
    }
  }
  free(fixed.hi);
  free(xf);
  return 0;
}

/*
 * out[n, k] = bf16(w[n, k] * scale[n]) for rows [0, N): int8 weights made
 * bf16 for a GEMM (a prefill's many rows), in one pass. scale is bf16.
 */
void kosmos_dequantize(
  const int8_t * w, const uint16_t * scale, uint16_t * out,
  int64_t N, int64_t K, int threads)
{
  #pragma omp parallel for num_threads(threads) schedule(static) \
    if (N * K >= PARALLEL_GRAIN)
  for (int64_t n = 0; n < N; n++) {
    const int8_t * restrict row = w + n * K;
    uint16_t * restrict dst = out + n * K;
    float s = bf16_to_f32(scale[n]);
    int64_t k = 0;
#if HAVE_DPBF16
    /* The CPU's own fp32 -> bf16 rounding (to nearest even): GCC made a
     * slow loop of the integer rounding below. */
    const __m512 vs = _mm512_set1_ps(s);
    for (; k + 16 <= K; k += 16) {
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128((const __m128i *)(row + k)))), vs);
      _mm256_storeu_si256((__m256i *)(dst + k),
                          (__m256i)_mm512_cvtneps_pbh(v));
    }
#endif
    for (; k < K; k++) {
      /* finite: |w| <= 127 and a finite scale; round to nearest even */
      float v = (float)row[k] * s;
      uint32_t u;
      memcpy(&u, &v, 4);
      u += 0x7fffu + ((u >> 16) & 1u);
      dst[k] = (uint16_t)(u >> 16);
    }
  }
}

/*
 * Activations for int8 GEMMs (quantization w8a8, many rows: the vision
 * tower, a prefill), LLM.int8's scheme: x [M, K] bf16 -> q [M, K] int8,
 * rounded to nearest, with one fp32 scale per row, row_scale[m] = max |x|
 * / 127 over the row's ordinary columns. A column whose largest |x| reaches
 * threshold is an outlier feature (the few channels that carry most of a
 * transformer's activation range): flagged in outlier[K] and written 0 in
 * q, for the caller to multiply in floating point. Returns how many
 * columns are outliers, -1 where x holds NaN or inf (the caller then keeps
 * floating point, which carries them), or -2 where memory runs out.
 *
 * Magnitudes are compared as bit patterns: for |x| (sign bit cleared) the
 * order of the bits is the order of the values, and NaN and inf are the
 * patterns from 0x7f80 up.
 */
int64_t kosmos_quantize_rows(
  const uint16_t * x, int8_t * q, float * row_scale, uint8_t * outlier,
  int64_t M, int64_t K, float threshold, int threads)
{
  uint16_t * top = calloc((size_t)(K > 0 ? K : 1), sizeof(uint16_t));
  uint16_t * keep = malloc(sizeof(uint16_t) * (size_t)(K > 0 ? K : 1));
  if (top == NULL || keep == NULL) {
    free(top);
    free(keep);
    return -2;
  }
  /* Each thread takes whole cache lines of columns down every row. */
  #pragma omp parallel for num_threads(threads) schedule(static) \
    if (M * K >= PARALLEL_GRAIN)
  for (int64_t c = 0; c < K; c += 32) {
    int64_t end = c + 32 < K ? c + 32 : K;
    for (int64_t m = 0; m < M; m++) {
      const uint16_t * row = x + m * K;
      for (int64_t k = c; k < end; k++) {
        uint16_t a = row[k] & 0x7fffu;
        top[k] = a > top[k] ? a : top[k];
      }
    }
  }
  int64_t outliers = 0;
  for (int64_t k = 0; k < K; k++) {
    if (top[k] >= 0x7f80u) {
      free(top);
      free(keep);
      return -1;
    }
    outlier[k] = bf16_to_f32(top[k]) >= threshold;
    keep[k] = outlier[k] ? 0 : 0xffffu;
    outliers += outlier[k];
  }
  #pragma omp parallel for num_threads(threads) schedule(static) \
    if (M * K >= PARALLEL_GRAIN)
  for (int64_t m = 0; m < M; m++) {
    const uint16_t * restrict row = x + m * K;
    int8_t * restrict dst = q + m * K;
    uint16_t most = 0;
    for (int64_t k = 0; k < K; k++) {
      uint16_t a = row[k] & keep[k] & 0x7fffu;
      most = a > most ? a : most;
    }
    float largest = bf16_to_f32(most);
    row_scale[m] = largest > 0 ? largest / 127.0f : 1.0f;
    float inverse = largest > 0 ? 127.0f / largest : 0.0f;
    for (int64_t k = 0; k < K; k++) {
      float v = bf16_to_f32(row[k] & keep[k]) * inverse;
      v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
      dst[k] = (int8_t)__builtin_rintf(v);
    }
  }
  free(top);
  free(keep);
  return outliers;
}

/*
 * out[m, n] = bf16(acc[m, n] row_scale[m] col_scale[n] + extra[m, n]
 * + bias[n]): an int8 GEMM's int32 sums back to the model's bf16, with the
 * outlier columns' floating-point product (extra, fp32) and the bias added
 * before the one rounding. extra and bias may be NULL. Returns 0, or -1
 * when its fp32 copy of the scales cannot be allocated.
 */
int kosmos_int32_rows(
  const int32_t * acc, const float * row_scale, const uint16_t * col_scale,
  const float * extra, const uint16_t * bias, uint16_t * out,
  int64_t M, int64_t N, int threads)
{
  float * cols = malloc(sizeof(float) * (size_t)(2 * (N > 0 ? N : 1)));
  if (cols == NULL) {
    return -1;
  }
  float * add = cols + (N > 0 ? N : 1);
  for (int64_t n = 0; n < N; n++) {
    cols[n] = bf16_to_f32(col_scale[n]);
    add[n] = bias != NULL ? bf16_to_f32(bias[n]) : 0.0f;
  }
  #pragma omp parallel for num_threads(threads) schedule(static) \
    if (M * N >= PARALLEL_GRAIN)
  for (int64_t m = 0; m < M; m++) {
    const int32_t * restrict sums = acc + m * N;
    const float * restrict more = extra != NULL ? extra + m * N : NULL;
    uint16_t * restrict dst = out + m * N;
    const float s = row_scale[m];
    int64_t n = 0;
#if HAVE_DPBF16
    const __m512 vs = _mm512_set1_ps(s);
    for (; n + 16 <= N; n += 16) {
      __m512 v = _mm512_fmadd_ps(
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(sums + n)), vs),
        _mm512_loadu_ps(cols + n), _mm512_loadu_ps(add + n));
      if (more != NULL) {
        v = _mm512_add_ps(v, _mm512_loadu_ps(more + n));
      }
      _mm256_storeu_si256((__m256i *)(dst + n),
                          (__m256i)_mm512_cvtneps_pbh(v));
    }
#endif
    for (; n < N; n++) {
      float v = (float)sums[n] * s * cols[n] + add[n];
      dst[n] = f32_to_bf16(more != NULL ? v + more[n] : v);
    }
  }
  free(cols);
  return 0;
}
