// Compiled CPU kernel of gst_mm's sum compositing (gst_mm/splatting/render.py).
//
// Same conventions and semantics as the torch renderer's `_SumSplat`:
//   * pixel (row i, col j) has its centre at (j + 0.5, i + 0.5);
//   * q = 0.5 (a dx^2 + c dy^2) + b dx dy, (dx, dy) = mean - pixel centre, conic (a, b, c);
//   * raw = opacity exp(-q); a pair is skipped when q < 0 or raw < 1/255;
//     alpha = min(0.999, raw); d alpha / d q = -raw where the pair is kept and raw <= 0.999
//     (zero where the clamp is active);
//   * rgb[p] = sum alpha colour, acc[p] = sum alpha over the pairs of pixel p;
//   * optionally the background, as render() composites it:
//     out[p] = rgb[p] + (1 - min(acc[p], 1)) bg[p] (bg an image or one colour).
//
// Pairs are given as *spans* (S, 4) int32 rows (gaussian, row, first column, count):
// the pixels (row, first .. first + count - 1) of one Gaussian's window. Inside a span,
// only the columns that can reach alpha >= 1/255 on that row are evaluated (the exact
// row interval of the cut-off ellipse, padded by 2 px; every candidate pixel is still
// tested exactly as above), so windows wider than the cut-off cost nothing.
//
// Work split (ATen's intra-op thread count, OpenMP): the forward splits the image by
// rows (every pixel written by one thread, through a planar row buffer), the backward
// splits the Gaussians (each Gaussian's gradient summed by one thread: float lanes of 16
// columns, reduced in double) and recomputes the pair values instead of storing them.
// No atomics; results do not depend on the thread count or schedule. Columns are
// processed in blocks of 16 with branch-free arithmetic (float: a Cephes-style exp), and
// the float code is compiled for x86-64-v4 / v3 / baseline and picked at load time.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__linux__)
#include <stdlib.h>
#include <sys/mman.h>
#endif

namespace {

// Helpers are force-inlined: GCC does not inline a plain `inline` function into the
// ISA-specific clones below (and the loops would then not vectorise).
#define GST_INLINE __attribute__((always_inline)) inline

constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr int kPad = 2;                 // px of slack around the analytic row interval
constexpr double kMinConicA = 1e-4;     // a < this (sigma_x > ~100 px): no narrowing

template <typename T>
struct Gauss {
  T mx, my, a, b, c, op;
  double qmax;   // ln(255 opacity): raw >= 1/255  <=>  q <= qmax
  bool skip;     // no pixel can be kept (opacity < 1/255 or non-finite parameters)
  bool narrow;   // the analytic row interval may be used
};

template <typename T>
std::vector<Gauss<T>> load_gaussians(const T* means, const T* conics, const T* opac,
                                     int64_t n) {
  std::vector<Gauss<T>> gs(static_cast<size_t>(n));
  const T thr = static_cast<T>(kAlphaThreshold);
  for (int64_t i = 0; i < n; ++i) {
    Gauss<T>& g = gs[i];
    g.mx = means[2 * i];
    g.my = means[2 * i + 1];
    g.a = conics[3 * i];
    g.b = conics[3 * i + 1];
    g.c = conics[3 * i + 2];
    g.op = opac[i];
    const bool finite = std::isfinite(g.mx) && std::isfinite(g.my) && std::isfinite(g.a) &&
                        std::isfinite(g.b) && std::isfinite(g.c) && std::isfinite(g.op);
    // raw = op exp(-q) <= op for q >= 0: nothing is kept when op < 1/255 (also NaN).
    // Non-finite parameters are left to the exact per-pixel test (no narrowing).
    g.skip = !(g.op >= thr);
    g.qmax = g.skip ? 0.0 : std::max(0.0, std::log(255.0 * static_cast<double>(g.op)));
    g.narrow = finite && static_cast<double>(g.a) >= kMinConicA;
  }
  return gs;
}

// Columns [lo, hi] of `row` (inclusive, clipped to the span [c0, c1]) that may hold a
// kept pair; false when none.
template <typename T>
GST_INLINE bool row_columns(const Gauss<T>& g, int64_t row, int64_t c0, int64_t c1,
                        int64_t* lo, int64_t* hi) {
  if (g.skip || c1 < c0) return false;
  if (!g.narrow) {
    *lo = c0;
    *hi = c1;
    return true;
  }
  const double a = g.a, b = g.b, c = g.c;
  const double dy = static_cast<double>(g.my) - (static_cast<double>(row) + 0.5);
  // q(dx) <= qmax  <=>  0.5 a dx^2 + b dy dx + (0.5 c dy^2 - qmax) <= 0
  const double disc = (b * dy) * (b * dy) - a * (c * dy * dy - 2.0 * g.qmax);
  const double sq = disc > 0 ? std::sqrt(disc) : 0.0;
  const double dx_lo = (-b * dy - sq) / a, dx_hi = (-b * dy + sq) / a;
  const double mx = g.mx;
  // pixel centre j + 0.5 = mx - dx
  const double jl = std::ceil(mx - dx_hi - 0.5) - kPad;
  const double jh = std::floor(mx - dx_lo - 0.5) + kPad;
  if (!(jl <= jh)) return false;
  const double l = std::max(jl, static_cast<double>(c0));
  const double h = std::min(jh, static_cast<double>(c1));
  if (l > h) return false;
  *lo = static_cast<int64_t>(l);
  *hi = static_cast<int64_t>(h);
  return true;
}

// Counting sort of span indices by `key` (column `col` of the spans) into buckets
// [0, nkeys); spans whose key is outside are dropped. Stable.
void bucket_spans(const int32_t* spans, int64_t s, int col, int64_t nkeys,
                  std::vector<int64_t>* ptr, std::vector<int32_t>* order) {
  ptr->assign(static_cast<size_t>(nkeys + 1), 0);
  for (int64_t i = 0; i < s; ++i) {
    const int64_t k = spans[4 * i + col];
    if (k >= 0 && k < nkeys) ++(*ptr)[k + 1];
  }
  for (int64_t k = 0; k < nkeys; ++k) (*ptr)[k + 1] += (*ptr)[k];
  order->assign(static_cast<size_t>((*ptr)[nkeys]), 0);
  std::vector<int64_t> fill(ptr->begin(), ptr->end() - 1);
  for (int64_t i = 0; i < s; ++i) {
    const int64_t k = spans[4 * i + col];
    if (k >= 0 && k < nkeys) (*order)[fill[k]++] = static_cast<int32_t>(i);
  }
}

int thread_count() { return std::max(1, at::get_num_threads()); }

// Threads for a pass of about `work` pixel pairs + pixels: one per ~64k (a thread
// team costs more than it saves on tiny images, and a lot when a core is busy).
int thread_count(int64_t work) {
  constexpr int64_t kWorkPerThread = 65536;
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(thread_count(), work / kWorkPerThread)));
}

