#include "distributed/wire.h"

#include <cstdint>

#include "core/checked.h"
#include "core/error.h"

namespace tandem::distributed {

namespace {

// Reads words front to back; every read is bounds-checked and names the field it wanted.
class Reader {
 public:
  Reader(const std::vector<int64_t>& words, const char* what) : words_(words), what_(what) {}
  int64_t next(const char* field) {
    TANDEM_CHECK(pos_ < words_.size(), ErrorCode::kRuntime, "{}: ends before its {} ({} words)",
                 what_, field, words_.size());
    return words_[pos_++];
  }
  int64_t next_in(const char* field, int64_t lo, int64_t hi) {
    int64_t v = next(field);
    TANDEM_CHECK(v >= lo && v <= hi, ErrorCode::kRuntime, "{}: {} is {}, outside [{}, {}]", what_,
                 field, v, lo, hi);
    return v;
  }
  void expect_end() {
    TANDEM_CHECK(pos_ == words_.size(), ErrorCode::kRuntime,
                 "{}: {} words left over after its last field", what_, words_.size() - pos_);
  }
  const char* what() const { return what_; }

 private:
  const std::vector<int64_t>& words_;
  const char* what_;
  size_t pos_ = 0;
};

// A dtype whose elements have a fixed size travels as bytes; strings (and unknown values) do not.
bool known_dtype(int64_t v) {
  return v > 0 && v <= INT32_MAX && dtype_size(static_cast<DataType>(v)) > 0;
}

void put_tensor(std::vector<int64_t>& w, const WireTensor& t, bool with_batched) {
  w.push_back(static_cast<int64_t>(t.dtype));
  if (with_batched) w.push_back(t.batched ? 1 : 0);
  w.push_back(static_cast<int64_t>(t.shape.size()));
  w.insert(w.end(), t.shape.begin(), t.shape.end());
}

WireTensor get_tensor(Reader& r, bool with_batched, size_t max_tensor_bytes, size_t index) {
  WireTensor t;
  int64_t dtype = r.next("dtype");
  TANDEM_CHECK(known_dtype(dtype), ErrorCode::kRuntime,
               "{}: tensor {} has dtype {}, not one "
               "that travels as bytes",
               r.what(), index, dtype);
  t.dtype = static_cast<DataType>(dtype);
  if (with_batched) t.batched = r.next_in("batched flag", 0, 1) == 1;
  int64_t rank = r.next_in("tensor rank", 0, kMaxWireRank);
  for (int64_t d = 0; d < rank; ++d) t.shape.push_back(r.next_in("dim", 0, INT64_MAX));
  TANDEM_CHECK(!t.batched || rank >= 1, ErrorCode::kRuntime,
               "{}: tensor {} is batched but a scalar", r.what(), index);
  std::string what = std::string(r.what()) + ": tensor " + std::to_string(index);
  check_tensor_cap(checked_nbytes(t.dtype, t.shape, what), max_tensor_bytes, what, t.shape);
  return t;
}

}  // namespace

size_t wire_row_bytes(const WireTensor& t) {
  Shape rest(t.shape.begin() + (t.shape.empty() ? 0 : 1), t.shape.end());
  return checked_nbytes(t.dtype, rest, "a tensor's item");
}

size_t wire_bytes(const WireTensor& t) {
  return checked_nbytes(t.dtype, t.shape, "a tensor");
}

std::vector<int64_t> encode_request(const Request& q) {
  std::vector<int64_t> w{kRequestMagic, kWireVersion, static_cast<int64_t>(q.command), q.id};
  if (q.command == Command::kExit) return w;
  w.push_back(q.batch);
  w.push_back(static_cast<int64_t>(q.counts.size()));
  w.insert(w.end(), q.counts.begin(), q.counts.end());
  w.push_back(static_cast<int64_t>(q.inputs.size()));
  for (const WireTensor& t : q.inputs) put_tensor(w, t, true);
  return w;
}

Request decode_request(const std::vector<int64_t>& words, int ranks, size_t max_tensor_bytes) {
  Reader r(words, "request from rank 0");
  TANDEM_CHECK(r.next("magic") == kRequestMagic, ErrorCode::kRuntime,
               "request from rank 0: not a Tandem request (wrong magic)");
  int64_t version = r.next("version");
  TANDEM_CHECK(version == kWireVersion, ErrorCode::kRuntime,
               "request from rank 0: wire version {}, this build speaks {} (mixed Tandem builds "
               "in one MPI job?)",
               version, kWireVersion);
  Request q;
  q.command = static_cast<Command>(r.next_in("command", 1, 2));
  q.id = r.next("request id");
  if (q.command == Command::kExit) {
    r.expect_end();
    return q;
  }
  q.batch = r.next_in("batch", 0, INT64_MAX);
  int64_t n = r.next_in("rank count", 1, kMaxWireRanks);
  TANDEM_CHECK(n == ranks, ErrorCode::kRuntime,
               "request from rank 0: counts for {} ranks, the job has {}", n, ranks);
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    q.counts.push_back(r.next_in("item count", 0, INT64_MAX));
    sum = checked_add(sum, q.counts.back(), "the request's item counts");
  }
  int64_t inputs = r.next_in("input count", 0, kMaxWireTensors);
  for (int64_t i = 0; i < inputs; ++i) {
    q.inputs.push_back(get_tensor(r, true, max_tensor_bytes, static_cast<size_t>(i)));
    const WireTensor& t = q.inputs.back();
    TANDEM_CHECK(!t.batched || t.shape[0] == q.batch, ErrorCode::kRuntime,
                 "request from rank 0: batched input {} has {} items, the request {}", i,
                 t.shape[0], q.batch);
  }
  bool any_batched = false;
  for (const WireTensor& t : q.inputs) any_batched = any_batched || t.batched;
  // Without a batched input the request is one indivisible unit: exactly one rank runs it.
  TANDEM_CHECK(any_batched ? sum == q.batch : sum == 1, ErrorCode::kRuntime,
               "request from rank 0: item counts sum to {}, expected {}", sum,
               any_batched ? q.batch : 1);
  r.expect_end();
  return q;
}

std::vector<int64_t> encode_reply(const Reply& p) {
  std::vector<int64_t> w{kReplyMagic, p.id, p.ok ? 1 : 0, p.compute_us,
                         static_cast<int64_t>(p.outputs.size())};
  for (const WireTensor& t : p.outputs) put_tensor(w, t, false);
  return w;
}

Reply decode_reply(const std::vector<int64_t>& words, size_t max_tensor_bytes) {
  Reader r(words, "reply");
  TANDEM_CHECK(r.next("magic") == kReplyMagic, ErrorCode::kRuntime,
               "reply: not a Tandem reply (wrong magic)");
  Reply p;
  p.id = r.next("request id");
  p.ok = r.next_in("status", 0, 1) == 1;
  p.compute_us = r.next_in("compute time", 0, INT64_MAX);
  int64_t outputs = r.next_in("output count", 0, kMaxWireTensors);
  for (int64_t i = 0; i < outputs; ++i)
    p.outputs.push_back(get_tensor(r, false, max_tensor_bytes, static_cast<size_t>(i)));
  r.expect_end();
  return p;
}

}  // namespace tandem::distributed
