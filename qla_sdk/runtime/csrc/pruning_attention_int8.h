// The int8 kernel of the pruning layers' attention, shared by the OpenVINO operation
// (``openvino_pruning_attention.cpp``) and the torch operation for Inductor graphs (``torch_pruning_attention.cpp``):
// scores, softmax, each key's significance (the probabilities it receives) and the context, in one pass per
// (batch, head), on AMX tiles, AVX512-VNNI, or plain C++ on any other x86-64 CPU (``pruning_attention_portable.h``);
// or, where the caller chooses tokens from the significance first, the context of the chosen rows in a second pass
// (``SavedHead``, ``context_of_rows``). Each library includes it from one source file; callers own the threads. The
// numerics, shared by every path: ``pruning_attention_common.h``.
//
// Why int8 inside: an unfused graph's attention makes several trips through memory per (len x len) probability map
// (scores, bias, softmax, two consumers of the probabilities), and neither OpenVINO nor Inductor fuses it while the
// significance reads the probabilities. Here a head's scores live in a few rows at a time. With AMX the two products
// are tile operations, and what is left is the softmax's exponentials.
#pragma once

#include <immintrin.h>

#include "pruning_attention_common.h"
#include "pruning_attention_portable.h"

namespace qla {
namespace {

// The vector paths, built where the compiler targets a CPU with AVX512-VNNI (-march=native). The two int8 products of
// a block of query rows run on AVX512-VNNI (vpdpbusd, 4 rows at a time, in registers) or on AMX tiles (16 rows at a
// time). Both read the same packed operands, except q: VNNI multiplies unsigned by signed bytes, so its q is stored
// + 128 and the offset taken off after (k_sum); AMX multiplies signed by signed (tdpbssd).
#if QLA_INT8_VNNI

// 255 * 2^x for x <= 0 (a degree-3 polynomial on the fraction, fitted for relative error, then the power of two;
// relative error below 8e-5, far under what int8 scores move a probability by), clamped at -100: a probability that
// small changes no float32 sum, and clamped, its products with the significance weights (at least 2^-24) stay normal
// floats, which x86 cores would otherwise compute in microcode. Scores are kept in base 2 (log2(e) is folded into
// the scale), so softmax's exp(s - max) is 2^(s' - max'), and the probabilities are kept at 255 times their value:
// what their uint8 copy needs, while the softmax's denominator and the significance only see a common factor.
inline __m512 exp2_255(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-100.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(255.f * 5.5088684e-2f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.f * 2.4260405e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.f * 6.9327623e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.f * 9.9992895e-1f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 lanes(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1u); }

// Symmetric int8 of one row of `channels` floats into `out`, zero-padded to d (a multiple of 16); returns the scale.
inline float quantize_row(const float* x, int64_t channels, int64_t d, int8_t* out) {
  __m512 top = _mm512_setzero_ps();
  for (int64_t c = 0; c < d; c += 16)
    top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes(channels - c), x + c)));
  const float m = _mm512_reduce_max_ps(top);
  const __m512 inv = _mm512_set1_ps(m > kNegligible ? 127.f / m : 0.f);
  for (int64_t c = 0; c < d; c += 16) {
    const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(channels - c), x + c), inv);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(y)));
  }
  return m > kNegligible ? m / 127.f : 0.f;
}