int64_t span_pairs(const int32_t* spans, int64_t s) {
  int64_t total = 0;
  for (int64_t i = 0; i < s; ++i) total += std::max<int32_t>(spans[4 * i + 3], 0);
  return total;
}

void check_inputs(const torch::Tensor& means, const torch::Tensor& conics,
                  const torch::Tensor& colors, const torch::Tensor& opac,
                  const torch::Tensor& spans) {
  TORCH_CHECK(means.device().is_cpu(), "sum_splat: CPU tensors only");
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 2, "means must be (N, 2)");
  const int64_t n = means.size(0);
  TORCH_CHECK(conics.dim() == 2 && conics.size(0) == n && conics.size(1) == 3,
              "conics must be (N, 3)");
  TORCH_CHECK(colors.dim() == 2 && colors.size(0) == n, "colors must be (N, C)");
  TORCH_CHECK(opac.dim() == 1 && opac.size(0) == n, "opacities must be (N,)");
  TORCH_CHECK(spans.dim() == 2 && spans.size(1) == 4 && spans.scalar_type() == torch::kInt32,
              "spans must be (S, 4) int32");
  for (const auto* t : {&means, &conics, &colors, &opac, &spans}) {
    TORCH_CHECK(t->is_contiguous() && t->device().is_cpu(), "inputs must be contiguous CPU");
  }
  for (const auto* t : {&conics, &colors, &opac}) {
    TORCH_CHECK(t->scalar_type() == means.scalar_type(), "inputs must share one dtype");
  }
}

