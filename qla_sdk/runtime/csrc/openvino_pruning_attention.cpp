// The pruning layers' attention as one OpenVINO operation, in int8 on AMX, AVX512-VNNI or portable C++ (the kernel:
// ``pruning_attention_int8.h``), on OpenVINO's own threads. The graph rewrite is ``runtime/openvino_attention.py``;
// this file replaces its Python ``evaluate``. Same inputs and outputs as the Python operation: q, k, v (batch, len,
// heads * head_dim) f32 [, mask (batch, len) f32, 1 for real tokens]; outputs context (batch, len, heads * head_dim)
// and significance (batch, len), summed over heads and real queries.
//
// With keep > 0 it also chooses the tokens that stay, as ``modeling.encoder.select_tokens`` does: score = the
// significance, -1 for a masked token, the first token above all when keep_cls; the `keep` highest scores (ties to
// the earlier position), in original order. Outputs then: the context of the chosen tokens only (batch, keep, heads *
// head_dim), the significance (batch, len), the chosen positions (batch, keep) i32 ascending, and for each its rank
// among the chosen (batch, keep) i32 (what ``torch.sort`` of the ranked positions gives as indices). The graph's
// TopK, sort and row gather of the context then go, and no context is computed for tokens that leave. (i32: the CPU
// plugin runs the graph's i64 index arithmetic in i32 anyway; the rewrite converts them to the graph's i64.)
// A fifth input x (batch, len, width) f32, the layer's input, needs the mask as the fourth: its rows of the chosen
// tokens are a fifth output (batch, keep, width), which replaces the graph's row gather of x.
// With significance=false (and no token choice) the significance is not computed and the context is the only output:
// a full-length layer's attention, which chooses nothing.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "openvino/core/except.hpp"
#include "openvino/core/extension.hpp"
#include "openvino/core/op_extension.hpp"
#include "openvino/core/parallel.hpp"
#include "openvino/op/op.hpp"
#include "pruning_attention_int8.h"

namespace qla {

class PruningAttention : public ov::op::Op {
public:
  OPENVINO_OP("QuaLAPruningAttention", "qla_sdk");

  PruningAttention() = default;
  PruningAttention(const ov::OutputVector& args, int64_t heads, float scale, std::string isa = "auto", int64_t keep = 0,
                   bool keep_cls = false, bool significance = true)
      : Op(args),
        m_heads(heads),
        m_scale(scale),
        m_isa(std::move(isa)),
        m_keep(keep),
        m_keep_cls(keep_cls),
        m_significance(significance) {
    constructor_validate_and_infer_types();
  }