// Packs one head into the thread's workspace for `isa`: q rows as int8 (AMX) or uint8 (int8 + 128, VNNI), k and v as
// int8 in the layouts the products read, their scales, and each key's bias (0, or kDropped for a masked or padding
// key). Rows are padded to a multiple of kAmxRows and keys to kCols, with zeros.
void pack_head(Workspace& ws, Isa isa, const float* q, const float* k, const float* v, const float* mask, int64_t n,
               int64_t channels, int64_t d, int64_t stride) {
  const int64_t rows_pad = round_up(n, kAmxRows), keys_pad = round_up(n, kCols);
  const RealKeys is_real(mask, n);
  const bool any_real = is_real.any_real;

  // q + 128 as uint8 is the int8 value with its sign bit flipped.
  const bool offset = isa == Isa::kVnni;
  const __m128i flip = _mm_set1_epi8(offset ? static_cast<char>(0x80) : 0);
  for (int64_t i = 0; i < rows_pad; ++i) {
    int8_t* out = ws.q.data() + i * d;
    ws.q_scale[i] = i < n ? quantize_row(q + i * stride, channels, d, ws.row) : 0.f;
    if (i >= n) std::memset(ws.row, 0, d);
    for (int64_t c = 0; c < d; c += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c),
                       _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws.row + c)), flip));
  }
  // A sequence with no real key at all gets uniform rows (all scores 0), as the reference's float32.min bias gives.
  std::memset(ws.k.data(), 0, d * keys_pad);
  for (int64_t j = 0; j < keys_pad; ++j) {
    const bool real = is_real(j);
    ws.k_bias[j] = real ? 0.f : kDropped;
    ws.k_scale[j] = 0.f;
    ws.k_sum[j] = 0;
    if (!real || !any_real) continue;  // a masked key's score is its bias alone
    ws.k_scale[j] = quantize_row(k + j * stride, channels, d, ws.row);
    for (int64_t c4 = 0; c4 < d / 4; ++c4) std::memcpy(ws.k.data() + (c4 * keys_pad + j) * 4, ws.row + c4 * 4, 4);
    if (!offset) continue;
    __m512i total = _mm512_setzero_si512();
    for (int64_t c = 0; c < d; c += 16)
      total = _mm512_add_epi32(total, _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws.row + c))));
    ws.k_sum[j] = 128 * _mm512_reduce_add_epi32(total);
  }
  // v per channel over the real keys (a masked key's probability rounds to 0 in uint8, its v stays 0), packed
  // (keys_pad / 4, d, 4).
  for (int64_t c = 0; c < d; c += 16) {
    __m512 top = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      if (!is_real(j)) continue;
      top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes(channels - c), v + j * stride + c)));
    }
    const __mmask16 kept = _mm512_cmp_ps_mask(top, _mm512_set1_ps(kNegligible), _CMP_GT_OQ);
    const __m512 scale_v = _mm512_maskz_div_ps(kept, top, _mm512_set1_ps(127.f));
    _mm512_storeu_ps(ws.v_scale.data() + c, scale_v);
    _mm512_storeu_ps(ws.v_inverse.data() + c, _mm512_maskz_div_ps(kept, _mm512_set1_ps(1.f), scale_v));
  }
  // Four keys at a time: their 16-channel int8 slices, one per 128-bit lane, interleaved by one byte permutation into
  // (16 channels, 4 keys); a key that is masked (or past n) contributes zeros.
#ifdef __AVX512VBMI__
  const __m512i interleave = _mm512_set_epi8(63, 47, 31, 15, 62, 46, 30, 14, 61, 45, 29, 13, 60, 44, 28, 12, 59, 43,
                                             27, 11, 58, 42, 26, 10, 57, 41, 25, 9, 56, 40, 24, 8, 55, 39, 23, 7, 54,
                                             38, 22, 6, 53, 37, 21, 5, 52, 36, 20, 4, 51, 35, 19, 3, 50, 34, 18, 2, 49,
                                             33, 17, 1, 48, 32, 16, 0);
#endif
  for (int64_t j4 = 0; j4 < keys_pad / 4; ++j4) {
    for (int64_t c = 0; c < d; c += 16) {
      const __m512 inv = _mm512_loadu_ps(ws.v_inverse.data() + c);
      __m128i keys[4];
      for (int t = 0; t < 4; ++t) {
        const int64_t j = j4 * 4 + t;
        keys[t] = _mm_setzero_si128();
        if (!is_real(j)) continue;
        const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(channels - c), v + j * stride + c), inv);
        keys[t] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(y));
      }
      int8_t* packed = ws.v.data() + (j4 * d + c) * 4;