// ---------------------------------------------------------------- per-span loops
// exp for the float kernel: Cephes' expf (Cody-Waite reduction, degree-5 polynomial,
// ~1 ulp, as torch's vectorised exp), branch-free so the span loops vectorise. Used
// only for the alpha of pairs, i.e. arguments -q <= 0; clamped to [-87, 0] (exp(-87)
// is far below 1/255, and lanes with q < 0 or NaN are masked out by the caller).
GST_INLINE float exp_nonpos(float x) {
  x = x > -87.0f ? x : -87.0f;
  x = x < 0.0f ? x : 0.0f;
  const float shift = 12582912.0f;  // 1.5 * 2^23: round to nearest integer
  float k = x * 1.44269504088896341f + shift;
  k -= shift;
  const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

GST_INLINE double exp_nonpos(double x) { return std::exp(x); }

// Gradient sums of one Gaussian.
struct GradSums {
  double ga = 0, gb = 0, gc = 0, gmx = 0, gmy = 0, gop = 0;
};

constexpr int kLanes = 16;  // columns per block: one AVX-512 float vector

// Alphas of the columns j0 .. j0 + kLanes - 1 of one row of `g` (zero from lane `len`
// on); with `grad`, also w = raw and e = exp(-q) where the pair is kept and unclamped
// (zero elsewhere): dL/dq = -g_alpha w, dL/d opacity = g_alpha e. A fixed trip count
// and no branches, so it compiles to whole vectors (no scalar remainder loop).
template <typename T, bool grad>
GST_INLINE void block_alphas(const Gauss<T>& g, T dy, int64_t j0, int len, T* alpha, T* w,
                             T* ew) {
  const T thr = static_cast<T>(kAlphaThreshold), amax = static_cast<T>(kAlphaMax);
  const T half = static_cast<T>(0.5);
  const T cdy2 = g.c * dy * dy, bdy = g.b * dy, a = g.a, op = g.op;
  const T x0 = g.mx - (static_cast<T>(j0) + half);
#pragma omp simd
  for (int t = 0; t < kLanes; ++t) {
    const T dx = x0 - static_cast<T>(t);
    const T q = half * (a * dx * dx + cdy2) + bdy * dx;
    const T e = exp_nonpos(-q);
    const T raw = op * e;
    const bool keep = (t < len) & (q >= 0) & (raw >= thr);
    alpha[t] = keep ? (raw < amax ? raw : amax) : T(0);
    if constexpr (grad) {
      const bool unclamped = keep & (raw <= amax);
      w[t] = unclamped ? raw : T(0);
      ew[t] = unclamped ? e : T(0);
    }
  }
}

// Forward of the columns lo..hi of one span (3 colour channels) into the planar row
// buffer `buf` (R, G, B, A planes of `stride` >= width + kLanes floats each, so a block
// past the span or the row end stays inside its plane; past-the-span lanes add zero).
template <typename T>
GST_INLINE void span_forward3(const Gauss<T>& g, T dy, int64_t lo, int64_t hi,
                              int64_t stride, const T* col, T* buf) {
  const T c0 = col[0], c1 = col[1], c2 = col[2];
  alignas(64) T al[kLanes];
  for (int64_t j0 = lo; j0 <= hi; j0 += kLanes) {
    const int len = static_cast<int>(std::min<int64_t>(hi - j0 + 1, kLanes));
    block_alphas<T, false>(g, dy, j0, len, al, nullptr, nullptr);
    T* __restrict r = buf + j0;
    T* __restrict gg = buf + stride + j0;
    T* __restrict b = buf + 2 * stride + j0;
    T* __restrict ac = buf + 3 * stride + j0;
#pragma omp simd
    for (int t = 0; t < kLanes; ++t) {
      const T alpha = al[t];
      const bool in = t < len;  // a NaN colour must not reach pixels past the span
      r[t] += in ? alpha * c0 : T(0);
      gg[t] += in ? alpha * c1 : T(0);
      b[t] += in ? alpha * c2 : T(0);
      ac[t] += alpha;
    }
  }
}

// Per-lane gradient sums of one Gaussian (3 colour channels), reduced in double at its
// end.
template <typename T>
struct alignas(64) LaneSums {
  T ga[kLanes], gb[kLanes], gc[kLanes], gmx[kLanes], gmy[kLanes], gop[kLanes];
  T c0[kLanes], c1[kLanes], c2[kLanes];
};

template <typename T>
GST_INLINE void lane_update(LaneSums<T>* L, int t, bool in, const Gauss<T>& g, T dx, T dy,
                            T g0, T g1, T g2, T ga_t, T al, T w, T ew, T c0, T c1, T c2) {
  const T g_alpha = ga_t + g0 * c0 + g1 * c1 + g2 * c2;
  L->c0[t] += in ? g0 * al : T(0);
  L->c1[t] += in ? g1 * al : T(0);
  L->c2[t] += in ? g2 * al : T(0);
  const T gq = in ? -g_alpha * w : T(0);
  L->gop[t] += in ? g_alpha * ew : T(0);
  const T hx = gq * dx;
  L->ga[t] += hx * dx;
  L->gb[t] += hx * dy;
  L->gc[t] += gq * dy * dy;
  L->gmx[t] += (g.a * dx + g.b * dy) * gq;
  L->gmy[t] += (g.c * dy + g.b * dx) * gq;
}

// Backward of the columns lo..hi of one span (3 colour channels) into the lane sums.
// (Reading the interleaved output gradient directly is faster than a planar copy.)
template <typename T>
GST_INLINE void span_backward3(const Gauss<T>& g, T dy, int64_t lo, int64_t hi,
                               int64_t width, const T* col, const T* gr_row, const T* ga_row,
                               LaneSums<T>* L) {
  const T c0 = col[0], c1 = col[1], c2 = col[2];
  const T half = static_cast<T>(0.5);
  alignas(64) T al[kLanes], w[kLanes], ew[kLanes];
  for (int64_t j0 = lo; j0 <= hi; j0 += kLanes) {
    const int len = static_cast<int>(std::min<int64_t>(hi - j0 + 1, kLanes));
    block_alphas<T, true>(g, dy, j0, len, al, w, ew);
    const T* __restrict gr = gr_row + 3 * j0;
    const T* __restrict ga = ga_row + j0;
    const T x0 = g.mx - (static_cast<T>(j0) + half);
    if (j0 + kLanes <= width) {
#pragma omp simd
      for (int t = 0; t < kLanes; ++t) {
        lane_update(L, t, t < len, g, x0 - static_cast<T>(t), dy, gr[3 * t], gr[3 * t + 1],
                    gr[3 * t + 2], ga[t], al[t], w[t], ew[t], c0, c1, c2);
      }
    } else {
      for (int t = 0; t < len; ++t) {
        lane_update(L, t, true, g, x0 - static_cast<T>(t), dy, gr[3 * t], gr[3 * t + 1],
                    gr[3 * t + 2], ga[t], al[t], w[t], ew[t], c0, c1, c2);
      }
    }
  }
}

// Any number of channels (scalar loops).
template <typename T>
GST_INLINE void span_forward_any(const Gauss<T>& g, T dy, int64_t lo, int64_t hi,
                                 const T* col, int64_t nc, T* rgb_row, T* acc_row) {
  const T thr = static_cast<T>(kAlphaThreshold), amax = static_cast<T>(kAlphaMax);
  const T half = static_cast<T>(0.5);
  for (int64_t j = lo; j <= hi; ++j) {
    const T dx = g.mx - (static_cast<T>(j) + half);
    const T q = half * (g.a * dx * dx + g.c * dy * dy) + g.b * dy * dx;
    const T raw = g.op * exp_nonpos(-q);
    if (!((q >= 0) & (raw >= thr))) continue;
    const T alpha = raw < amax ? raw : amax;
    for (int64_t ch = 0; ch < nc; ++ch) rgb_row[j * nc + ch] += alpha * col[ch];
    acc_row[j] += alpha;
  }
}

template <typename T>
GST_INLINE void span_backward_any(const Gauss<T>& g, T dy, int64_t lo, int64_t hi,
                                  const T* col, int64_t nc, const T* gr_row, const T* ga_row,
                                  GradSums* s, double* g_col) {
  const T thr = static_cast<T>(kAlphaThreshold), amax = static_cast<T>(kAlphaMax);
  const T half = static_cast<T>(0.5);
  for (int64_t j = lo; j <= hi; ++j) {
    const T dx = g.mx - (static_cast<T>(j) + half);
    const T q = half * (g.a * dx * dx + g.c * dy * dy) + g.b * dy * dx;
    const T e = exp_nonpos(-q);
    const T raw = g.op * e;
    if (!((q >= 0) & (raw >= thr))) continue;
    const T alpha = raw < amax ? raw : amax;
    T g_alpha = ga_row[j];
    for (int64_t ch = 0; ch < nc; ++ch) {
      g_alpha += gr_row[j * nc + ch] * col[ch];
      g_col[ch] += static_cast<double>(gr_row[j * nc + ch] * alpha);
    }
    if (raw <= amax) {
      const double gq = -static_cast<double>(g_alpha) * raw, x = dx, y = dy;
      s->ga += gq * x * x;
      s->gb += gq * x * y;
      s->gc += gq * y * y;
      s->gmx += (static_cast<double>(g.a) * x + static_cast<double>(g.b) * y) * gq;
      s->gmy += (static_cast<double>(g.c) * y + static_cast<double>(g.b) * x) * gq;
      s->gop += static_cast<double>(g_alpha) * e;
    }
  }
}

// ---------------------------------------------------------------- whole-image passes
// Background of pixel j of a row: bg_row[j * pix_stride + ch] (pix_stride 0 for one
// colour). Composited as render.py does: out = rgb + (1 - min(acc, 1)) * bg.
template <typename T>
GST_INLINE T clamp1(T a) { return a > T(1) ? T(1) : a; }  // NaN stays NaN, as torch.clamp

// Planar row buffer -> interleaved output row (composited over the background when
// given). One loop per background layout, so each has constant strides and vectorises.
template <typename T>
GST_INLINE void interleave_row(const T* buf, int64_t stride, int64_t width, const T* bg_row,
                               int64_t bg_pix_stride, T* __restrict rgb_row,
                               T* __restrict acc_row) {
  const T* __restrict r = buf;
  const T* __restrict gg = buf + stride;
  const T* __restrict b = buf + 2 * stride;
  const T* __restrict a = buf + 3 * stride;
  if (bg_row == nullptr) {
    for (int64_t j = 0; j < width; ++j) {
      rgb_row[3 * j] = r[j];
      rgb_row[3 * j + 1] = gg[j];
      rgb_row[3 * j + 2] = b[j];
      acc_row[j] = a[j];
    }
  } else if (bg_pix_stride == 0) {
    const T b0 = bg_row[0], b1 = bg_row[1], b2 = bg_row[2];
    for (int64_t j = 0; j < width; ++j) {
      const T t = T(1) - clamp1(a[j]);
      rgb_row[3 * j] = r[j] + t * b0;
      rgb_row[3 * j + 1] = gg[j] + t * b1;
      rgb_row[3 * j + 2] = b[j] + t * b2;
      acc_row[j] = a[j];
    }
  } else {
    const T* __restrict bg = bg_row;
    for (int64_t j = 0; j < width; ++j) {
      const T t = T(1) - clamp1(a[j]);
      rgb_row[3 * j] = r[j] + t * bg[3 * j];
      rgb_row[3 * j + 1] = gg[j] + t * bg[3 * j + 1];
      rgb_row[3 * j + 2] = b[j] + t * bg[3 * j + 2];
      acc_row[j] = a[j];
    }
  }
}

// Forward of rows [r0, r1): every span of those rows, in span order within a row.
// Three channels accumulate in the planar row buffer `buf` (4 planes of `stride`),
// interleaved into the output once per row (and composited over `bg` when given).
template <typename T>
GST_INLINE void forward_rows(const Gauss<T>* gs, const T* colors, const int32_t* spans,
                             const int64_t* row_ptr, const int32_t* order, int64_t n,
                             int64_t nc, int64_t r0, int64_t r1, int64_t width, T* rgb,
                             T* acc, T* buf, int64_t stride, const T* bg,
                             int64_t bg_pix_stride, int64_t bg_row_stride) {
  const T half = static_cast<T>(0.5);
  for (int64_t row = r0; row < r1; ++row) {
    T* rgb_row = rgb + row * width * nc;
    T* acc_row = acc + row * width;
    const T* bg_row = bg != nullptr ? bg + row * bg_row_stride : nullptr;
    if (row_ptr[row] == row_ptr[row + 1]) {  // no Gaussian: rgb 0, acc 0
      std::fill(acc_row, acc_row + width, T(0));
      if (bg_row != nullptr) {
        for (int64_t j = 0; j < width; ++j) {
          for (int64_t ch = 0; ch < nc; ++ch) {
            rgb_row[j * nc + ch] = T(0) + (T(1) - T(0)) * bg_row[j * bg_pix_stride + ch];
          }
        }
      } else {
        std::fill(rgb_row, rgb_row + width * nc, T(0));
      }
      continue;
    }
    const T py = static_cast<T>(row) + half;
    if (nc == 3) {
      std::fill(buf, buf + 4 * stride, T(0));
    } else {
      std::fill(acc_row, acc_row + width, T(0));
      std::fill(rgb_row, rgb_row + width * nc, T(0));
    }
    for (int64_t k = row_ptr[row]; k < row_ptr[row + 1]; ++k) {
      const int32_t* sp = spans + 4 * static_cast<int64_t>(order[k]);
      const int64_t gid = sp[0];
      if (gid < 0 || gid >= n) continue;
      const Gauss<T>& g = gs[gid];
      int64_t lo, hi;
      if (!row_columns(g, row, std::max<int64_t>(sp[2], 0),
                       std::min<int64_t>(static_cast<int64_t>(sp[2]) + sp[3], width) - 1,
                       &lo, &hi)) {
        continue;
      }
      const T dy = g.my - py;
      if (nc == 3) {
        span_forward3(g, dy, lo, hi, stride, colors + gid * 3, buf);
      } else {
        span_forward_any(g, dy, lo, hi, colors + gid * nc, nc, rgb_row, acc_row);
      }
    }
    if (nc == 3) {
      interleave_row(buf, stride, width, bg_row, bg_pix_stride, rgb_row, acc_row);
    } else if (bg_row != nullptr) {
      for (int64_t j = 0; j < width; ++j) {
        const T t = T(1) - clamp1(acc_row[j]);
        for (int64_t ch = 0; ch < nc; ++ch) {
          rgb_row[j * nc + ch] += t * bg_row[j * bg_pix_stride + ch];
        }
      }
    }
  }
}

// Backward of the Gaussians visit[i0 .. i1): each Gaussian's gradient by one thread.
template <typename T>
GST_INLINE void backward_gaussians(const Gauss<T>* gs, const T* colors, const int32_t* spans,
                                   const int64_t* g_ptr, const int32_t* order,
                                   const int32_t* visit, int64_t nc, int64_t i0, int64_t i1,
                                   int64_t height, int64_t width,
                                   const T* g_rgb, const T* g_acc, T* g_means, T* g_conics,
                                   T* g_colors, T* g_opac, double* gcol) {
  const T half = static_cast<T>(0.5);
  LaneSums<T> L;
  for (int64_t v = i0; v < i1; ++v) {
    const int64_t i = visit[v];
    const Gauss<T>& g = gs[i];
    const T* col = colors + i * nc;
    GradSums s;
    std::fill(gcol, gcol + nc, 0.0);
    if (nc == 3) std::memset(&L, 0, sizeof(L));
    for (int64_t k = g_ptr[i]; k < g_ptr[i + 1]; ++k) {
      const int32_t* sp = spans + 4 * static_cast<int64_t>(order[k]);
      const int64_t row = sp[1];
      if (row < 0 || row >= height) continue;
      int64_t lo, hi;
      if (!row_columns(g, row, std::max<int64_t>(sp[2], 0),
                       std::min<int64_t>(static_cast<int64_t>(sp[2]) + sp[3], width) - 1,
                       &lo, &hi)) {
        continue;
      }
      const T dy = g.my - (static_cast<T>(row) + half);
      if (nc == 3) {
        span_backward3(g, dy, lo, hi, width, col, g_rgb + row * width * 3, g_acc + row * width,
                       &L);
      } else {
        span_backward_any(g, dy, lo, hi, col, nc, g_rgb + row * width * nc,
                          g_acc + row * width, &s, gcol);
      }
    }
    if (nc == 3) {
      for (int t = 0; t < kLanes; ++t) {
        s.ga += L.ga[t];
        s.gb += L.gb[t];
        s.gc += L.gc[t];
        s.gmx += L.gmx[t];
        s.gmy += L.gmy[t];
        s.gop += L.gop[t];
        gcol[0] += L.c0[t];
        gcol[1] += L.c1[t];
        gcol[2] += L.c2[t];
      }
    }
    g_means[2 * i] = static_cast<T>(s.gmx);
    g_means[2 * i + 1] = static_cast<T>(s.gmy);
    g_conics[3 * i] = static_cast<T>(0.5 * s.ga);
    g_conics[3 * i + 1] = static_cast<T>(s.gb);
    g_conics[3 * i + 2] = static_cast<T>(0.5 * s.gc);
    for (int64_t ch = 0; ch < nc; ++ch) g_colors[i * nc + ch] = static_cast<T>(gcol[ch]);
    g_opac[i] = static_cast<T>(s.gop);
  }
}

// The float workers are compiled for several x86-64 ISA levels and picked at load time
// (GCC function multi-versioning), so one build is fast on AVX-512 / AVX2 machines
// and still runs on any x86-64. They are called inside the OpenMP loops (an outlined
// parallel region would not be cloned).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GST_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", \
                                                "default")))
