// What every path of the int8 pruning attention shares (``pruning_attention_int8.h`` runs them): the block sizes,
// the per-thread workspace, the choice of instructions, and the float steps whose order fixes the outputs' bits.
//
// Numerics, per (batch, head): q and k are quantized per token to int8 (symmetric), v per channel; the probabilities
// go to uint8 per row as round(255 * exp(s - rowmax)), which keeps the row's largest probability exact in scale. The
// significance sums float32 probabilities of those int8 scores (not of uint8 ones). v's per-channel scale is taken
// over the real keys only, so what padding holds changes nothing. Every path computes the same int32 products
// exactly and the same float steps in the same order (sums over 16 lanes then ``sum16``'s pairing), so all give the
// same outputs, bit for bit.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace qla {
namespace {

constexpr int kVnniRows = 4;  // query rows per block on AVX512-VNNI (in registers) and on the portable path
constexpr int kAmxRows = 16;  // query rows per tile block on AMX
constexpr int kCols = 64;     // keys per block (4 x 16 int32 lanes, or four tiles)
constexpr int kLanes = 16;    // float32 lanes the sums run over
constexpr float kDropped = -1.0e30f;  // a masked or padding key's score bias
// A row (q, k) or channel (v) whose largest magnitude is at most this quantizes to zeros with scale 0: 127 / m and the
// values times it stay finite, so every path rounds the same numbers (an infinite one saturates differently per path).
constexpr float kNegligible = 1.0e-30f;
// The int32 sums (vpdpbusd lanes, tdpbusd tiles) do not saturate: a context lane adds up to 255 * 127 per key, so
// 65,536 keys is the most.
constexpr int64_t kMaxLength = 65536;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread buffers, grown on demand and kept: one (batch, head) task at a time per thread. The layouts are the
// vector paths'; the portable path keeps k as (d, keys_pad) and v as (keys_pad, d) in the same buffers.
struct Workspace {
  std::vector<int8_t> q;        // (rows_pad, d): int8 q for AMX (tdpbssd), q + 128 as uint8 bytes for AVX512-VNNI
  std::vector<float> q_scale;   // (rows_pad)
  std::vector<int8_t> k;        // (d / 4, keys_pad, 4): the layout vpdpbusd reads 16 keys from
  std::vector<float> k_scale;   // (keys_pad)
  std::vector<int32_t> k_sum;   // (keys_pad): VNNI's uint8 offset correction, 128 * sum of a key's int8 values
  std::vector<float> k_bias;    // (keys_pad): 0 for a real key, kDropped for a masked or padding one
  std::vector<int8_t> v;        // (keys_pad / 4, d, 4)
  std::vector<float> v_scale;   // (d)
  std::vector<float> v_inverse; // (d): 1 / v_scale, 0 for an all-zero channel
  std::vector<float> scores;    // (kAmxRows, keys_pad); AMX stores its int32 dot products here first
  std::vector<uint8_t> probs;   // (kAmxRows, keys_pad) uint8 probabilities
  std::vector<int32_t> partial; // (kAmxRows, d): AMX's int32 context sums
  std::vector<float> received;  // (keys_pad): this head's significance
  float row_max[kAmxRows];      // each score row's maximum
  float sums[kAmxRows];         // softmax denominators
  float weights[kAmxRows];      // each row's significance weight: its mask value over its denominator
  alignas(64) int8_t row[256];  // one quantized row
};

// The calling thread's workspace. Not inlined: inlined, the compiler re-derives the thread-local address (a call to
// __tls_get_addr in a shared library) inside the inner loops instead of keeping the reference in a register.
__attribute__((noinline)) Workspace& thread_workspace() {
  thread_local Workspace workspace;
  return workspace;
}

template <typename T>
void ensure(std::vector<T>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
}

// Grows the workspace for a head of n tokens and d (padded) channels.
void reserve_head(Workspace& ws, int64_t n, int64_t d) {
  const int64_t rows_pad = round_up(n, kAmxRows), keys_pad = round_up(n, kCols);
  ensure(ws.q, rows_pad * d);
  ensure(ws.q_scale, rows_pad);
  ensure(ws.k, d * keys_pad);
  ensure(ws.k_scale, keys_pad);
  ensure(ws.k_sum, keys_pad);
  ensure(ws.k_bias, keys_pad);
  ensure(ws.v, keys_pad * d);
  ensure(ws.v_scale, d);
  ensure(ws.v_inverse, d);
  ensure(ws.scores, kAmxRows * keys_pad);
  ensure(ws.probs, kAmxRows * keys_pad);
  ensure(ws.partial, kAmxRows * d);
  ensure(ws.received, keys_pad);
}

// Which keys can receive attention: with a mask, its nonzero ones; with no real key at all, every key (the rows are
// then uniform, as the reference's float32.min bias gives).
struct RealKeys {
  const float* mask;
  int64_t n;
  bool any_real;

