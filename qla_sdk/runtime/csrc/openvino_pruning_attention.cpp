// The pruning layers' attention as one OpenVINO operation, in int8 on AVX512-VNNI: scores, softmax, each key's
// significance (the probabilities it receives) and the context, in one pass per (batch, head) on OpenVINO's own
// threads. The graph rewrite is ``runtime/openvino_attention.py``; this file replaces its Python ``evaluate``.
//
// Why int8 inside: the unfused graph's attention runs NNCF's int8 matmuls but makes several trips through memory per
// (len x len) probability map (scores, bias, softmax, two consumers of the probabilities), and OpenVINO cannot fuse
// it while the significance reads the probabilities. Here a head's scores live in a few rows at a time.
//
// Numerics, per (batch, head): q and k are quantized per token to int8 (symmetric), v per channel; the probabilities
// go to uint8 per row as round(255 * exp(s - rowmax)), which keeps the row's largest probability exact in scale. The
// significance sums float32 probabilities of those int8 scores (not of uint8 ones). v's per-channel scale is taken
// over the real keys only, so what padding holds changes nothing. Same inputs and outputs
// as the Python operation: q, k, v (batch, len, heads * head_dim) f32 [, mask (batch, len) f32, 1 for real tokens];
// outputs context (batch, len, heads * head_dim) and significance (batch, len), summed over heads and real queries.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "openvino/core/extension.hpp"
#include "openvino/core/op_extension.hpp"
#include "openvino/core/parallel.hpp"
#include "openvino/op/op.hpp"

namespace qla {
namespace {

constexpr int kRows = 4;    // query rows per register block (the significance pass adds 4 rows at a time)
constexpr int kCols = 64;   // keys per register block (4 x 16 int32 lanes)
constexpr float kDropped = -1.0e30f;  // a masked or padding key's score bias
// vpdpbusd's int32 lanes do not saturate: a context lane adds up to 255 * 127 per key, so 65,536 keys is the most.
constexpr int64_t kMaxLength = 65536;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread buffers, grown on demand and kept: one (batch, head) task at a time per thread.
struct Workspace {
  std::vector<uint8_t> q;       // (rows_pad, d) uint8: int8 q + 128 (vpdpbusd multiplies unsigned by signed bytes)
  std::vector<float> q_scale;   // (rows_pad)
  std::vector<int8_t> k;        // (d / 4, keys_pad, 4): the layout vpdpbusd reads 16 keys from
  std::vector<float> k_scale;   // (keys_pad)
  std::vector<int32_t> k_sum;   // (keys_pad): 128 * sum of a key's int8 values, the uint8 offset's correction
  std::vector<float> k_bias;    // (keys_pad): 0 for a real key, kDropped for a masked or padding one
  std::vector<int8_t> v;        // (keys_pad / 4, d, 4)
  std::vector<float> v_scale;   // (d)
  std::vector<float> v_inverse; // (d): 1 / v_scale, 0 for an all-zero channel
  std::vector<float> scores;    // (kRows, keys_pad)
  std::vector<uint8_t> probs;   // (kRows, keys_pad) uint8 probabilities
  std::vector<float> received;  // (keys_pad): this head's significance
  float sums[kRows];            // softmax denominators
  alignas(64) int8_t row[256];  // one quantized row
};

thread_local Workspace workspace;

template <typename T>
void ensure(std::vector<T>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
}

// 2^x for x <= 0 (a degree-5 polynomial on the fraction, then the power of two; relative error about 2e-7),
// clamped at -126 where floats leave the normal range. Scores are kept in base 2 (log2(e) is folded into the
// scale), so softmax's exp(s - max) is 2^(s' - max').
inline __m512 exp2_512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-126.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3333558e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 lanes(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1u); }

// Symmetric int8 of one row of `channels` floats into `out`, zero-padded to d (a multiple of 16); returns the scale.
inline float quantize_row(const float* x, int64_t channels, int64_t d, int8_t* out) {
  __m512 top = _mm512_setzero_ps();
  for (int64_t c = 0; c < d; c += 16)
    top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes(channels - c), x + c)));
  const float m = _mm512_reduce_max_ps(top);
  const __m512 inv = _mm512_set1_ps(m > 0.f ? 127.f / m : 0.f);
  for (int64_t c = 0; c < d; c += 16) {
    const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(channels - c), x + c), inv);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(y)));
  }
  return m / 127.f;
}