#else
#define GST_CLONES
#endif

GST_CLONES void forward_rows_f32(const Gauss<float>* gs, const float* colors,
                                 const int32_t* spans, const int64_t* row_ptr,
                                 const int32_t* order, int64_t n, int64_t nc, int64_t r0,
                                 int64_t r1, int64_t width, float* rgb, float* acc,
                                 float* buf, int64_t stride, const float* bg,
                                 int64_t bg_pix_stride, int64_t bg_row_stride) {
  forward_rows<float>(gs, colors, spans, row_ptr, order, n, nc, r0, r1, width, rgb, acc, buf,
                      stride, bg, bg_pix_stride, bg_row_stride);
}

GST_CLONES void backward_gaussians_f32(const Gauss<float>* gs, const float* colors,
                                       const int32_t* spans, const int64_t* g_ptr,
                                       const int32_t* order, const int32_t* visit, int64_t nc,
                                       int64_t i0, int64_t i1, int64_t height, int64_t width,
                                       const float* g_rgb, const float* g_acc,
                                       float* g_means, float* g_conics, float* g_colors,
                                       float* g_opac, double* gcol) {
  backward_gaussians<float>(gs, colors, spans, g_ptr, order, visit, nc, i0, i1, height, width,
                            g_rgb, g_acc, g_means, g_conics, g_colors, g_opac, gcol);
}

