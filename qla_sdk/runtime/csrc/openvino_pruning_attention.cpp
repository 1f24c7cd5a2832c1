// The pruning layers' attention as one OpenVINO operation, in int8 on AVX512-VNNI or AMX (the kernel:
// ``pruning_attention_int8.h``), on OpenVINO's own threads. The graph rewrite is ``runtime/openvino_attention.py``;
// this file replaces its Python ``evaluate``. Same inputs and outputs as the Python operation: q, k, v (batch, len,
// heads * head_dim) f32 [, mask (batch, len) f32, 1 for real tokens]; outputs context (batch, len, heads * head_dim)
// and significance (batch, len), summed over heads and real queries.
#include <memory>
#include <string>
#include <vector>

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
  PruningAttention(const ov::OutputVector& args, int64_t heads, float scale, std::string isa = "auto")
      : Op(args), m_heads(heads), m_scale(scale), m_isa(std::move(isa)) {
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
    NODE_VALIDATION_CHECK(this, m_isa == "auto" || m_isa == "avx512_vnni" || m_isa == "amx_int8", "isa is '", m_isa,
                          "'; use auto (AMX where this process can run it, else AVX512-VNNI), avx512_vnni or amx_int8");
    NODE_VALIDATION_CHECK(this, m_isa != "amx_int8" || amx_usable(),
                          "isa amx_int8 asked for, but AMX cannot run here (the CPU or the Linux kernel lacks it, or "
                          "the extension was built without it); use isa auto or avx512_vnni");
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
    return std::make_shared<PruningAttention>(args, m_heads, m_scale, m_isa);
  }

  bool visit_attributes(ov::AttributeVisitor& visitor) override {
    visitor.on_attribute("heads", m_heads);
    visitor.on_attribute("scale", m_scale);
    visitor.on_attribute("isa", m_isa);
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
    const Isa isa = m_isa != "avx512_vnni" && amx_usable() && amx_fits(round_up(d, 16)) ? Isa::kAmx : Isa::kVnni;
    ov::parallel_for2d(batch, heads, [&](int64_t b, int64_t h) {
      const int64_t offset = b * n * hidden + h * d;
      attend_head(isa, q + offset, k + offset, v + offset, mask == nullptr ? nullptr : mask + b * n, n, d, hidden, scale,
                  context + offset, hidden, per_head.data() + (b * heads + h) * n);
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
  std::string m_isa = "auto";  // auto: AMX where it can run (and fits the head size), else AVX512-VNNI
};

}  // namespace qla

// The matrix instructions isa=auto runs on this machine, for the caller to record (loaded with ctypes).
extern "C" const char* qla_pruning_attention_isa() { return qla::amx_usable() ? "amx_int8" : "avx512_vnni"; }

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({std::make_shared<ov::OpExtension<qla::PruningAttention>>()}));