#ifdef __AVX512VBMI__
      __m512i four = _mm512_castsi128_si512(keys[0]);
      four = _mm512_inserti32x4(four, keys[1], 1);
      four = _mm512_inserti32x4(four, keys[2], 2);
      four = _mm512_inserti32x4(four, keys[3], 3);
      _mm512_storeu_si512(packed, _mm512_permutexvar_epi8(interleave, four));
#else
      alignas(16) int8_t bytes[4][16];
      for (int t = 0; t < 4; ++t) _mm_store_si128(reinterpret_cast<__m128i*>(bytes[t]), keys[t]);
      for (int x = 0; x < 16; ++x)
        for (int t = 0; t < 4; ++t) packed[x * 4 + t] = bytes[t][x];
#endif
    }
  }
  std::fill(ws.received.begin(), ws.received.begin() + keys_pad, 0.f);
}

// One score vector from the exact int32 dot products of a query with 16 keys: s = dots * q_scale * scale * k_scale
// + bias (base 2).
inline __m512 to_score(__m512i dots, const Workspace& ws, int64_t j, __m512 q_scale) {
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dots), q_scale), _mm512_loadu_ps(ws.k_scale.data() + j),
                         _mm512_loadu_ps(ws.k_bias.data() + j));
}

// Scores of query rows i0 .. i0 + 3 into the workspace's score rows 0 .. 3 (the first `keys` of each), with each
// row's maximum: 16 keys per register, 4 registers per row.
void scores_vnni(Workspace& ws, int64_t i0, int64_t d, int64_t keys_pad, int64_t keys, float scale2) {
  __m512 top[kVnniRows];
  for (auto& t : top) t = _mm512_set1_ps(kDropped);
  for (int64_t j0 = 0; j0 < keys_pad; j0 += kCols) {
    __m512i acc[kVnniRows][4];
    for (auto& r : acc)
      for (auto& a : r) a = _mm512_setzero_si512();
    for (int64_t c4 = 0; c4 < d / 4; ++c4) {
      const int8_t* kb = ws.k.data() + (c4 * keys_pad + j0) * 4;
      const __m512i k0 = _mm512_loadu_si512(kb), k1 = _mm512_loadu_si512(kb + 64);
      const __m512i k2 = _mm512_loadu_si512(kb + 128), k3 = _mm512_loadu_si512(kb + 192);
      for (int r = 0; r < kVnniRows; ++r) {
        int32_t quad;
        std::memcpy(&quad, ws.q.data() + (i0 + r) * d + c4 * 4, 4);
        const __m512i qb = _mm512_set1_epi32(quad);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], qb, k0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], qb, k1);
        acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], qb, k2);
        acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], qb, k3);
      }
    }
    for (int r = 0; r < kVnniRows; ++r) {
      const __m512 qs = _mm512_set1_ps(ws.q_scale[i0 + r] * scale2);
      for (int b = 0; b < 4 && j0 + 16 * b < keys; ++b) {
        const int64_t j = j0 + 16 * b;
        const __m512i offset = _mm512_loadu_si512(ws.k_sum.data() + j);
        const __m512 s = to_score(_mm512_sub_epi32(acc[r][b], offset), ws, j, qs);
        top[r] = _mm512_max_ps(top[r], s);
        _mm512_storeu_ps(ws.scores.data() + r * keys_pad + j, s);
      }
    }
  }
  for (int r = 0; r < kVnniRows; ++r) ws.row_max[r] = _mm512_reduce_max_ps(top[r]);
}