constexpr int64_t kRowBlock = 4;       // rows per forward task
constexpr int64_t kGaussianBlock = 8;  // Gaussians per backward task

template <typename T>
void forward_impl(const T* means, const T* conics, const T* colors, const T* opac,
                  const int32_t* spans, int64_t n, int64_t s, int64_t nc, int64_t height,
                  int64_t width, const T* bg, int64_t bg_pix_stride, T* rgb, T* acc) {
  const std::vector<Gauss<T>> gs = load_gaussians(means, conics, opac, n);
  std::vector<int64_t> row_ptr;
  std::vector<int32_t> order;
  bucket_spans(spans, s, 1, height, &row_ptr, &order);
  const int threads = thread_count(span_pairs(spans, s) + height * width);
  const int64_t nblocks = (height + kRowBlock - 1) / kRowBlock;
  const int64_t bg_row_stride = bg_pix_stride * width;
  // planar row buffer: 4 planes, each padded by a block and rounded to 64 bytes
  const int64_t stride = (width + 2 * kLanes + 15) / 16 * 16;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> buf(static_cast<size_t>(nc == 3 ? 4 * stride : 0));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t r0 = blk * kRowBlock, r1 = std::min(height, r0 + kRowBlock);
      if constexpr (std::is_same_v<T, float>) {
        forward_rows_f32(gs.data(), colors, spans, row_ptr.data(), order.data(), n, nc, r0,
                         r1, width, rgb, acc, buf.data(), stride, bg, bg_pix_stride,
                         bg_row_stride);
      } else {
        forward_rows<T>(gs.data(), colors, spans, row_ptr.data(), order.data(), n, nc, r0, r1,
                        width, rgb, acc, buf.data(), stride, bg, bg_pix_stride,
                        bg_row_stride);
      }
    }
  }
}

