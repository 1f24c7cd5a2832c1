// The int8 pruning attention's steps in plain C++ (``Isa::kPortable``), for CPUs without AVX512-VNNI: the same int8
// operands, exact int32 products and float steps in the same order as the vector paths of
// ``pruning_attention_int8.h``, so the outputs are theirs, bit for bit, on any x86-64 CPU. The compiler vectorizes
// the loops for what the CPU has (-march=native). Layouts: q (rows_pad, d), k (d, keys_pad) so that a channel's
// products run over consecutive keys, v (keys_pad, d); int8.
#pragma once

#include "pruning_attention_common.h"

namespace qla {
namespace {
namespace portable {

// x rounded to the nearest integer (ties to even, as cvtps2dq in the default rounding mode) and saturated; clamping
// first gives the same integer, and the loops around stay vectorizable.
inline int8_t to_int8(float x) { return static_cast<int8_t>(std::nearbyint(std::clamp(x, -128.f, 127.f))); }
inline uint8_t to_uint8(float x) { return static_cast<uint8_t>(std::nearbyint(std::clamp(x, 0.f, 255.f))); }

// 255 * 2^x for x <= 0: the vector paths' exp2_255 (the same polynomial and clamp); 2^n built from its exponent bits
// (n in [-100, 0]: a normal float), so p * 2^n is exactly what scalef gives. nearbyint rounds in the thread's mode,
// roundscale to nearest even: the same in the default mode, which nothing here changes.
inline float exp2_255(float x) {
  x = x > -100.f ? x : -100.f;
  const float n = std::nearbyint(x);
  const float f = x - n;
  float p = 255.f * 5.5088684e-2f;
  p = std::fma(p, f, 255.f * 2.4260405e-1f);
  p = std::fma(p, f, 255.f * 6.9327623e-1f);
  p = std::fma(p, f, 255.f * 9.9992895e-1f);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float power;
  std::memcpy(&power, &bits, sizeof power);
  return p * power;
}

// Symmetric int8 of one row of `channels` floats into `out`, zero-padded to d; returns the scale.
inline float quantize_row(const float* x, int64_t channels, int64_t d, int8_t* out) {
  float m = 0.f;
  for (int64_t c = 0; c < channels; ++c) m = std::max(m, std::fabs(x[c]));
  const float inv = m > kNegligible ? 127.f / m : 0.f;
  for (int64_t c = 0; c < channels; ++c) out[c] = to_int8(x[c] * inv);
  std::memset(out + channels, 0, d - channels);
  return m > kNegligible ? m / 127.f : 0.f;
}

// pack_head for the portable products: q, k, v as int8 rows (keys past n, masked keys and padding channels zero).
void pack_head(Workspace& ws, const float* q, const float* k, const float* v, const float* mask, int64_t n,
               int64_t channels, int64_t d, int64_t stride) {
  const int64_t rows_pad = round_up(n, kAmxRows), keys_pad = round_up(n, kCols);
  const RealKeys is_real(mask, n);
  for (int64_t i = 0; i < rows_pad; ++i) {
    int8_t* out = ws.q.data() + i * d;
    if (i < n)
      ws.q_scale[i] = quantize_row(q + i * stride, channels, d, out);
    else {
      ws.q_scale[i] = 0.f;
      std::memset(out, 0, d);
    }
  }
  std::memset(ws.k.data(), 0, d * keys_pad);
  for (int64_t j = 0; j < keys_pad; ++j) {
    const bool real = is_real(j);
    ws.k_bias[j] = real ? 0.f : kDropped;
    ws.k_scale[j] = 0.f;
    if (!real || !is_real.any_real) continue;  // a masked key's score is its bias alone
    ws.k_scale[j] = quantize_row(k + j * stride, channels, d, ws.row);
    for (int64_t c = 0; c < d; ++c) ws.k[c * keys_pad + j] = ws.row[c];
  }
  for (int64_t c = 0; c < d; ++c) {
    float top = 0.f;
    for (int64_t j = 0; c < channels && j < n; ++j)
      if (is_real(j)) top = std::max(top, std::fabs(v[j * stride + c]));
    ws.v_scale[c] = top > kNegligible ? top / 127.f : 0.f;
    ws.v_inverse[c] = top > kNegligible ? 1.f / ws.v_scale[c] : 0.f;
  }
  std::memset(ws.v.data(), 0, keys_pad * d);
  for (int64_t j = 0; j < n; ++j) {
    if (!is_real(j)) continue;
    int8_t* out = ws.v.data() + j * d;
    for (int64_t c = 0; c < channels; ++c) out[c] = to_int8(v[j * stride + c] * ws.v_inverse[c]);
  }
  std::fill(ws.received.begin(), ws.received.begin() + keys_pad, 0.f);
}

// Scores of query rows i0 .. i0 + 3 into the workspace's score rows 0 .. 3 (the first `keys` of each), with each
// row's maximum: 64 keys at a time, the four rows' int32 sums over the channels side by side.
void scores(Workspace& ws, int64_t i0, int64_t d, int64_t keys_pad, int64_t keys, float scale2) {
  float top[kVnniRows];
  std::fill(top, top + kVnniRows, kDropped);
  for (int64_t j0 = 0; j0 < keys; j0 += kCols) {
    int32_t dots[kVnniRows][kCols] = {};
    for (int64_t c = 0; c < d; ++c) {
      const int8_t* kc = ws.k.data() + c * keys_pad + j0;
      for (int r = 0; r < kVnniRows; ++r) {
        const int32_t qc = ws.q[(i0 + r) * d + c];
        for (int j = 0; j < kCols; ++j) dots[r][j] += qc * static_cast<int32_t>(kc[j]);
      }
    }
    for (int r = 0; r < kVnniRows; ++r) {
      const float qs = ws.q_scale[i0 + r] * scale2;
      float* row = ws.scores.data() + r * keys_pad;
      for (int64_t j = j0; j < std::min<int64_t>(j0 + kCols, keys); ++j) {
        const float s = std::fma(static_cast<float>(dots[r][j - j0]) * qs, ws.k_scale[j], ws.k_bias[j]);
        top[r] = std::max(top[r], s);
        row[j] = s;
      }
    }
  }
  std::copy(top, top + kVnniRows, ws.row_max);
}

// The block's softmax (``softmax_block``), one value at a time in 16 lanes.
void softmax_rows(Workspace& ws, int block, int rows, const float* mask_rows, int64_t keys_pad, int64_t keys,
                  uint8_t* probs) {
  softmax_block(ws, block, rows, mask_rows, keys_pad, keys, probs, [keys](float* s, uint8_t* p8, float row_max) {
    float lanes[kLanes] = {};
    for (int64_t j0 = 0; j0 < keys; j0 += kLanes)  // keys is a multiple of 16
      for (int l = 0; l < kLanes; ++l) {
        const float e = exp2_255(s[j0 + l] - row_max);
        s[j0 + l] = e;
        lanes[l] += e;
        p8[j0 + l] = to_uint8(e);
      }
    return sum16(lanes);
  });
}

// Significance: the block's weighted probabilities added into the keys' column sums, 4 rows per pass.
void add_significance(Workspace& ws, int block, int64_t keys_pad, int64_t keys) {
  for (int r0 = 0; r0 < block; r0 += 4) {
    const float* s0 = ws.scores.data() + r0 * keys_pad;
    const float* w = ws.weights + r0;
    for (int64_t j = 0; j < keys; ++j) {
      float sum = ws.received[j];
      sum = std::fma(s0[j], w[0], sum);
      sum = std::fma(s0[keys_pad + j], w[1], sum);
      sum = std::fma(s0[2 * keys_pad + j], w[2], sum);
      sum = std::fma(s0[3 * keys_pad + j], w[3], sum);
      ws.received[j] = sum;
    }
  }
}

// Context of a block's `rows` query rows into `context`: uint8 probabilities times int8 v, scaled back by the softmax
// denominator and v's per-channel scale.
void context(const ContextBlock& block, const int8_t* v, const float* v_scale, int rows, int64_t d, int64_t keys_pad,
             int64_t keys, int64_t channels, int64_t out_stride, float* out) {
  int32_t acc[kVnniRows][256] = {};
  for (int64_t j = 0; j < keys; ++j) {
    const int8_t* vj = v + j * d;
    for (int r = 0; r < rows; ++r) {
      const int32_t pj = block.probs[r * keys_pad + j];
      for (int64_t c = 0; c < d; ++c) acc[r][c] += pj * static_cast<int32_t>(vj[c]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    if (block.out_row(r) < 0) continue;
    const float ps = 1.f / block.sums[r];
    float* row = out + block.out_row(r) * out_stride;
    for (int64_t c = 0; c < channels; ++c) row[c] = static_cast<float>(acc[r][c]) * ps * v_scale[c];
  }
}

}  // namespace portable
}  // namespace
}  // namespace qla