// One (batch, head): q, k, v point at the head's first channel of token 0; rows advance by `stride` floats. The
// head's `channels` are zero-padded to d, a multiple of 16, inside.
// `significance` (n) receives this head's column sums of the probabilities over the real queries.
void attend_head(const float* q, const float* k, const float* v, const float* mask, int64_t n, int64_t channels,
                 int64_t stride, float scale, float* context, float* significance) {
  Workspace& ws = workspace;
  const int64_t d = round_up(channels, 16);
  const int64_t rows_pad = round_up(n, kRows), keys_pad = round_up(n, kCols);
  const float scale2 = scale * 1.44269504088896341f;  // scores in base 2
  ensure(ws.q, rows_pad * d);
  ensure(ws.q_scale, rows_pad);
  ensure(ws.k, d * keys_pad);
  ensure(ws.k_scale, keys_pad);
  ensure(ws.k_sum, keys_pad);
  ensure(ws.k_bias, keys_pad);
  ensure(ws.v, keys_pad * d);
  ensure(ws.v_scale, d);
  ensure(ws.v_inverse, d);
  ensure(ws.scores, kRows * keys_pad);
  ensure(ws.probs, kRows * keys_pad);
  ensure(ws.received, keys_pad);

  bool any_real = mask == nullptr;
  for (int64_t j = 0; !any_real && j < n; ++j) any_real = mask[j] != 0.f;
  // A key that can receive attention (with no real key at all, every key: the rows are uniform).
  const auto is_real = [&](int64_t j) { return j < n && (mask == nullptr || mask[j] != 0.f || !any_real); };

  for (int64_t i = 0; i < rows_pad; ++i) {
    uint8_t* out = ws.q.data() + i * d;
    ws.q_scale[i] = i < n ? quantize_row(q + i * stride, channels, d, ws.row) : 0.f;
    for (int64_t c = 0; c < d; ++c) out[c] = i < n ? static_cast<uint8_t>(ws.row[c] + 128) : 128;
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
    int32_t total = 0;
    for (int64_t c4 = 0; c4 < d / 4; ++c4) {
      std::memcpy(ws.k.data() + (c4 * keys_pad + j) * 4, ws.row + c4 * 4, 4);
      total += ws.row[c4 * 4] + ws.row[c4 * 4 + 1] + ws.row[c4 * 4 + 2] + ws.row[c4 * 4 + 3];
    }
    ws.k_sum[j] = 128 * total;
  }
  // v per channel over the real keys (a masked key's probability rounds to 0 in uint8, its v stays 0), packed
  // (keys_pad / 4, d, 4).
  for (int64_t c = 0; c < d; c += 16) {
    __m512 top = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      if (!is_real(j)) continue;
      top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes(channels - c), v + j * stride + c)));
    }
    const __m512 scale_v = _mm512_div_ps(top, _mm512_set1_ps(127.f));
    _mm512_storeu_ps(ws.v_scale.data() + c, scale_v);
    _mm512_storeu_ps(ws.v_inverse.data() + c,
                     _mm512_maskz_div_ps(_mm512_cmp_ps_mask(scale_v, _mm512_setzero_ps(), _CMP_GT_OQ),
                                         _mm512_set1_ps(1.f), scale_v));
  }
  std::memset(ws.v.data(), 0, keys_pad * d);
  for (int64_t j = 0; j < n; ++j) {
    if (!is_real(j)) continue;
    const float* row = v + j * stride;
    int8_t* packed = ws.v.data() + (j / 4) * d * 4 + j % 4;
    for (int64_t c = 0; c < d; c += 16) {
      const __m512 inv = _mm512_loadu_ps(ws.v_inverse.data() + c);
      const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(channels - c), row + c), inv);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ws.row), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(y)));
      for (int64_t x = 0; x < 16; ++x) packed[(c + x) * 4] = ws.row[x];
    }
  }
  std::fill(ws.received.begin(), ws.received.begin() + keys_pad, 0.f);

  for (int64_t i0 = 0; i0 < n; i0 += kRows) {
    // Scores for kRows queries: int32 dot products of uint8 q and int8 k, 16 keys per register; each row's maximum
    // is kept on the way.
    __m512 top[kRows];
    for (auto& t : top) t = _mm512_set1_ps(kDropped);
    for (int64_t j0 = 0; j0 < keys_pad; j0 += kCols) {
      __m512i acc[kRows][4];
      for (auto& r : acc)
        for (auto& a : r) a = _mm512_setzero_si512();
      for (int64_t c4 = 0; c4 < d / 4; ++c4) {
        const int8_t* kb = ws.k.data() + (c4 * keys_pad + j0) * 4;
        const __m512i k0 = _mm512_loadu_si512(kb), k1 = _mm512_loadu_si512(kb + 64);
        const __m512i k2 = _mm512_loadu_si512(kb + 128), k3 = _mm512_loadu_si512(kb + 192);
        for (int r = 0; r < kRows; ++r) {
          int32_t quad;
          std::memcpy(&quad, ws.q.data() + (i0 + r) * d + c4 * 4, 4);
          const __m512i qb = _mm512_set1_epi32(quad);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], qb, k0);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], qb, k1);
          acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], qb, k2);
          acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], qb, k3);
        }
      }
      for (int b = 0; b < 4; ++b) {
        const int64_t j = j0 + 16 * b;
        const __m512i offset = _mm512_loadu_si512(ws.k_sum.data() + j);
        const __m512 ks = _mm512_loadu_ps(ws.k_scale.data() + j), bias = _mm512_loadu_ps(ws.k_bias.data() + j);
        for (int r = 0; r < kRows; ++r) {
          const __m512 dots = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], offset));
          const __m512 s = _mm512_fmadd_ps(_mm512_mul_ps(dots, _mm512_set1_ps(ws.q_scale[i0 + r] * scale2)), ks, bias);
          top[r] = _mm512_max_ps(top[r], s);
          _mm512_storeu_ps(ws.scores.data() + r * keys_pad + j, s);
        }
      }
    }
    // Softmax per row: exp(s - max) stays in the scores buffer for the significance, and goes to uint8 (255 for the
    // row's largest) for the context product.
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n - i0));
    __m512 weights[kRows];
    for (int r = 0; r < kRows; ++r) {
      uint8_t* p8 = ws.probs.data() + r * keys_pad;
      float* s = ws.scores.data() + r * keys_pad;
      if (r >= rows) {
        std::memset(p8, 0, keys_pad);
        std::memset(s, 0, keys_pad * sizeof(float));
        weights[r] = _mm512_setzero_ps();
        continue;
      }
      const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(top[r]));
      __m512 total = _mm512_setzero_ps();
      for (int64_t j = 0; j < keys_pad; j += 16) {
        const __m512 e = exp2_512(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
        _mm512_storeu_ps(s + j, e);
        total = _mm512_add_ps(total, e);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p8 + j),
                         _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(e, _mm512_set1_ps(255.f)))));
      }
      ws.sums[r] = _mm512_reduce_add_ps(total);
      weights[r] = _mm512_set1_ps((mask == nullptr ? 1.f : mask[i0 + r]) / ws.sums[r]);
    }
    // Significance: the rows' probabilities added into the keys' column sums in one pass (padding queries weigh 0).
    {
      const float* s0 = ws.scores.data();
      for (int64_t j = 0; j < keys_pad; j += 16) {
        __m512 sum = _mm512_loadu_ps(ws.received.data() + j);
        sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + j), weights[0], sum);
        sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + keys_pad + j), weights[1], sum);
        sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + 2 * keys_pad + j), weights[2], sum);
        sum = _mm512_fmadd_ps(_mm512_loadu_ps(s0 + 3 * keys_pad + j), weights[3], sum);
        _mm512_storeu_ps(ws.received.data() + j, sum);
      }
    }
    // Context for kRows queries: uint8 probabilities times int8 v, 16 channels per register.
    for (int64_t c0 = 0; c0 < d; c0 += 32) {
      const bool two = c0 + 16 < d;
      __m512i acc[kRows][2];
      for (auto& r : acc)
        for (auto& a : r) a = _mm512_setzero_si512();
      for (int64_t j4 = 0; j4 < keys_pad / 4; ++j4) {
        const int8_t* vb = ws.v.data() + (j4 * d + c0) * 4;
        const __m512i v0 = _mm512_loadu_si512(vb);
        const __m512i v1 = two ? _mm512_loadu_si512(vb + 64) : _mm512_setzero_si512();
        for (int r = 0; r < kRows; ++r) {
          int32_t quad;
          std::memcpy(&quad, ws.probs.data() + r * keys_pad + j4 * 4, 4);
          const __m512i pb = _mm512_set1_epi32(quad);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], pb, v0);
          if (two) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], pb, v1);
        }
      }
      for (int r = 0; r < rows; ++r) {
        const __m512 ps = _mm512_set1_ps(1.f / (255.f * ws.sums[r]));
        float* out = context + (i0 + r) * stride + c0;
        for (int b = 0; b < (two ? 2 : 1); ++b) {
          const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][b]), ps),
                                         _mm512_loadu_ps(ws.v_scale.data() + c0 + 16 * b));
          _mm512_mask_storeu_ps(out + 16 * b, lanes(channels - c0 - 16 * b), y);
        }
      }
    }
  }
  // A masked key's probabilities are 2^-126 (exp2_512's clamp) rather than 0 above: its significance is exactly 0,
  // as the reference's.
  for (int64_t j = 0; j < n; ++j) significance[j] = ws.k_bias[j] == 0.f ? ws.received[j] : 0.f;
}

}  // namespace