// dL/d acc through the background composite out = rgb + (1 - min(acc, 1)) bg:
// g_acc - [acc <= 1] sum_ch g_out[ch] bg[ch] (torch.clamp passes the gradient at 1).
// dL/d acc of pixels [p0, p1) through the background composite
// out = rgb + (1 - min(acc, 1)) bg: g_acc - [acc <= 1] sum_ch g_out[ch] bg[ch]
// (torch.clamp passes the gradient at 1). One loop per layout (constant strides).
template <typename T>
GST_INLINE void background_acc_grad_range(const T* __restrict g_out, const T* __restrict g_acc,
                                          const T* __restrict acc, const T* __restrict bg,
                                          int64_t bg_pix_stride, int64_t p0, int64_t p1,
                                          int64_t nc, T* __restrict out) {
  if (nc == 3 && bg_pix_stride == 3) {
    for (int64_t p = p0; p < p1; ++p) {
      const T dot = g_out[3 * p] * bg[3 * p] + g_out[3 * p + 1] * bg[3 * p + 1] +
                    g_out[3 * p + 2] * bg[3 * p + 2];
      out[p] = acc[p] <= T(1) ? g_acc[p] - dot : g_acc[p];
    }
  } else if (nc == 3 && bg_pix_stride == 0) {
    const T b0 = bg[0], b1 = bg[1], b2 = bg[2];
    for (int64_t p = p0; p < p1; ++p) {
      const T dot = g_out[3 * p] * b0 + g_out[3 * p + 1] * b1 + g_out[3 * p + 2] * b2;
      out[p] = acc[p] <= T(1) ? g_acc[p] - dot : g_acc[p];
    }
  } else {
    for (int64_t p = p0; p < p1; ++p) {
      const T* bgp = bg + p * bg_pix_stride;
      T dot = 0;
      for (int64_t ch = 0; ch < nc; ++ch) dot += g_out[p * nc + ch] * bgp[ch];
      out[p] = acc[p] <= T(1) ? g_acc[p] - dot : g_acc[p];
    }
  }
}