// Context of 4 query rows (workspace rows 0 .. 3) into `context`: uint8 probabilities times int8 v, 16 channels per
// register, each row scaled back by its softmax denominator and v's per-channel scale.
void context_vnni(const ContextBlock& block, const int8_t* v, const float* v_scale, int rows, int64_t d,
                  int64_t keys_pad, int64_t keys, int64_t channels, int64_t out_stride, float* context) {
  for (int64_t c0 = 0; c0 < d; c0 += 32) {
    const bool two = c0 + 16 < d;
    __m512i acc[kVnniRows][2];
    for (auto& r : acc)
      for (auto& a : r) a = _mm512_setzero_si512();
    for (int64_t j4 = 0; j4 < keys / 4; ++j4) {
      const int8_t* vb = v + (j4 * d + c0) * 4;
      const __m512i v0 = _mm512_loadu_si512(vb);
      const __m512i v1 = two ? _mm512_loadu_si512(vb + 64) : _mm512_setzero_si512();
      for (int r = 0; r < kVnniRows; ++r) {
        int32_t quad;
        std::memcpy(&quad, block.probs + r * keys_pad + j4 * 4, 4);
        const __m512i pb = _mm512_set1_epi32(quad);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], pb, v0);
        if (two) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], pb, v1);
      }
    }
    for (int r = 0; r < rows; ++r) {
      if (block.out_row(r) < 0) continue;
      const __m512 ps = _mm512_set1_ps(1.f / block.sums[r]);
      float* out = context + block.out_row(r) * out_stride + c0;
      for (int b = 0; b < (two ? 2 : 1); ++b) {
        const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][b]), ps),
                                       _mm512_loadu_ps(v_scale + c0 + 16 * b));
        _mm512_mask_storeu_ps(out + 16 * b, lanes(channels - c0 - 16 * b), y);
      }
    }
  }
}

#if QLA_INT8_AMX
// The tile shapes (palette 1): 0 q rows (16 x up to 64 channels), 1 k (channels / 4 x 16 keys x 4), 3 probabilities
// (16 x 64 keys), 4 v (16 x 16 channels x 4 keys), and 2, 5, 6, 7 int32 sums (16 x 16).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig tile_config(int64_t d) {
  TileConfig config;
  const int64_t chunk = std::min<int64_t>(d, 64);
  config.colsb[0] = static_cast<uint16_t>(chunk);
  config.rows[0] = kAmxRows;
  config.colsb[1] = 64;
  config.rows[1] = static_cast<uint8_t>(chunk / 4);
  for (int t : {2, 3, 4, 5, 6, 7}) {
    config.colsb[t] = 64;
    config.rows[t] = kAmxRows;
  }
  return config;
}

// Scores of query rows i0 .. i0 + 15 into the workspace's score rows, with each row's maximum: 64 keys per step in
// four int32 tiles, stored into the score rows and turned into floats in place (one buffer: the block's scores,
// probabilities, k and v then stay in L1).
void scores_amx(Workspace& ws, int64_t i0, int64_t d, int64_t keys_pad, int64_t keys, float scale2) {
  const int64_t chunk = std::min<int64_t>(d, 64), k_stride = keys_pad * 4;
  int32_t* dots = reinterpret_cast<int32_t*>(ws.scores.data());
  const bool one_chunk = chunk == d;
  if (one_chunk) _tile_loadd(0, ws.q.data() + i0 * d, d);
  for (int64_t j0 = 0; j0 < keys_pad; j0 += kCols) {
    _tile_zero(2);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t c0 = 0; c0 < d; c0 += chunk) {
      if (!one_chunk) _tile_loadd(0, ws.q.data() + i0 * d + c0, d);
      const int8_t* kb = ws.k.data() + ((c0 / 4) * keys_pad + j0) * 4;
      _tile_loadd(1, kb, k_stride);
      _tile_dpbssd(2, 0, 1);
      _tile_loadd(1, kb + 64, k_stride);
      _tile_dpbssd(5, 0, 1);
      _tile_loadd(1, kb + 128, k_stride);
      _tile_dpbssd(6, 0, 1);
      _tile_loadd(1, kb + 192, k_stride);
      _tile_dpbssd(7, 0, 1);
    }
    _tile_stored(2, dots + j0, k_stride);
    _tile_stored(5, dots + j0 + 16, k_stride);
    _tile_stored(6, dots + j0 + 32, k_stride);
    _tile_stored(7, dots + j0 + 48, k_stride);
  }
  for (int r = 0; r < kAmxRows; ++r) {
    const __m512 qs = _mm512_set1_ps(ws.q_scale[i0 + r] * scale2);
    __m512 top = _mm512_set1_ps(kDropped);
    float* row = ws.scores.data() + r * keys_pad;
    for (int64_t j = 0; j < keys; j += 16) {
      const __m512 s = to_score(_mm512_loadu_si512(row + j), ws, j, qs);
      top = _mm512_max_ps(top, s);
      _mm512_storeu_ps(row + j, s);
    }
    ws.row_max[r] = _mm512_reduce_max_ps(top);
  }
}