class PruningAttention : public ov::op::Op {
public:
  OPENVINO_OP("QuaLAPruningAttention", "qla_sdk");

  PruningAttention() = default;
  PruningAttention(const ov::OutputVector& args, int64_t heads, float scale)
      : Op(args), m_heads(heads), m_scale(scale) {
    constructor_validate_and_infer_types();
  }

  void validate_and_infer_types() override {
    NODE_VALIDATION_CHECK(this, get_input_size() == 3 || get_input_size() == 4,
                          "takes q, k, v and an optional mask, got ", get_input_size(), " inputs");
    for (size_t i = 0; i < get_input_size(); ++i) {
      const auto type = get_input_element_type(i);
      NODE_VALIDATION_CHECK(this, type == ov::element::f32 || type.is_dynamic(), "input ", i, " is ", type,
                            "; every input must be f32");
    }
    auto shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, m_heads > 0 && shape.rank().is_static() && shape.rank().get_length() == 3,
                          "q must be (batch, len, heads * head_dim) with heads > 0");
    for (size_t i : {1, 2})
      NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(shape, get_input_partial_shape(i)),
                            "k and v must have q's shape ", get_input_partial_shape(0), ", input ", i, " is ",
                            get_input_partial_shape(i));
    if (get_input_size() == 4) {
      auto rows = ov::PartialShape{shape[0], shape[1]};
      NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(rows, get_input_partial_shape(3)),
                            "the mask must be (batch, len) = ", ov::PartialShape{shape[0], shape[1]}, ", it is ",
                            get_input_partial_shape(3));
    }
    if (shape[1].is_static())
      NODE_VALIDATION_CHECK(this, shape[1].get_length() <= kMaxLength, "sequence length ", shape[1].get_length(),
                            " is above the int8 kernel's ", kMaxLength, " tokens");
    if (shape[2].is_static())
      NODE_VALIDATION_CHECK(this, shape[2].get_length() % m_heads == 0 && shape[2].get_length() / m_heads <= 256,
                            "hidden size ", shape[2].get_length(), " is not heads (", m_heads,
                            ") times a head size of at most 256");
    set_output_type(0, get_input_element_type(0), shape);
    set_output_type(1, get_input_element_type(0), ov::PartialShape{shape[0], shape[1]});
  }

  std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
    return std::make_shared<PruningAttention>(args, m_heads, m_scale);
  }

  bool visit_attributes(ov::AttributeVisitor& visitor) override {
    visitor.on_attribute("heads", m_heads);
    visitor.on_attribute("scale", m_scale);
    return true;
  }

  bool has_evaluate() const override { return true; }

  bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
    const ov::Shape shape = inputs[0].get_shape();
    const int64_t batch = shape[0], n = shape[1], hidden = shape[2], heads = m_heads, d = hidden / heads;
    if (hidden != heads * d || d > 256 || n > kMaxLength) return false;  // refused at validation when static
    if (inputs.size() > 3 && inputs[3].get_shape() != ov::Shape{shape[0], shape[1]}) return false;
    outputs[0].set_shape(shape);
    outputs[1].set_shape({shape[0], shape[1]});
    const float* q = inputs[0].data<const float>();
    const float* k = inputs[1].data<const float>();
    const float* v = inputs[2].data<const float>();
    const float* mask = inputs.size() > 3 ? inputs[3].data<const float>() : nullptr;
    float* context = outputs[0].data<float>();
    float* significance = outputs[1].data<float>();
    // One significance row per (batch, head), summed over heads after: tasks never write the same memory.
    std::vector<float> per_head(batch * heads * n, 0.f);
    const float scale = m_scale;
    ov::parallel_for2d(batch, heads, [&](int64_t b, int64_t h) {
      const int64_t offset = b * n * hidden + h * d;
      attend_head(q + offset, k + offset, v + offset, mask == nullptr ? nullptr : mask + b * n, n, d, hidden, scale,
                  context + offset, per_head.data() + (b * heads + h) * n);
    });
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < n; ++j) {
        float total = 0.f;
        for (int64_t h = 0; h < heads; ++h) total += per_head[(b * heads + h) * n + j];
        significance[b * n + j] = total;
      }
    return true;
  }

private:
  int64_t m_heads = 1;
  float m_scale = 1.f;
};

}  // namespace qla

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({std::make_shared<ov::OpExtension<qla::PruningAttention>>()}));