GST_CLONES void background_acc_grad_f32(const float* g_out, const float* g_acc,
                                        const float* acc, const float* bg,
                                        int64_t bg_pix_stride, int64_t p0, int64_t p1,
                                        int64_t nc, float* out) {
  background_acc_grad_range<float>(g_out, g_acc, acc, bg, bg_pix_stride, p0, p1, nc, out);
}

template <typename T>
void background_acc_grad(const T* g_out, const T* g_acc, const T* acc, const T* bg,
                         int64_t bg_pix_stride, int64_t npix, int64_t nc, T* out) {
  constexpr int64_t kBlock = 4096;
  const int64_t nblocks = (npix + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(thread_count(npix))
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t p0 = blk * kBlock, p1 = std::min(npix, p0 + kBlock);
    if constexpr (std::is_same_v<T, float>) {
      background_acc_grad_f32(g_out, g_acc, acc, bg, bg_pix_stride, p0, p1, nc, out);
    } else {
      background_acc_grad_range<T>(g_out, g_acc, acc, bg, bg_pix_stride, p0, p1, nc, out);
    }
  }
}

template <typename T>
void backward_impl(const T* means, const T* conics, const T* colors, const T* opac,
                   const int32_t* spans, int64_t n, int64_t s, int64_t nc, int64_t height,
                   int64_t width, const T* g_rgb, const T* g_acc, T* g_means, T* g_conics,
                   T* g_colors, T* g_opac) {
  const std::vector<Gauss<T>> gs = load_gaussians(means, conics, opac, n);
  std::vector<int64_t> g_ptr;
  std::vector<int32_t> order;
  bucket_spans(spans, s, 0, n, &g_ptr, &order);
  const int threads = thread_count(span_pairs(spans, s));
  // Visit the Gaussians in bands of 16 rows, left to right within a band, so the output
  // gradient rows a task reads were mostly just read by the previous tasks (cache and
  // TLB locality on large images; the input order of the Gaussians is arbitrary).
  std::vector<int32_t> visit(static_cast<size_t>(n));
  {
    std::vector<std::pair<int64_t, int32_t>> keys(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = g_ptr[i];
      const int64_t row = k < g_ptr[i + 1] ? spans[4 * static_cast<int64_t>(order[k]) + 1] : 0;
      const int64_t col = k < g_ptr[i + 1] ? spans[4 * static_cast<int64_t>(order[k]) + 2] : 0;
      keys[i] = {(row / 16) * (width + 1) + std::max<int64_t>(0, std::min(col, width)),
                 static_cast<int32_t>(i)};
    }
    std::sort(keys.begin(), keys.end());
    for (int64_t i = 0; i < n; ++i) visit[i] = keys[i].second;
  }
  const int64_t nblocks = (n + kGaussianBlock - 1) / kGaussianBlock;
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> gcol(static_cast<size_t>(std::max<int64_t>(nc, 1)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t i0 = blk * kGaussianBlock, i1 = std::min(n, i0 + kGaussianBlock);
      if constexpr (std::is_same_v<T, float>) {
        backward_gaussians_f32(gs.data(), colors, spans, g_ptr.data(), order.data(),
                               visit.data(), nc, i0, i1, height, width, g_rgb, g_acc, g_means,
                               g_conics, g_colors, g_opac, gcol.data());
      } else {
        backward_gaussians<T>(gs.data(), colors, spans, g_ptr.data(), order.data(),
                              visit.data(), nc, i0, i1, height, width, g_rgb, g_acc, g_means,
                              g_conics, g_colors, g_opac, gcol.data());
      }
    }
  }
}

// An uninitialised image-sized tensor. Large ones are 2 MiB aligned and advised to use
// transparent huge pages (Linux): a fresh 100 MB output otherwise costs ~25k page
// faults per call, more than the kernel itself on large images. Freed with free().
torch::Tensor empty_image(at::IntArrayRef sizes, const torch::TensorOptions& options) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  int64_t numel = 1;
  for (const int64_t d : sizes) numel *= d;
  const size_t nbytes = static_cast<size_t>(numel) * options.dtype().itemsize();
  constexpr size_t kHuge = size_t(2) << 20;
  if (nbytes >= 2 * kHuge) {
    const size_t rounded = (nbytes + kHuge - 1) / kHuge * kHuge;
    void* p = nullptr;
    if (posix_memalign(&p, kHuge, rounded) == 0) {
      madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
      return torch::from_blob(p, sizes, [](void* q) { free(q); }, options);
    }
  }
#endif
  return torch::empty(sizes, options);
}

// (pointer, per-pixel stride) of an optional background: (H*W, C) image or (C,) colour.
template <typename T>
std::pair<const T*, int64_t> background_arg(const c10::optional<torch::Tensor>& bg,
                                            const torch::Tensor& means, int64_t npix,
                                            int64_t nc) {
  if (!bg.has_value()) return {nullptr, 0};
  const torch::Tensor& b = *bg;
  TORCH_CHECK(b.device().is_cpu() && b.is_contiguous() && b.scalar_type() == means.scalar_type(),
              "background must be a contiguous CPU tensor of the inputs' dtype");
  if (b.dim() == 1) {
    TORCH_CHECK(b.size(0) == nc, "background colour must be (C,)");
    return {b.data_ptr<T>(), 0};
  }
  TORCH_CHECK(b.dim() == 2 && b.size(0) == npix && b.size(1) == nc,
              "background image must be (H*W, C)");
  return {b.data_ptr<T>(), nc};
}

}  // namespace