  RealKeys(const float* mask_, int64_t n_) : mask(mask_), n(n_), any_real(mask_ == nullptr) {
    for (int64_t j = 0; !any_real && j < n; ++j) any_real = mask[j] != 0.f;
  }
  bool operator()(int64_t j) const { return j < n && (mask == nullptr || mask[j] != 0.f || !any_real); }
};

// The sum of 16 float lanes, paired as GCC's _mm512_reduce_add_ps pairs them: the lanes 8 apart, then 4, 2 and 1.
// Every path sums its softmax denominators this way, so their outputs agree bit for bit.
inline float sum16(const float* lanes) {
  float eight[8], four[4];
  for (int i = 0; i < 8; ++i) eight[i] = lanes[i + 8] + lanes[i];
  for (int i = 0; i < 4; ++i) four[i] = eight[i + 4] + eight[i];
  return (four[0] + four[2]) + (four[1] + four[3]);
}

// Softmax of a block's first `rows` score rows over their first `keys` (the block's other rows are zeroed):
// `exponentials(scores, probs, row_max)` turns one row's scores into 255 * exp2(s - max) in place, writes their uint8
// copy (255 for the row's largest) and returns their sum over 16 lanes, then ``sum16``; here each row's denominator
// and significance weight (its mask value over the denominator; padding queries weigh 0). Each path gives its own
// `exponentials`, the same numbers.
template <typename Exponentials>
void softmax_block(Workspace& ws, int block, int rows, const float* mask_rows, int64_t keys_pad, int64_t keys,
                   uint8_t* probs, Exponentials exponentials) {
  for (int r = 0; r < block; ++r) {
    uint8_t* p8 = probs + r * keys_pad;
    float* s = ws.scores.data() + r * keys_pad;
    if (r >= rows) {
      std::memset(p8, 0, keys);
      std::memset(s, 0, keys * sizeof(float));
      ws.weights[r] = 0.f;
      continue;
    }
    ws.sums[r] = exponentials(s, p8, ws.row_max[r]);
    ws.weights[r] = (mask_rows == nullptr ? 1.f : mask_rows[r]) / ws.sums[r];
  }
}

// What a context product reads and writes for one block of query rows: their uint8 probabilities (rows keys_pad
// apart) and softmax denominators, and the context row each one goes to (`out_rows[r]`, -1 for a row not wanted; or,
// without `out_rows`, row i0 + r).
struct ContextBlock {
  const uint8_t* probs;
  const float* sums;
  int64_t i0;
  const int32_t* out_rows = nullptr;

  int64_t out_row(int r) const { return out_rows == nullptr ? i0 + r : out_rows[r]; }
};

// What a selecting call keeps of one (batch, head) between its two passes: the uint8 probabilities of every query row
// (round_up(n, kAmxRows) rows, keys_pad apart), their softmax denominators (n), and v packed as the context product
// reads it (keys_pad x d bytes), with its scales.
struct SavedHead {
  uint8_t* probs;
  float* sums;
  int8_t* v;
  float* v_scale; // (d)
};

// The instructions of the two int8 products: AMX tiles, AVX512-VNNI's vpdpbusd (both need the build to have them:
// -march=native on a CPU that does), or plain C++ that any x86-64 compiler vectorizes for what the CPU has.
enum class Isa { kPortable, kVnni, kAmx };

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define QLA_INT8_VNNI 1
#else
#define QLA_INT8_VNNI 0
#endif
#if QLA_INT8_VNNI && defined(__AMX_TILE__) && defined(__AMX_INT8__)
#define QLA_INT8_AMX 1
#else
#define QLA_INT8_AMX 0
#endif

// Whether AMX tiles can run here: built with them and granted by Linux, which hands out the tile state per process on
// request (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA).
constexpr int kArchRequestXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM (asm/prctl.h)
constexpr int kXfeatureXtiledata = 18;         // XFEATURE_XTILEDATA

bool amx_usable() {
  static const bool usable = QLA_INT8_AMX && syscall(SYS_arch_prctl, kArchRequestXcompPerm, kXfeatureXtiledata) == 0;
  return usable;
}

// AMX runs a head of at most 64 channels in one tile, or a multiple of 64 in several.
bool amx_fits(int64_t d) { return d <= 64 || d % 64 == 0; }

// The names callers give (``isa`` attributes and arguments), and what each runs.
constexpr const char* kIsaChoices = "auto (the fastest this process can run), amx_int8, avx512_vnni or portable";

bool known_isa(const std::string& name) {
  return name == "auto" || name == "amx_int8" || name == "avx512_vnni" || name == "portable";
}

// Why `name` cannot run here for a head of d (padded) channels, or "" where it can (`name` is known).
std::string isa_refusal(const std::string& name, int64_t d) {
  if (name == "amx_int8" && !amx_usable())
    return "isa amx_int8 asked for, but AMX cannot run here (the CPU or the Linux kernel lacks it, or the extension "
           "was built without it); use isa auto (the best this machine runs) or portable";
  if (name == "amx_int8" && !amx_fits(d))
    return "isa amx_int8 asked for, but the head size is not at most 64 or a multiple of 64; use isa auto";
  if (name == "avx512_vnni" && !QLA_INT8_VNNI)
    return "isa avx512_vnni asked for, but the extension was built for a CPU without AVX512-VNNI; use isa auto or "
           "portable";
  return "";
}

// The instructions `name` (known, not refused) runs on for a head of d (padded) channels.
Isa resolve_isa(const std::string& name, int64_t d) {
  if (name == "portable") return Isa::kPortable;
  if (name == "avx512_vnni") return Isa::kVnni;
  if (name == "amx_int8" || (amx_usable() && amx_fits(d))) return Isa::kAmx;
  return QLA_INT8_VNNI ? Isa::kVnni : Isa::kPortable;
}

// What isa=auto runs on here (for a head of at most 64 channels).
const char* auto_isa_name() { return amx_usable() ? "amx_int8" : QLA_INT8_VNNI ? "avx512_vnni" : "portable"; }

}  // namespace
}  // namespace qla
