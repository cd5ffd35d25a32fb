// MpiPredictor over Open MPI. One request, as rank 0 runs it:
//   1. header: the encoded Request (wire.h), in two broadcasts: its length, polled (an idle rank
//      sleeps between tests instead of spinning a core its workers need), then the words;
//   2. inputs: each batched input with MPI_Scatterv by the request's item counts, each unbatched
//      one with MPI_Bcast;
//   3. every rank with items runs them on its own ParallelPredictor;
//   4. replies: each rank sends rank 0 its encoded Reply and, on failure, its message, point to
//      point, so rank 0 can name a rank that does not answer within the deadline;
//   5. rank 0 checks every reply against the model and broadcasts go / no-go;
//   6. on go, each output with MPI_Gatherv, then the one gather both local engines use
//      (parallel::gather_outputs) checks and assembles them.
// Tensors travel in units of one element of their dtype, so a count is an element count; MPI's
// counts are int, so a tensor of 2^31 elements or more per rank is refused by name.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "core/checked.h"
#include "core/error.h"
#include "distributed/wire.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/digest.h"
#include "parallel/splitter.h"
#include "tandem/mpi.h"

namespace tandem {

using distributed::Command;
using distributed::Reply;
using distributed::Request;
using distributed::WireTensor;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kReplyTag = 7101;
constexpr int kMessageTag = 7102;
// A request header longer than this is refused before it is allocated (wire.h bounds what it
// may hold: 65536 ranks and 4096 tensors of rank 64 fit well inside).
constexpr int64_t kMaxHeaderWords = 1 << 20;
constexpr size_t kMaxMessageBytes = 1 << 16;

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  raise(ErrorCode::kRuntime, "MPI {} failed: {}", what, std::string(text, len));
}

// Tests `req` until it completes or `deadline` passes (false). MPI's blocking calls spin at full
// speed; a rank waiting for the next request, or for a slower rank, would take a core from the
// workers on its host. So: spin for the first 100 us (a reply already on its way), then sleep
// between tests, up to 1 ms.
bool wait_polled(MPI_Request& req, Clock::time_point deadline, const char* what) {
  auto start = Clock::now();
  for (;;) {
    int done = 0;
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return true;
    auto now = Clock::now();
    if (now >= deadline) return false;
    auto waited = now - start;
    if (waited > std::chrono::microseconds(100))
      std::this_thread::sleep_for(
          std::min<Clock::duration>(waited / 8, std::chrono::milliseconds(1)));
  }
}