// (out (H*W, C), acc (H*W,)): sum compositing over `spans`; out = rgb, or
// rgb + (1 - min(acc, 1)) * background when a background ((H*W, C) or (C,)) is given.
std::vector<torch::Tensor> sum_splat_forward(torch::Tensor means, torch::Tensor conics,
                                             torch::Tensor colors, torch::Tensor opac,
                                             torch::Tensor spans, int64_t height,
                                             int64_t width,
                                             c10::optional<torch::Tensor> background) {
  check_inputs(means, conics, colors, opac, spans);
  TORCH_CHECK(height >= 0 && width >= 0, "height and width must be >= 0");
  const int64_t n = means.size(0), nc = colors.size(1), s = spans.size(0);
  // every row is written by the kernel
  auto rgb = empty_image({height * width, nc}, means.options());
  auto acc = empty_image({height * width}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sum_splat_forward", [&] {
    const auto bg = background_arg<scalar_t>(background, means, height * width, nc);
    forward_impl<scalar_t>(means.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                           colors.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                           spans.data_ptr<int32_t>(), n, s, nc, height, width, bg.first,
                           bg.second, rgb.data_ptr<scalar_t>(), acc.data_ptr<scalar_t>());
  });
  return {rgb, acc};
}

// (d means (N, 2), d conics (N, 3), d colors (N, C), d opacities (N,)) for the output
// gradients g_out (H*W, C), g_acc (H*W,); the pair values are recomputed, not stored.
// With a background, `acc` (the forward's) gives the composite's share of dL/d acc.
std::vector<torch::Tensor> sum_splat_backward(torch::Tensor means, torch::Tensor conics,
                                              torch::Tensor colors, torch::Tensor opac,
                                              torch::Tensor spans, int64_t height,
                                              int64_t width, torch::Tensor g_rgb,
                                              torch::Tensor g_acc,
                                              c10::optional<torch::Tensor> background,
                                              c10::optional<torch::Tensor> acc) {
  check_inputs(means, conics, colors, opac, spans);
  const int64_t n = means.size(0), nc = colors.size(1), s = spans.size(0);
  const int64_t npix = height * width;
  TORCH_CHECK(g_rgb.dim() == 2 && g_rgb.size(0) == npix && g_rgb.size(1) == nc &&
                  g_rgb.is_contiguous() && g_rgb.scalar_type() == means.scalar_type(),
              "g_rgb must be contiguous (H*W, C) of the inputs' dtype");
  TORCH_CHECK(g_acc.dim() == 1 && g_acc.size(0) == npix && g_acc.is_contiguous() &&
                  g_acc.scalar_type() == means.scalar_type(),
              "g_acc must be contiguous (H*W,) of the inputs' dtype");
  auto g_means = torch::empty({n, 2}, means.options());
  auto g_conics = torch::empty({n, 3}, means.options());
  auto g_colors = torch::empty({n, nc}, means.options());
  auto g_opac = torch::empty({n}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sum_splat_backward", [&] {
    const auto bg = background_arg<scalar_t>(background, means, npix, nc);
    if (bg.first != nullptr) {
      TORCH_CHECK(acc.has_value() && acc->dim() == 1 && acc->size(0) == npix &&
                      acc->is_contiguous() && acc->scalar_type() == means.scalar_type(),
                  "acc (H*W,) is needed with a background");
    }
    torch::Tensor grad_acc = g_acc;  // dL/d acc including the background composite
    if (bg.first != nullptr) {
      grad_acc = empty_image({npix}, means.options());
      background_acc_grad<scalar_t>(g_rgb.data_ptr<scalar_t>(), g_acc.data_ptr<scalar_t>(),
                                    acc->data_ptr<scalar_t>(), bg.first, bg.second, npix, nc,
                                    grad_acc.data_ptr<scalar_t>());
    }
    backward_impl<scalar_t>(means.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                            colors.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                            spans.data_ptr<int32_t>(), n, s, nc, height, width,
                            g_rgb.data_ptr<scalar_t>(), grad_acc.data_ptr<scalar_t>(),
                            g_means.data_ptr<scalar_t>(), g_conics.data_ptr<scalar_t>(),
                            g_colors.data_ptr<scalar_t>(), g_opac.data_ptr<scalar_t>());
  });
  return {g_means, g_conics, g_colors, g_opac};
}

int64_t openmp_threads() {
#ifdef _OPENMP
  return thread_count();
#else
  return 1;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gst_mm compiled CPU kernel of sum compositing (see render.py)";
  m.def("forward", &sum_splat_forward, "sum compositing forward over pixel spans",
        py::arg("means"), py::arg("conics"), py::arg("colors"), py::arg("opacities"),
        py::arg("spans"), py::arg("height"), py::arg("width"),
        py::arg("background") = py::none());
  m.def("backward", &sum_splat_backward, "sum compositing backward over pixel spans",
        py::arg("means"), py::arg("conics"), py::arg("colors"), py::arg("opacities"),
        py::arg("spans"), py::arg("height"), py::arg("width"), py::arg("g_out"),
        py::arg("g_acc"), py::arg("background") = py::none(), py::arg("acc") = py::none());
  m.def("openmp_threads", &openmp_threads, "threads a kernel call uses (1 without OpenMP)");
}