// Context of 16 query rows into `context`, 64 channels per pass in up to four int32 tiles.
void context_amx(Workspace& ws, const ContextBlock& block, const int8_t* v, const float* v_scale, int rows, int64_t d,
                 int64_t keys_pad, int64_t channels, int64_t out_stride, float* context) {
  int32_t* sums = ws.partial.data();
  const int64_t v_stride = d * 4;
  for (int64_t c0 = 0; c0 < d; c0 += 64) {
    const int64_t groups = std::min<int64_t>(4, (d - c0) / 16);
    _tile_zero(2);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t j0 = 0; j0 < keys_pad; j0 += kCols) {
      _tile_loadd(3, block.probs + j0, keys_pad);
      const int8_t* vb = v + ((j0 / 4) * d + c0) * 4;
      _tile_loadd(4, vb, v_stride);
      _tile_dpbusd(2, 3, 4);
      if (groups > 1) {
        _tile_loadd(4, vb + 64, v_stride);
        _tile_dpbusd(5, 3, 4);
      }
      if (groups > 2) {
        _tile_loadd(4, vb + 128, v_stride);
        _tile_dpbusd(6, 3, 4);
      }
      if (groups > 3) {
        _tile_loadd(4, vb + 192, v_stride);
        _tile_dpbusd(7, 3, 4);
      }
    }
    _tile_stored(2, sums + c0, v_stride);
    if (groups > 1) _tile_stored(5, sums + c0 + 16, v_stride);
    if (groups > 2) _tile_stored(6, sums + c0 + 32, v_stride);
    if (groups > 3) _tile_stored(7, sums + c0 + 48, v_stride);
  }
  for (int r = 0; r < rows; ++r) {
    if (block.out_row(r) < 0) continue;
    const __m512 ps = _mm512_set1_ps(1.f / block.sums[r]);
    float* out = context + block.out_row(r) * out_stride;
    for (int64_t c = 0; c < d; c += 16) {
      const __m512i acc = _mm512_loadu_si512(sums + r * d + c);
      const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), ps), _mm512_loadu_ps(v_scale + c));
      _mm512_mask_storeu_ps(out + c, lanes(channels - c), y);
    }
  }
}

// Runs `body` with this head's tile shapes loaded, and gives the thread back the tile configuration it had: OpenVINO's
// own AMX kernels on this thread may skip reloading a configuration they think is still set.
template <typename Body>
void with_tiles(int64_t d, Body body) {
  TileConfig previous;
  _tile_storeconfig(&previous);
  const TileConfig config = tile_config(d);
  _tile_loadconfig(&config);
  body();
  if (previous.palette != 0)
    _tile_loadconfig(&previous);
  else
    _tile_release();
}
#endif

// The block's softmax (``softmax_block``), 16 keys per register.
void softmax_rows(Workspace& ws, int block, int rows, const float* mask_rows, int64_t keys_pad, int64_t keys,
                  uint8_t* probs) {
  softmax_block(ws, block, rows, mask_rows, keys_pad, keys, probs, [keys](float* s, uint8_t* p8, float row_max) {
    const __m512 m = _mm512_set1_ps(row_max);
    __m512 total = _mm512_setzero_ps();
    for (int64_t j = 0; j < keys; j += 16) {
      const __m512 e = exp2_255(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
      _mm512_storeu_ps(s + j, e);
      total = _mm512_add_ps(total, e);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p8 + j), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(e)));
    }
    alignas(64) float lanes[kLanes];
    _mm512_store_ps(lanes, total);
    return sum16(lanes);
  });
}