// An MPI datatype of one element of `dtype` (its bytes, contiguous).
class ElementType {
 public:
  explicit ElementType(DataType dtype) {
    mpi_check(MPI_Type_contiguous(static_cast<int>(dtype_size(dtype)), MPI_BYTE, &type_),
              "Type_contiguous");
    mpi_check(MPI_Type_commit(&type_), "Type_commit");
  }
  ~ElementType() { MPI_Type_free(&type_); }
  ElementType(const ElementType&) = delete;
  ElementType& operator=(const ElementType&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

int to_count(int64_t elements, const std::string& what) {
  TANDEM_CHECK(elements >= 0 && elements <= INT_MAX, ErrorCode::kUnsupported,
               "{}: {} elements in one MPI message; MPI counts stop at {} (split the batch "
               "over more ranks)",
               what, elements, INT_MAX);
  return static_cast<int>(elements);
}

// MPI_Bcast in pieces of at most 1 GiB, for tensors past int counts of bytes.
void bcast_bytes(void* data, size_t bytes, MPI_Comm comm) {
  auto* p = static_cast<uint8_t*>(data);
  constexpr size_t kPiece = size_t{1} << 30;
  for (size_t off = 0; off < bytes; off += kPiece)
    mpi_check(
        MPI_Bcast(p + off, static_cast<int>(std::min(kPiece, bytes - off)), MPI_BYTE, 0, comm),
        "Bcast");
}

// What must be the same on every rank: the model file's bytes (size and hash) and the inputs
// and outputs it was built with (fixed shapes included).
std::string signature(const std::string& model_path, const std::vector<TensorInfo>& inputs,
                      const std::vector<TensorInfo>& outputs) {
  std::string s = "model " + parallel::file_digest(model_path) + " | ";
  for (const auto* list : {&inputs, &outputs}) {
    for (const TensorInfo& t : *list)
      s += t.name + " " + dtype_name(t.dtype) + " " + shape_str(t.shape) + "; ";
    s += "| ";
  }
  return s;
}

int64_t numel_of_rows(const Shape& shape, int64_t rows, const std::string& what) {
  Shape s = shape;
  s[0] = rows;
  return checked_numel(s, what);
}

}  // namespace

class MpiPredictor::Impl {
 public:
  explicit Impl(MpiOptions options) : options_(std::move(options)) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init_thread");
      owns_mpi_ = true;
    }
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "Comm_dup");
    // Errors come back as return codes (thrown as tandem::Error) instead of aborting the job.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, len);
    TANDEM_CHECK(options_.deadline.count() > 0, ErrorCode::kInvalidArgument,
                 "MpiOptions::deadline must be positive");
    share_host_cores();
    local_ = std::make_unique<ParallelPredictor>(options_.local);
  }

  ~Impl() {
    try {
      finalize();
    } catch (...) {
    }
    local_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      MPI_Comm_free(&comm_);
      if (owns_mpi_) MPI_Finalize();
    }
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host() const { return host_; }
  ParallelPredictor& local() { return *local_; }

  void build() {
    if (built_) return;
    std::string error;
    try {
      local_->build();
      inputs_ = local_->inputs();
      outputs_ = local_->outputs();
    } catch (const std::exception& e) {
      error = e.what();
    }
    int devices = static_cast<int>(local_->stats().devices.size());
    std::string sig;
    try {
      if (error.empty()) sig = signature(options_.local.model_path, inputs_, outputs_);
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Every rank's {ok, devices, lengths} and text to rank 0; polled, since ranks build at
    // different speeds and the ones done first should not spin.
    std::vector<int64_t> mine{error.empty() ? 1 : 0, devices, static_cast<int64_t>(error.size()),
                              static_cast<int64_t>(host_.size()), static_cast<int64_t>(sig.size())};
    std::vector<int64_t> all(rank_ == 0 ? 5 * size_ : 0);
    MPI_Request req;
    mpi_check(MPI_Igather(mine.data(), 5, MPI_INT64_T, all.data(), 5, MPI_INT64_T, 0, comm_, &req),
              "Igather (build)");
    wait_polled(req, Clock::time_point::max(), "Igather (build)");
    std::string text = error + host_ + sig;
    std::vector<int> counts, displs;
    std::string all_text;
    if (rank_ == 0) {
      int off = 0;
      for (int r = 0; r < size_; ++r) {
        int64_t n = all[5 * r + 2] + all[5 * r + 3] + all[5 * r + 4];
        counts.push_back(to_count(n, "build report"));
        displs.push_back(off);
        off = to_count(int64_t{off} + n, "build reports");
      }
      all_text.resize(off);
    }
    mpi_check(
        MPI_Gatherv(text.data(), to_count(static_cast<int64_t>(text.size()), "build report"),
                    MPI_CHAR, all_text.data(), counts.data(), displs.data(), MPI_CHAR, 0, comm_),
        "Gatherv (build)");
    std::string verdict;
    if (rank_ == 0) {
      std::string sig0;
      for (int r = 0; r < size_; ++r) {
        const int64_t* w = &all[5 * r];
        size_t at = displs[r];
        std::string err = all_text.substr(at, w[2]);
        std::string host = all_text.substr(at + w[2], w[3]);
        std::string s = all_text.substr(at + w[2] + w[3], w[4]);
        MpiRankStats rs;
        rs.rank = r;
        rs.host = host;
        rs.devices = static_cast<int>(w[1]);
        rs.items_per_s = std::max(1, rs.devices);  // until measured: one item/s per worker
        stats_.ranks.push_back(rs);
        if (w[0] != 1) {
          verdict += fmt::format("\n  rank {} ({}): {}", r, host, err);
        } else if (sig0.empty() && r == 0) {
          sig0 = s;
        } else if (!sig0.empty() && s != sig0) {
          verdict += fmt::format(
              "\n  rank {} ({}): its model (file digest, inputs and outputs) differs from rank "
              "0's:\n    rank 0: {}\n    rank {}: {}",
              r, host, sig0, r, s);
        }
      }
    }
    int64_t verdict_len = static_cast<int64_t>(verdict.size());
    mpi_check(MPI_Bcast(&verdict_len, 1, MPI_INT64_T, 0, comm_), "Bcast (build)");
    TANDEM_CHECK(verdict_len >= 0 && verdict_len <= (int64_t{1} << 30), ErrorCode::kRuntime,
                 "build verdict of {} bytes from rank 0", verdict_len);
    verdict.resize(static_cast<size_t>(verdict_len));
    bcast_bytes(verdict.data(), verdict.size(), comm_);
    if (!verdict.empty()) {
      local_->finalize();
      raise(ErrorCode::kRuntime, "MPI job of {} ranks failed to build:{}", size_, verdict);
    }
    built_ = true;
  }

  std::vector<TensorInfo> inputs() const { return inputs_; }
  std::vector<TensorInfo> outputs() const { return outputs_; }

  std::vector<Tensor> predict(const std::vector<Tensor>& inputs) {
    TANDEM_CHECK(rank_ == 0, ErrorCode::kInvalidArgument,
                 "predict() is for rank 0; rank {} serves (call serve())", rank_);
    TANDEM_CHECK(built_ && !finalized_, ErrorCode::kInvalidArgument,
                 "MpiPredictor: call build() before predict() (and not after finalize())");
    TANDEM_CHECK(broken_.empty(), ErrorCode::kRuntime,
                 "MPI job unusable since an earlier request: {}", broken_);
    auto start = Clock::now();
    parallel::BatchedInputs in = parallel::analyse_inputs(inputs_, inputs);
    bool any_batched = std::find(in.batched.begin(), in.batched.end(), true) != in.batched.end();
    Request q;
    q.command = Command::kPredict;
    q.id = ++next_id_;
    q.batch = in.batch;
    q.counts = split_counts(any_batched ? in.batch : 1, in.fixed_batch);
    for (size_t i = 0; i < in.ordered.size(); ++i)
      q.inputs.push_back({in.ordered[i]->dtype(), in.ordered[i]->shape(), bool(in.batched[i])});
    send_header(distributed::encode_request(q));
    ++stats_.requests;
    std::vector<Tensor> mine = exchange_inputs(q, in.ordered);
    Local result = run_local(q, mine);

    // Replies: rank 0's own, then every other rank's, each within the deadline.
    std::vector<Reply> replies(size_);
    std::vector<std::string> messages(size_);
    replies[0] = result.reply;
    messages[0] = result.message;
    auto deadline = start + options_.deadline;
    std::string failures;
    for (int r = 1; r < size_; ++r) {
      try {
        receive_reply(r, deadline, replies[r], messages[r]);
      } catch (const Error& e) {
        broken_ = e.what();
        ++stats_.failed_requests;
        throw;
      }
    }
    std::vector<parallel::ShardPlan> shards;
    int64_t begin = 0, slowest_us = 0;
    for (int r = 0; r < size_; ++r) {
      int64_t count = q.counts[r];
      if (count > 0) {
        try {
          check_reply(replies[r], messages[r]);
        } catch (const Error& e) {
          failures += fmt::format("\n  rank {} ({}): {}", r, stats_.ranks[r].host, e.what());
        }
        shards.push_back({r, begin, count});
        slowest_us = std::max(slowest_us, replies[r].compute_us);
      }
      begin += count;
    }
    int64_t go = failures.empty() ? 1 : 0;
    bcast_go(go);
    if (!go) {
      ++stats_.failed_requests;
      raise(ErrorCode::kRuntime, "request {} failed on {} of {} ranks:{}", q.id,
            std::count(failures.begin(), failures.end(), '\n'), size_, failures);
    }
    // Output bytes: per output, per rank, into one buffer; then the shared gather.
    std::vector<std::vector<uint8_t>> buffers(outputs_.size());
    std::vector<std::vector<parallel::ShardOutput>> per_shard(shards.size());
    for (size_t o = 0; o < outputs_.size(); ++o) {
      std::vector<int> counts(size_, 0), displs(size_, 0);
      int64_t total = 0;
      for (int r = 0; r < size_; ++r) {
        if (q.counts[r] == 0) continue;
        const WireTensor& t = replies[r].outputs[o];
        counts[r] = to_count(checked_numel(t.shape, "an output"),
                             fmt::format("output '{}' of rank {}", outputs_[o].name, r));
        displs[r] = to_count(total, fmt::format("output '{}'", outputs_[o].name));
        total += counts[r];
      }
      to_count(total, fmt::format("output '{}'", outputs_[o].name));
      ElementType type(outputs_[o].dtype);
      buffers[o].resize(
          checked_nbytes(outputs_[o].dtype, Shape{total}, "an output's gathered bytes"));
      const Tensor* own = q.counts[0] > 0 ? &result.outputs[o] : nullptr;
      mpi_check(MPI_Gatherv(own ? own->raw() : nullptr, counts[0], type.get(), buffers[o].data(),
                            counts.data(), displs.data(), type.get(), 0, comm_),
                "Gatherv (outputs)");
      size_t s = 0;
      for (int r = 0; r < size_; ++r) {
        if (q.counts[r] == 0) continue;
        const WireTensor& t = replies[r].outputs[o];
        per_shard[s++].push_back(
            {t.dtype, t.shape,
             buffers[o].data() + static_cast<size_t>(displs[r]) * dtype_size(outputs_[o].dtype)});
      }
    }
    std::vector<Tensor> outputs =
        parallel::gather_outputs(outputs_, parallel::batched_outputs(outputs_, in.fixed_batch),
                                 shards, any_batched ? in.batch : 1, per_shard);
    double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    stats_.overhead_ms_last = std::max(0.0, wall_ms - slowest_us / 1000.0);
    stats_.overhead_ms_total += stats_.overhead_ms_last;
    for (int r = 0; r < size_; ++r) {
      if (q.counts[r] == 0) continue;
      MpiRankStats& rs = stats_.ranks[r];
      rs.items += q.counts[r];
      rs.busy_ms += replies[r].compute_us / 1000.0;
      double speed = q.counts[r] / std::max(1e-6, replies[r].compute_us / 1e6);
      // The first measurement replaces the guess; later ones move the average.
      rs.items_per_s = rs.items == q.counts[r] ? speed : 0.7 * rs.items_per_s + 0.3 * speed;
    }
    return outputs;
  }

  void serve() {
    TANDEM_CHECK(rank_ != 0, ErrorCode::kInvalidArgument,
                 "serve() is for ranks other than 0; rank 0 calls predict() and finalize()");
    TANDEM_CHECK(built_, ErrorCode::kInvalidArgument, "MpiPredictor: call build() before serve()");
    for (;;) {
      Request q =
          distributed::decode_request(receive_header(), size_, options_.local.max_tensor_bytes);
      if (q.command == Command::kExit) break;
      std::vector<Tensor> mine = exchange_inputs(q, {});
      Local result = run_local(q, mine);
      std::vector<int64_t> words = distributed::encode_reply(result.reply);
      mpi_check(MPI_Send(words.data(), to_count(static_cast<int64_t>(words.size()), "reply"),
                         MPI_INT64_T, 0, kReplyTag, comm_),
                "Send (reply)");
      std::string msg = result.message.substr(0, kMaxMessageBytes);
      mpi_check(MPI_Send(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, 0, kMessageTag, comm_),
                "Send (message)");
      int64_t go = 0;
      bcast_go(go);
      if (!go) continue;
      for (size_t o = 0; o < outputs_.size(); ++o) {
        ElementType type(outputs_[o].dtype);
        int count = q.counts[rank_] > 0 ? to_count(result.outputs[o].numel(), "an output") : 0;
        mpi_check(MPI_Gatherv(count ? result.outputs[o].raw() : nullptr, count, type.get(), nullptr,
                              nullptr, nullptr, type.get(), 0, comm_),
                  "Gatherv (outputs)");
      }
    }
    finalized_ = true;
    local_->finalize();
  }

  void finalize() {
    if (finalized_) return;
    finalized_ = true;
    int mpi_done = 0;
    MPI_Finalized(&mpi_done);  // the program (mpi4py at exit, say) finalised MPI before us
    if (rank_ == 0 && built_ && broken_.empty() && !mpi_done) {
      Request q;
      q.command = Command::kExit;
      q.id = ++next_id_;
      send_header(distributed::encode_request(q));
    }
    local_->finalize();
    // A rank missed its deadline: the others wait inside a collective that cannot complete, and
    // MPI_Finalize would wait for them. Ending the job is the only way not to hang.
    if (rank_ == 0 && !broken_.empty() && !mpi_done) {
      fmt::print(stderr, "error: ending the MPI job: {}\n", broken_);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
  }

  MpiStats stats() const { return stats_; }

 private:
  struct Local {
    Reply reply;
    std::string message;
    std::vector<Tensor> outputs;
  };

  // Where ranks share a host and no cores were given, divides the host's cores between them
  // (by local rank), then this rank's share between its cpu devices.
  void share_host_cores() {
    MPI_Comm node;
    mpi_check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
              "Comm_split_type");
    int local_rank = 0, local_size = 1;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    ParallelOptions& o = options_.local;
    if (local_size <= 1 || !o.core_lists.empty()) return;
    int host = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<int> share;
    if (local_size <= host) {
      for (int c = host * local_rank / local_size; c < host * (local_rank + 1) / local_size; ++c)
        share.push_back(c);
    } else {
      share.push_back(local_rank % host);  // more ranks than cores: they must share
    }
    if (o.devices.empty()) o.devices = parse_device_list(std::to_string(share.size()));
    int n_cpu = 0;
    for (const std::string& d : o.devices) n_cpu += d.rfind("cpu", 0) == 0 ? 1 : 0;
    int k = 0;
    for (const std::string& d : o.devices) {
      std::vector<int> cores;
      if (d.rfind("cpu", 0) == 0) {
        size_t n = share.size();
        size_t lo = n * k / n_cpu, hi = std::max(lo + 1, n * (k + 1) / n_cpu);
        for (size_t i = lo; i < hi; ++i) cores.push_back(share[i % n]);
        ++k;
      }
      o.core_lists.push_back(cores);
    }
  }

  // Items per rank, contiguous in rank order, in proportion to each rank's measured speed. For a
  // fixed-batch model, in whole shards of that batch (a rank's local runner pads only the last).
  std::vector<int64_t> split_counts(int64_t batch, int64_t fixed_batch) const {
    std::vector<double> speeds;
    for (const MpiRankStats& r : stats_.ranks) speeds.push_back(r.items_per_s);
    int64_t unit = fixed_batch > 0 ? fixed_batch : 1;
    int64_t units = (batch + unit - 1) / unit;
    std::vector<int64_t> counts(size_, 0);
    for (const parallel::ShardPlan& s : parallel::split_batch(units, speeds))
      counts[s.worker] += s.count * unit;
    // The last rank with items ends at the batch, not at a whole unit past it.
    int64_t excess = units * unit - batch;
    for (int r = size_ - 1; r >= 0 && excess > 0; --r) {
      int64_t cut = std::min(excess, counts[r]);
      counts[r] -= cut;
      excess -= cut;
    }
    return counts;
  }

  // Go / no-go after the replies. Non-blocking on every rank (a blocking and a non-blocking
  // collective never match): the ranks wait for rank 0 to hear from the slowest one.
  void bcast_go(int64_t& go) {
    MPI_Request req;
    mpi_check(MPI_Ibcast(&go, 1, MPI_INT64_T, 0, comm_, &req), "Ibcast (go)");
    wait_polled(req, Clock::time_point::max(), "Ibcast (go)");
  }

  void send_header(const std::vector<int64_t>& words) {
    int64_t len = static_cast<int64_t>(words.size());
    MPI_Request req;
    mpi_check(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, comm_, &req), "Ibcast (header)");
    wait_polled(req, Clock::time_point::max(), "Ibcast (header)");
    mpi_check(
        MPI_Bcast(const_cast<int64_t*>(words.data()), static_cast<int>(len), MPI_INT64_T, 0, comm_),
        "Bcast (header)");
  }

  std::vector<int64_t> receive_header() {
    int64_t len = 0;
    MPI_Request req;
    mpi_check(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, comm_, &req), "Ibcast (header)");
    wait_polled(req, Clock::time_point::max(), "Ibcast (header)");
    TANDEM_CHECK(len >= 1 && len <= kMaxHeaderWords, ErrorCode::kRuntime,
                 "request header of {} words from rank 0 (at most {})", len, kMaxHeaderWords);
    std::vector<int64_t> words(static_cast<size_t>(len));
    mpi_check(MPI_Bcast(words.data(), static_cast<int>(len), MPI_INT64_T, 0, comm_),
              "Bcast (header)");
    return words;
  }

  // Every rank's share of the inputs. Rank 0 passes the caller's tensors and gets views of its
  // own rows; the others get tensors of their own.
  std::vector<Tensor> exchange_inputs(const Request& q, const std::vector<const Tensor*>& given) {
    std::vector<Tensor> mine;
    int64_t first = 0;
    for (int r = 0; r < rank_; ++r) first += q.counts[r];
    const int64_t count = q.counts[rank_];
    for (size_t i = 0; i < q.inputs.size(); ++i) {
      const WireTensor& t = q.inputs[i];
      std::string name = i < inputs_.size() ? inputs_[i].name : "";
      std::string what = fmt::format("input '{}'", name);
      if (!t.batched) {
        Tensor whole =
            rank_ == 0 ? Tensor::borrow(t.dtype, t.shape, const_cast<void*>(given[i]->raw()), name)
                       : Tensor(t.dtype, t.shape, name);
        bcast_bytes(whole.raw(), whole.nbytes(), comm_);
        mine.push_back(whole);
        continue;
      }
      const int64_t row = t.shape.size() > 1 ? numel_of_rows(t.shape, 1, what) : 1;
      ElementType type(t.dtype);
      std::vector<int> counts, displs;
      if (rank_ == 0) {
        int64_t at = 0;
        for (int r = 0; r < size_; ++r) {
          counts.push_back(to_count(checked_mul(q.counts[r], row, what), what));
          displs.push_back(to_count(checked_mul(at, row, what), what));
          at += q.counts[r];
        }
      }
      Shape shard_shape = t.shape;
      shard_shape[0] = count;
      Tensor shard =
          rank_ == 0 ? Tensor::borrow(t.dtype, shard_shape,
                                      static_cast<uint8_t*>(const_cast<void*>(given[i]->raw())) +
                                          static_cast<size_t>(first * row) * dtype_size(t.dtype),
                                      name)
                     : Tensor(t.dtype, shard_shape, name);
      int recv = to_count(checked_mul(count, row, what), what);
      // Rank 0's own rows stay where they are (MPI_IN_PLACE).
      mpi_check(MPI_Scatterv(rank_ == 0 ? given[i]->raw() : nullptr, counts.data(), displs.data(),
                             type.get(), rank_ == 0 ? MPI_IN_PLACE : shard.raw(), recv, type.get(),
                             0, comm_),
                "Scatterv (inputs)");
      mine.push_back(shard);
    }
    return mine;
  }

  Local run_local(const Request& q, const std::vector<Tensor>& inputs) {
    Local l;
    if (q.counts[rank_] == 0) return l;
    auto t0 = Clock::now();
    try {
      l.outputs = local_->predict(inputs);
      for (const Tensor& t : l.outputs) l.reply.outputs.push_back({t.dtype(), t.shape(), false});
    } catch (const std::exception& e) {
      l.reply.ok = false;
      l.reply.outputs.clear();
      l.outputs.clear();
      l.message = e.what();
    }
    l.reply.compute_us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
    return l;
  }

  void receive_reply(int r, Clock::time_point deadline, Reply& reply, std::string& message) {
    const std::string who = fmt::format("rank {} ({})", r, stats_.ranks[r].host);
    for (int tag : {kReplyTag, kMessageTag}) {
      MPI_Status st;
      int found = 0;
      auto start = Clock::now();
      for (;;) {
        mpi_check(MPI_Iprobe(r, tag, comm_, &found, &st), "Iprobe (reply)");
        if (found) break;
        auto now = Clock::now();
        TANDEM_CHECK(now < deadline, ErrorCode::kRuntime,
                     "{} did not answer within {:.0f} s; the MPI job cannot be used any more", who,
                     std::chrono::duration<double>(options_.deadline).count());
        auto waited = now - start;
        if (waited > std::chrono::microseconds(100))
          std::this_thread::sleep_for(
              std::min<Clock::duration>(waited / 8, std::chrono::milliseconds(1)));
      }
      if (tag == kReplyTag) {
        int n = 0;
        MPI_Get_count(&st, MPI_INT64_T, &n);
        TANDEM_CHECK(n >= 1 && n <= kMaxHeaderWords, ErrorCode::kRuntime, "{}: reply of {} words",
                     who, n);
        std::vector<int64_t> words(n);
        mpi_check(MPI_Recv(words.data(), n, MPI_INT64_T, r, tag, comm_, MPI_STATUS_IGNORE),
                  "Recv (reply)");
        try {
          reply = distributed::decode_reply(words, options_.local.max_tensor_bytes);
        } catch (const Error& e) {
          // Received, so the protocol is still in step; the request fails at check_reply.
          reply.ok = false;
          reply.outputs.clear();
          message = e.what();
        }
      } else {
        int n = 0;
        MPI_Get_count(&st, MPI_CHAR, &n);
        std::string text(static_cast<size_t>(std::max(0, n)), '\0');
        mpi_check(MPI_Recv(text.data(), n, MPI_CHAR, r, tag, comm_, MPI_STATUS_IGNORE),
                  "Recv (message)");
        if (message.empty()) message = text.substr(0, kMaxMessageBytes);
      }
    }
  }

  // A rank's reply must match the model's outputs in number, dtype and rank; the dims are checked
  // by parallel::gather_outputs once the bytes are in.
  void check_reply(const Reply& reply, const std::string& message) {
    TANDEM_CHECK(reply.ok, ErrorCode::kRuntime, "{}", message.empty() ? "failed" : message);
    TANDEM_CHECK(reply.outputs.size() == outputs_.size(), ErrorCode::kRuntime,
                 "sent {} outputs, the model has {}", reply.outputs.size(), outputs_.size());
    for (size_t o = 0; o < outputs_.size(); ++o) {
      const WireTensor& t = reply.outputs[o];
      const TensorInfo& d = outputs_[o];
      TANDEM_CHECK(t.dtype == d.dtype, ErrorCode::kRuntime, "output '{}' is {}, the model says {}",
                   d.name, dtype_name(t.dtype), dtype_name(d.dtype));
      TANDEM_CHECK(t.shape.size() == d.shape.size(), ErrorCode::kRuntime,
                   "output '{}' has rank {}, the model says {}", d.name, t.shape.size(),
                   d.shape.size());
    }
  }

  MpiOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owns_mpi_ = false;
  int rank_ = 0, size_ = 1;
  std::string host_;
  std::unique_ptr<ParallelPredictor> local_;
  std::vector<TensorInfo> inputs_, outputs_;
  bool built_ = false, finalized_ = false;
  std::string broken_;  // why the job can no longer be used (a rank missed its deadline)
  int64_t next_id_ = 0;
  MpiStats stats_;
};

MpiPredictor::MpiPredictor(MpiOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
MpiPredictor::~MpiPredictor() = default;
int MpiPredictor::rank() const {
  return impl_->rank();
}
int MpiPredictor::size() const {
  return impl_->size();
}
std::string MpiPredictor::host() const {
  return impl_->host();
}
void MpiPredictor::build() {
  impl_->build();
}
std::vector<TensorInfo> MpiPredictor::inputs() const {
  return impl_->inputs();
}
std::vector<TensorInfo> MpiPredictor::outputs() const {
  return impl_->outputs();
}
std::vector<Tensor> MpiPredictor::predict(const std::vector<Tensor>& inputs) {
  return impl_->predict(inputs);
}
void MpiPredictor::serve() {
  impl_->serve();
}
void MpiPredictor::finalize() {
  impl_->finalize();
}
ParallelPredictor& MpiPredictor::local() {
  return impl_->local();
}
MpiStats MpiPredictor::stats() const {
  return impl_->stats();
}

}  // namespace tandem