  void validate_and_infer_types() override {
    NODE_VALIDATION_CHECK(this, get_input_size() >= 3 && get_input_size() <= 5,
                          "takes q, k, v, an optional mask and (with keep and the mask) x, got ", get_input_size(),
                          " inputs");
    NODE_VALIDATION_CHECK(this, get_input_size() < 5 || m_keep > 0, "x (a fifth input) is only taken with keep > 0");
    for (size_t i = 0; i < get_input_size(); ++i) {
      const auto type = get_input_element_type(i);
      NODE_VALIDATION_CHECK(this, type == ov::element::f32 || type.is_dynamic(), "input ", i, " is ", type,
                            "; every input must be f32");
    }
    NODE_VALIDATION_CHECK(this, known_isa(m_isa), "isa is '", m_isa, "'; use ", kIsaChoices);
    auto shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, m_heads > 0 && shape.rank().is_static() && shape.rank().get_length() == 3,
                          "q must be (batch, len, heads * head_dim) with heads > 0");
    for (size_t i : {1, 2})
      NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(shape, get_input_partial_shape(i)),
                            "k and v must have q's shape ", get_input_partial_shape(0), ", input ", i, " is ",
                            get_input_partial_shape(i));
    if (get_input_size() >= 4) {
      auto rows = ov::PartialShape{shape[0], shape[1]};
      NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(rows, get_input_partial_shape(3)),
                            "the mask must be (batch, len) = ", ov::PartialShape{shape[0], shape[1]}, ", it is ",
                            get_input_partial_shape(3));
    }
    if (shape[1].is_static())
      NODE_VALIDATION_CHECK(this, shape[1].get_length() <= kMaxLength, "sequence length ", shape[1].get_length(),
                            " is above the int8 kernel's ", kMaxLength, " tokens");
    if (shape[2].is_static()) {
      NODE_VALIDATION_CHECK(this, shape[2].get_length() % m_heads == 0 && shape[2].get_length() / m_heads <= 256,
                            "hidden size ", shape[2].get_length(), " is not heads (", m_heads,
                            ") times a head size of at most 256");
      const std::string refusal = isa_refusal(m_isa, round_up(shape[2].get_length() / m_heads, 16));
      NODE_VALIDATION_CHECK(this, refusal.empty(), refusal);
    } else {
      const std::string refusal = isa_refusal(m_isa, 64);  // AMX fits any head size of at most 64 channels
      NODE_VALIDATION_CHECK(this, refusal.empty(), refusal);
    }
    NODE_VALIDATION_CHECK(this, m_keep >= 0, "keep is ", m_keep, "; use 0 (no token choice) or the tokens to keep");
    NODE_VALIDATION_CHECK(this, m_significance || m_keep == 0,
                          "significance=false leaves the token choice nothing to choose by; use it with keep 0");
    if (m_keep > 0 && shape[1].is_static())
      NODE_VALIDATION_CHECK(this, m_keep <= shape[1].get_length(), "keep ", m_keep, " is above the ",
                            shape[1].get_length(), " tokens of the input");
    if (m_keep == 0) {
      set_output_type(0, get_input_element_type(0), shape);
      if (m_significance) set_output_type(1, get_input_element_type(0), ov::PartialShape{shape[0], shape[1]});
      return;
    }
    set_output_type(0, get_input_element_type(0), ov::PartialShape{shape[0], m_keep, shape[2]});
    set_output_type(1, get_input_element_type(0), ov::PartialShape{shape[0], shape[1]});
    set_output_type(2, ov::element::i32, ov::PartialShape{shape[0], m_keep});
    set_output_type(3, ov::element::i32, ov::PartialShape{shape[0], m_keep});
    if (get_input_size() == 5) {
      const auto x = get_input_partial_shape(4);
      NODE_VALIDATION_CHECK(this, x.rank().is_static() && x.rank().get_length() == 3, "x must be (batch, len, width)");
      auto rows = ov::PartialShape{shape[0], shape[1]};
      NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(rows, ov::PartialShape{x[0], x[1]}),
                            "x must be (batch, len, width) with q's batch and len, it is ", x);
      set_output_type(4, get_input_element_type(4), ov::PartialShape{shape[0], m_keep, x[2]});
    }
  }

  std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
    return std::make_shared<PruningAttention>(args, m_heads, m_scale, m_isa, m_keep, m_keep_cls, m_significance);
  }

  bool visit_attributes(ov::AttributeVisitor& visitor) override {
    visitor.on_attribute("heads", m_heads);
    visitor.on_attribute("scale", m_scale);
    visitor.on_attribute("isa", m_isa);
    visitor.on_attribute("keep", m_keep);
    visitor.on_attribute("keep_cls", m_keep_cls);
    visitor.on_attribute("significance", m_significance);
    return true;
  }

  bool has_evaluate() const override { return true; }

  bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
    const ov::Shape shape = inputs[0].get_shape();
    const int64_t batch = shape[0], n = shape[1], hidden = shape[2], heads = m_heads, d = hidden / heads;
    // Each refused at validation where the shapes are static.
    if (hidden != heads * d || d > 256 || n > kMaxLength || m_keep > n) return false;
    if (inputs[1].get_shape() != shape || inputs[2].get_shape() != shape) return false;  // dynamic lengths: k, v as q
    if (inputs.size() > 3 && inputs[3].get_shape() != ov::Shape{shape[0], shape[1]}) return false;
    if (inputs.size() > 4 && (inputs[4].get_shape().size() != 3 || inputs[4].get_shape()[0] != shape[0] ||
                              inputs[4].get_shape()[1] != shape[1]))
      return false;
    const float* q = inputs[0].data<const float>();
    const float* k = inputs[1].data<const float>();
    const float* v = inputs[2].data<const float>();
    const float* mask = inputs.size() > 3 ? inputs[3].data<const float>() : nullptr;
    float* significance = nullptr;
    if (m_significance) {
      outputs[1].set_shape({shape[0], shape[1]});
      significance = outputs[1].data<float>();
    }
    // One significance row per (batch, head), summed over heads after: tasks never write the same memory.
    // (Kept by the calling thread between calls; tasks get the pointer: a thread_local named inside a task would be
    // the worker thread's own. Every entry is written before it is read.)
    thread_local std::vector<float> per_head_buffer;
    ensure(per_head_buffer, batch * heads * n);
    float* const per_head = per_head_buffer.data();
    const float scale = m_scale;
    // Refused at validation where the hidden size is static; with a dynamic one, here, with the reason.
    const std::string refusal = isa_refusal(m_isa, round_up(d, 16));
    if (!refusal.empty()) OPENVINO_THROW(refusal);
    const Isa isa = resolve_isa(m_isa, round_up(d, 16));
    const auto sum_heads = [&](int64_t b) {  // heads in order, as the one-pass sum was
      float* total = significance + b * n;
      std::fill(total, total + n, 0.f);
      for (int64_t h = 0; h < heads; ++h) {
        const float* row = per_head + (b * heads + h) * n;
        for (int64_t j = 0; j < n; ++j) total[j] += row[j];
      }
    };
    if (m_keep == 0) {
      outputs[0].set_shape(shape);
      float* context = outputs[0].data<float>();
      ov::parallel_for2d(batch, heads, [&](int64_t b, int64_t h) {
        const int64_t offset = b * n * hidden + h * d;
        attend_head(isa, q + offset, k + offset, v + offset, mask == nullptr ? nullptr : mask + b * n, n, d, hidden,
                    scale, context + offset, hidden, significance == nullptr ? nullptr : per_head + (b * heads + h) * n);
      });
      if (significance != nullptr)
        for (int64_t b = 0; b < batch; ++b) sum_heads(b);
      return true;
    }
    const int64_t keep = m_keep;
    outputs[0].set_shape({shape[0], static_cast<size_t>(keep), shape[2]});
    outputs[2].set_shape({shape[0], static_cast<size_t>(keep)});
    outputs[3].set_shape({shape[0], static_cast<size_t>(keep)});
    float* context = outputs[0].data<float>();
    const float* x = inputs.size() > 4 ? inputs[4].data<const float>() : nullptr;
    const int64_t width = x == nullptr ? 0 : static_cast<int64_t>(inputs[4].get_shape()[2]);
    float* x_rows = nullptr;
    if (x != nullptr) {
      outputs[4].set_shape({shape[0], static_cast<size_t>(keep), static_cast<size_t>(width)});
      x_rows = outputs[4].data<float>();
    }
    int32_t* positions = outputs[2].data<int32_t>();
    int32_t* ranks = outputs[3].data<int32_t>();
    // Rows of the batch in chunks that still give every thread two (row, head) tasks: the saved probabilities of a
    // chunk (heads x len x len bytes per row) then stay near the cores that read them again.
    const int64_t threads = parallel_get_max_threads();
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(batch, (2 * threads + heads - 1) / heads));
    const int64_t padded_d = round_up(d, 16), keys_pad = round_up(n, kCols), rows_pad = round_up(n, kAmxRows);
    // Kept by the calling thread between calls, as per_head.
    thread_local std::vector<uint8_t> probs_buffer;
    thread_local std::vector<float> sums_buffer, v_scale_buffer;
    thread_local std::vector<int8_t> v_buffer;
    thread_local std::vector<int32_t> out_rows_buffer;
    ensure(probs_buffer, chunk * heads * rows_pad * keys_pad);
    ensure(out_rows_buffer, chunk * n);
    ensure(sums_buffer, chunk * heads * n);
    ensure(v_buffer, chunk * heads * keys_pad * padded_d);
    ensure(v_scale_buffer, chunk * heads * padded_d);
    uint8_t* const probs = probs_buffer.data();
    float* const sums = sums_buffer.data();
    int8_t* const packed_v = v_buffer.data();
    float* const v_scales = v_scale_buffer.data();
    int32_t* const out_rows = out_rows_buffer.data();  // (chunk, n): each query row's row in the context, or -1
    const auto saved = [=](int64_t slot) {
      return SavedHead{probs + slot * rows_pad * keys_pad, sums + slot * n, packed_v + slot * keys_pad * padded_d,
                       v_scales + slot * padded_d};
    };
    for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
      const int64_t rows = std::min(chunk, batch - b0);
      ov::parallel_for2d(rows, heads, [&](int64_t r, int64_t h) {
        const int64_t b = b0 + r, offset = b * n * hidden + h * d;
        const SavedHead slot = saved(r * heads + h);
        attend_head(isa, q + offset, k + offset, v + offset, mask == nullptr ? nullptr : mask + b * n, n, d, hidden,
                    scale, nullptr, hidden, per_head + (b * heads + h) * n, &slot);
      });
      for (int64_t b = b0; b < b0 + rows; ++b) {
        sum_heads(b);
        choose(significance + b * n, mask == nullptr ? nullptr : mask + b * n, n, positions + b * keep,
               ranks + b * keep);
        int32_t* row_of = out_rows + (b - b0) * n;
        std::fill(row_of, row_of + n, -1);
        for (int64_t i = 0; i < keep; ++i) row_of[positions[b * keep + i]] = static_cast<int32_t>(i);
      }
      ov::parallel_for2d(rows, heads, [&](int64_t r, int64_t h) {
        const int64_t b = b0 + r;
        context_of_rows(isa, saved(r * heads + h), out_rows + r * n, n, d, context + b * keep * hidden + h * d,
                        hidden);
        if (x == nullptr) return;
        for (int64_t i = h; i < keep; i += heads)  // the row gather of x, shared out over the heads' tasks
          std::memcpy(x_rows + (b * keep + i) * width, x + (b * n + positions[b * keep + i]) * width,
                      width * sizeof(float));
      });
    }
    return true;
  }

  // ``select_tokens`` for one row: the chosen positions (keep) ascending, and each one's rank among the chosen.
  // Each token's order is one integer key (the score's bits made to sort as integers, reversed for the highest
  // first, then the position for ties), so the choice is a partition and one sort of the chosen keys.
  void choose(const float* significance, const float* mask, int64_t n, int32_t* positions, int32_t* ranks) const {
    thread_local std::vector<uint64_t> keys;
    thread_local std::vector<int32_t> rank_of;
    ensure(keys, n);
    ensure(rank_of, n);
    for (int64_t j = 0; j < n; ++j) {
      float score = mask != nullptr && !(mask[j] > 0.f) ? -1.f : significance[j];
      if (m_keep_cls && j == 0) score = std::numeric_limits<float>::infinity();
      uint32_t bits;
      std::memcpy(&bits, &score, sizeof bits);
      bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u;  // now ordered as the floats are
      keys[j] = static_cast<uint64_t>(~bits) << 32 | static_cast<uint64_t>(j);
    }
    const auto chosen = keys.begin() + m_keep;
    std::nth_element(keys.begin(), chosen, keys.begin() + n);
    std::sort(keys.begin(), chosen);
    std::fill(rank_of.begin(), rank_of.begin() + n, -1);
    for (int64_t r = 0; r < m_keep; ++r) rank_of[keys[r] & 0xFFFFFFFFu] = static_cast<int32_t>(r);
    for (int64_t j = 0, i = 0; j < n; ++j)
      if (rank_of[j] >= 0) {
        positions[i] = static_cast<int32_t>(j);
        ranks[i++] = rank_of[j];
      }
  }

private:
  int64_t m_heads = 1;
  float m_scale = 1.f;
  std::string m_isa = "auto";  // auto: AMX where it can run (and fits the head size), else AVX512-VNNI, else portable
  int64_t m_keep = 0;          // tokens to keep (0: no token choice, two outputs)
  bool m_keep_cls = false;     // the first token always stays
  bool m_significance = true;  // false: no significance output (keep 0 only)
};

}  // namespace qla

// The matrix instructions isa=auto runs on this machine, for the caller to record (loaded with ctypes).
extern "C" const char* qla_pruning_attention_isa() { return qla::auto_isa_name(); }

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({std::make_shared<ov::OpExtension<qla::PruningAttention>>()}));