// Significance: the block's weighted probabilities added into the keys' column sums, 4 rows per pass.
void add_significance(Workspace& ws, int block, int64_t keys_pad, int64_t keys) {
  for (int r0 = 0; r0 < block; r0 += 4) {
    const float* s0 = ws.scores.data() + r0 * keys_pad;
    const __m512 w0 = _mm512_set1_ps(ws.weights[r0]), w1 = _mm512_set1_ps(ws.weights[r0 + 1]);
    const __m512 w2 = _mm512_set1_ps(ws.weights[r0 + 2]), w3 = _mm512_set1_ps(ws.weights[r0 + 3]);
    for (int64_t j = 0; j < keys; j += 16) {
      __m512 sum = _mm512_loadu_ps(ws.received.data() + j);
      sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + j), w0, sum);
      sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + keys_pad + j), w1, sum);
      sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + 2 * keys_pad + j), w2, sum);
      sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + 3 * keys_pad + j), w3, sum);
      _mm512_storeu_ps(ws.received.data() + j, sum);
    }
  }
}

#endif  // QLA_INT8_VNNI

// One block of query rows on `isa`: its scores, softmax (uint8 probabilities into `probs`), its share of the
// significance (with `significance`), and unless `saved`, its context.
struct BlockSteps {
  Isa isa;
  Workspace& ws;
  int64_t d, keys_pad, keys, channels;

  void scores(int64_t i0, float scale2) const {
#if QLA_INT8_VNNI
#if QLA_INT8_AMX
    if (isa == Isa::kAmx) return scores_amx(ws, i0, d, keys_pad, keys, scale2);
#endif
    if (isa == Isa::kVnni) return scores_vnni(ws, i0, d, keys_pad, keys, scale2);
#endif
    portable::scores(ws, i0, d, keys_pad, keys, scale2);
  }
  void softmax(int block, int rows, const float* mask_rows, uint8_t* probs) const {
#if QLA_INT8_VNNI
    if (isa != Isa::kPortable) return softmax_rows(ws, block, rows, mask_rows, keys_pad, keys, probs);
#endif
    portable::softmax_rows(ws, block, rows, mask_rows, keys_pad, keys, probs);
  }
  void significance(int block) const {
#if QLA_INT8_VNNI
    if (isa != Isa::kPortable) return add_significance(ws, block, keys_pad, keys);
#endif
    portable::add_significance(ws, block, keys_pad, keys);
  }
  void context(const ContextBlock& block, const int8_t* v, const float* v_scale, int rows, int64_t out_stride,
               float* out) const {
#if QLA_INT8_VNNI
#if QLA_INT8_AMX
    if (isa == Isa::kAmx) return context_amx(ws, block, v, v_scale, rows, d, keys_pad, channels, out_stride, out);
#endif
    if (isa == Isa::kVnni)
      return context_vnni(block, v, v_scale, rows, d, keys_pad, keys, channels, out_stride, out);
#endif
    portable::context(block, v, v_scale, rows, d, keys_pad, keys, channels, out_stride, out);
  }
};

// Runs `body` with this head's AMX tile shapes loaded where `isa` is AMX.
template <typename Body>
void on_isa(Isa isa, int64_t d, Body body) {
#if QLA_INT8_AMX
  if (isa == Isa::kAmx) return with_tiles(d, body);
#endif
  (void)isa;
  (void)d;
  body();
}

inline int block_rows(Isa isa) { return isa == Isa::kAmx ? kAmxRows : kVnniRows; }

// One (batch, head): q, k, v point at the head's first channel of token 0; their rows advance by `stride` floats,
// the context's by `out_stride`. The head's `channels` are zero-padded to d, a multiple of 16, inside.
// `significance` (n) receives this head's column sums of the probabilities over the real queries (nullptr: not
// computed). With `saved`, no context is computed: the probabilities go to `saved` instead of a block buffer, with
// their denominators and the packed v, for ``context_of_rows`` to compute the context of the rows that stay
// (``context`` is not touched). `isa` must run here (``isa_refusal``).
void attend_head(Isa isa, const float* q, const float* k, const float* v, const float* mask, int64_t n,
                 int64_t channels, int64_t stride, float scale, float* context, int64_t out_stride,
                 float* significance, const SavedHead* saved = nullptr) {
  Workspace& ws = thread_workspace();
  // The products run over keys_pad keys (whole 64-key tiles); the float steps over `keys`, the first multiple of 16
  // that holds n. The uint8 probabilities past `keys` are what an earlier head left: AMX's context product reads
  // them, but v is zero past n, so they add nothing.
  const int64_t d = round_up(channels, 16), keys_pad = round_up(n, kCols), keys = round_up(n, 16);
  const float scale2 = scale * 1.44269504088896341f;  // scores in base 2
  reserve_head(ws, n, d);
#if QLA_INT8_VNNI
  if (isa != Isa::kPortable)
    pack_head(ws, isa, q, k, v, mask, n, channels, d, stride);
  else
#endif
    portable::pack_head(ws, q, k, v, mask, n, channels, d, stride);
  const BlockSteps steps{isa, ws, d, keys_pad, keys, channels};
  const int block = block_rows(isa);
  on_isa(isa, d, [&] {
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int rows = static_cast<int>(std::min<int64_t>(block, n - i0));
      steps.scores(i0, scale2);
      steps.softmax(block, rows, mask == nullptr ? nullptr : mask + i0,
                    saved == nullptr ? ws.probs.data() : saved->probs + i0 * keys_pad);
      if (significance != nullptr) steps.significance(block);
      if (saved != nullptr) {
        std::memcpy(saved->sums + i0, ws.sums, rows * sizeof(float));
        continue;
      }
      steps.context(ContextBlock{ws.probs.data(), ws.sums, i0}, ws.v.data(), ws.v_scale.data(), rows, out_stride,
                    context);
    }
  });
  if (saved != nullptr) {
    std::memcpy(saved->v, ws.v.data(), keys_pad * d);
    std::memcpy(saved->v_scale, ws.v_scale.data(), d * sizeof(float));
  }
  // A masked key's probabilities are 2^-100 (exp2_255's clamp) rather than 0 above: its significance is exactly 0,
  // as the reference's.
  if (significance == nullptr) return;
  for (int64_t j = 0; j < n; ++j) significance[j] = ws.k_bias[j] == 0.f ? ws.received[j] : 0.f;
}

// The second pass of a selecting call, for one (batch, head) saved by ``attend_head`` on the same `isa`: query row i's
// context goes to context row out_rows[i] (-1: the row is not wanted). Blocks without a wanted row are skipped; the
// others run the same products on the same operands as ``attend_head``'s own context, so a row's context is bit for
// bit what the one-pass call gives it.
void context_of_rows(Isa isa, const SavedHead& saved, const int32_t* out_rows, int64_t n, int64_t channels,
                     float* context, int64_t out_stride) {
  Workspace& ws = thread_workspace();
  const int64_t d = round_up(channels, 16), keys_pad = round_up(n, kCols), keys = round_up(n, 16);
  ensure(ws.partial, kAmxRows * d);
  const BlockSteps steps{isa, ws, d, keys_pad, keys, channels};
  const int block = block_rows(isa);
  on_isa(isa, d, [&] {
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int rows = static_cast<int>(std::min<int64_t>(block, n - i0));
      if (std::none_of(out_rows + i0, out_rows + i0 + rows, [](int32_t row) { return row >= 0; })) continue;
      steps.context(ContextBlock{saved.probs + i0 * keys_pad, saved.sums + i0, i0, out_rows + i0}, saved.v,
                    saved.v_scale, rows, out_stride, context);
    }
  });
}

}  // namespace
}  // namespace qla
