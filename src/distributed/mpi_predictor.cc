// MpiPredictor over Open MPI.
//
// Two communicators: `comm_` (a duplicate of MPI_COMM_WORLD) carries the small point-to-point
// messages — request headers, replies, go, heartbeats, new memberships — and `data_` carries the
// tensors, with collectives over the ranks currently alive. One request, as rank 0 runs it:
//   1. header: the encoded Request (wire.h) to every live rank; an idle rank polls for it,
//      sleeping between polls instead of spinning a core its workers need;
//   2. inputs: each batched input with MPI_Iscatterv by the request's item counts, each unbatched
//      one with MPI_Ibcast, all posted at once;
//   3. every rank with items runs them on its own ParallelPredictor (sending rank 0 a heartbeat
//      every `heartbeat` meanwhile); rank 0 starts on its own rows at once and drives the
//      collectives of step 2 while they compute, the others start once their inputs are in;
//   4. replies: each rank sends rank 0 its encoded Reply (with the request id) and, on failure,
//      its message, so rank 0 can name a rank that fails;
//   5. rank 0 checks every reply against the model and sends go / no-go;
//   6. on go, each output with MPI_Igatherv, then the one gather both local engines use
//      (parallel::gather_outputs) checks and assembles them.
// Faults: a rank from which rank 0 hears nothing (no heartbeat, no reply) for `liveness` while a
// request runs, or with which MPI reports an error, is lost. Rank 0 tells the others the new
// membership, every survivor builds a new `data_` over the survivors (MPI_Comm_create_group,
// collective over them alone), pending collectives on the old one are abandoned, and the request
// is run again from the start on the survivors. A rank that learns it is no longer a member ends
// its serve() with an error. This needs the MPI runtime to keep the job when a process dies
// (Open MPI: `mpirun --enable-recovery`); without it mpirun ends the whole job and names the rank.
// Tensors travel in units of one element of their dtype, so a count is an element count; MPI's
// counts are int, so a tensor of 2^31 elements or more per rank is refused by name.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <future>
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

constexpr int kHeaderTag = 7100;
constexpr int kReplyTag = 7101;
constexpr int kMessageTag = 7102;
constexpr int kGoTag = 7103;
constexpr int kHeartbeatTag = 7104;
constexpr int kMembersTag = 7105;
// A rank's last word in a request (its outputs are sent): from then on it is idle, and its
// silence is no sign of death.
constexpr int kDoneTag = 7106;
// MPI_Comm_create_group's tag; the membership's epoch is added so no two calls share one.
constexpr int kGroupTagBase = 8000;
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

// How long a polling wait may sleep between polls. Inside a request another rank is about to
// answer, and every sleep past its answer is added to the request's latency: short. An idle rank
// waiting for the next request: short for a second after a request (a stream of requests, or
// rank 0 busy between them; a late start there delays the whole request), then long, so an idle
// job costs next to no CPU.
constexpr Clock::duration kRequestPoll = std::chrono::microseconds(100);
constexpr Clock::duration kIdlePoll = std::chrono::milliseconds(1);
constexpr Clock::duration kBackToBack = std::chrono::seconds(1);

// Sleeps a little longer the longer a wait has lasted: nothing for the first 100 us (an answer
// already on its way), then an eighth of the wait so far, at most `cap`.
void back_off(Clock::time_point since, Clock::duration cap = kRequestPoll) {
  auto waited = Clock::now() - since;
  if (waited > std::chrono::microseconds(100))
    std::this_thread::sleep_for(std::min<Clock::duration>(waited / 8, cap));
}

// Build-time waits (every rank is alive and busy building): test until done, sleeping between.
void wait_polled(MPI_Request& req, const char* what) {
  auto start = Clock::now();
  for (;;) {
    int done = 0;
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    back_off(start, kIdlePoll);
  }
}

// Thrown inside a request when ranks are lost (rank 0) or when rank 0 announced a new membership
// (the others); caught by the request loop, never by callers.
struct RanksLost {
  std::vector<int> ranks;
  std::string why;
};
struct MembershipChanged {};

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
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &group_parent_), "Comm_dup");
    // Errors come back as return codes (thrown as tandem::Error, or taken as a lost rank)
    // instead of aborting the job.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(group_parent_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    mpi_check(MPI_Comm_dup(comm_, &data_), "Comm_dup");
    MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN);
    for (int r = 0; r < size_; ++r) alive_.push_back(r);
    last_seen_.assign(size_, Clock::now());
    done_.assign(size_, false);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, len);
    TANDEM_CHECK(options_.deadline.count() > 0 && options_.liveness.count() > 0 &&
                     options_.heartbeat.count() > 0 && options_.heartbeat < options_.liveness,
                 ErrorCode::kInvalidArgument,
                 "MpiOptions: deadline, liveness and heartbeat must be positive, heartbeat "
                 "shorter than liveness");
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
      // A communicator with abandoned collectives (after a lost rank) is left alone: freeing it
      // could wait for them.
      if (epoch_ == 0) MPI_Comm_free(&data_);
      MPI_Comm_free(&group_parent_);
      MPI_Comm_free(&comm_);
      // After a lost rank, MPI_Finalize's fence would wait for it forever (Open MPI 4 without
      // ULFM): the process ends without it, as the runtime was told to tolerate.
      if (owns_mpi_ && epoch_ == 0) MPI_Finalize();
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
    wait_polled(req, "Igather (build)");
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
    TANDEM_CHECK(verdict_len >= 0 && verdict_len <= INT_MAX, ErrorCode::kRuntime,
                 "build verdict of {} bytes from rank 0", verdict_len);
    verdict.resize(static_cast<size_t>(verdict_len));
    if (!verdict.empty())
      mpi_check(MPI_Bcast(verdict.data(), static_cast<int>(verdict.size()), MPI_CHAR, 0, comm_),
                "Bcast (build)");
    if (!verdict.empty()) {
      local_->finalize();
      raise(ErrorCode::kRuntime, "MPI job of {} ranks failed to build:{}", size_, verdict);
    }
    built_ = true;
  }

  std::vector<TensorInfo> inputs() const { return inputs_; }
  std::vector<TensorInfo> outputs() const { return outputs_; }

  // only_rank: -1 to split the batch over the ranks, else the world rank that takes all of it.
  std::vector<Tensor> predict(const std::vector<Tensor>& inputs, int only_rank = -1) {
    TANDEM_CHECK(rank_ == 0, ErrorCode::kInvalidArgument,
                 "predict() is for rank 0; rank {} serves (call serve())", rank_);
    TANDEM_CHECK(built_ && !finalized_, ErrorCode::kInvalidArgument,
                 "MpiPredictor: call build() before predict() (and not after finalize())");
    TANDEM_CHECK(broken_.empty(), ErrorCode::kRuntime,
                 "MPI job unusable since an earlier request: {}", broken_);
    parallel::BatchedInputs in = parallel::analyse_inputs(inputs_, inputs);
    ++stats_.requests;
    auto start = Clock::now();
    for (;;) {
      try {
        TANDEM_CHECK(
            only_rank < 0 || std::find(alive_.begin(), alive_.end(), only_rank) != alive_.end(),
            ErrorCode::kInvalidArgument,
            "predict_on: rank {} is not a member of the MPI job (members: {})", only_rank,
            fmt::join(alive_, ", "));
        return attempt(in, start, only_rank);
      } catch (const RanksLost& lost) {
        drop_ranks(lost);
      } catch (const Error&) {
        ++stats_.failed_requests;
        throw;
      }
    }
  }

  void serve() {
    TANDEM_CHECK(rank_ != 0, ErrorCode::kInvalidArgument,
                 "serve() is for ranks other than 0; rank 0 calls predict() and finalize()");
    TANDEM_CHECK(built_, ErrorCode::kInvalidArgument, "MpiPredictor: call build() before serve()");
    for (;;) {
      // Idle: the next message from rank 0 is a header or a new membership.
      MPI_Status st;
      auto start = Clock::now();
      for (;;) {
        int found = 0;
        mpi_check(MPI_Iprobe(0, MPI_ANY_TAG, comm_, &found, &st), "Iprobe (idle)");
        if (found) break;
        back_off(start, Clock::now() - start < kBackToBack ? kRequestPoll : kIdlePoll);
      }
      if (st.MPI_TAG == kMembersTag) {
        take_membership();
        continue;
      }
      if (st.MPI_TAG != kHeaderTag) {  // left over from an abandoned request: drop it
        drop_message(st);
        continue;
      }
      Request q =
          distributed::decode_request(receive_words(st, "header"), static_cast<int>(alive_.size()),
                                      options_.local.max_tensor_bytes);
      if (q.command == Command::kExit) break;
      try {
        serve_request(q);
      } catch (const MembershipChanged&) {
        take_membership();
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
      std::vector<int64_t> words = distributed::encode_request(q);
      for (int r : alive_)
        if (r != 0) {
          MPI_Send(words.data(), static_cast<int>(words.size()), MPI_INT64_T, r, kHeaderTag, comm_);
        }
    }
    local_->finalize();
    // A rank missed the deadline while MPI kept it a member: the others may wait inside a
    // collective that cannot complete, and MPI_Finalize would wait for them. Ending the job is
    // the only way not to hang.
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

  // Every rank's share of the inputs, its collectives posted: each batched input with
  // MPI_Iscatterv, each unbatched one with MPI_Ibcast (in pieces of at most 1 GiB, MPI's counts
  // being int). Rank 0 passes the caller's tensors and gets views of its own rows, usable at
  // once; the others get tensors of their own, filled once wait_inputs(posted) returns. What the
  // collectives read (types, count arrays) lives here until then.
  struct PostedInputs {
    std::vector<Tensor> mine;
    std::vector<MPI_Request> requests;
    std::vector<std::unique_ptr<ElementType>> types;
    std::vector<std::vector<int>> arrays;
    Clock::time_point done_at;  // when the last one completed
  };

  // What one attempt's collectives write into or read from: its inputs, its outputs (what a
  // rank other than 0 sends in the gather) and rank 0's gather buffers. An attempt abandoned after
  // a lost rank leaves its collectives posted on the old data communicator, and any later MPI call
  // may still complete them, so its Attempt is kept (abandoned_) instead of freed under them. (Rank
  // 0's sends read the caller's tensors; those complete during the rerun that follows.)
  struct Attempt {
    PostedInputs posted;
    Local result;
    std::vector<std::vector<uint8_t>> buffers;
  };

  // --- rank 0 ---

  std::vector<Tensor> attempt(const parallel::BatchedInputs& in, Clock::time_point start,
                              int only_rank) {
    Attempt a;
    try {
      return run_attempt(in, start, only_rank, a);
    } catch (const RanksLost&) {
      abandoned_.push_back(std::move(a));
      throw;
    }
  }

  std::vector<Tensor> run_attempt(const parallel::BatchedInputs& in, Clock::time_point start,
                                  int only_rank, Attempt& a) {
    const int n = static_cast<int>(alive_.size());
    bool any_batched = std::find(in.batched.begin(), in.batched.end(), true) != in.batched.end();
    Request q;
    q.command = Command::kPredict;
    q.id = ++next_id_;
    q.batch = in.batch;
    if (only_rank < 0) {
      q.counts = split_counts(any_batched ? in.batch : 1, in.fixed_batch);
    } else {
      q.counts.assign(n, 0);
      q.counts[index_of(only_rank)] = any_batched ? in.batch : 1;
    }
    for (size_t i = 0; i < in.ordered.size(); ++i)
      q.inputs.push_back({in.ordered[i]->dtype(), in.ordered[i]->shape(), bool(in.batched[i])});
    std::vector<int64_t> words = distributed::encode_request(q);
    for (int r : alive_) last_seen_[r] = Clock::now();
    done_.assign(size_, false);
    current_id_ = q.id;
    for (int i = 1; i < n; ++i) send_to(alive_[i], kHeaderTag, words.data(), words.size());
    // Rank 0's own rows need no transfer: it computes them while the others' go out.
    a.posted = post_inputs(q, in.ordered);
    PostedInputs& posted = a.posted;
    a.result = run_local(q, posted.mine, &posted, start);
    const Local& result = a.result;
    const auto computed = Clock::now();
    wait_inputs(posted, start);
    const auto sent = std::max(posted.done_at, start);

    // Replies: rank 0's own, then every other rank's.
    std::vector<Reply> replies(n);
    std::vector<std::string> messages(n);
    replies[0] = result.reply;
    messages[0] = result.message;
    for (int i = 1; i < n; ++i) receive_reply(i, q.id, start, replies[i], messages[i]);
    const auto replied = Clock::now();
    std::vector<parallel::ShardPlan> shards;
    std::string failures;
    int64_t begin = 0, slowest_us = 0;
    for (int i = 0; i < n; ++i) {
      int64_t count = q.counts[i];
      if (count > 0) {
        try {
          check_reply(replies[i], messages[i]);
        } catch (const Error& e) {
          failures += fmt::format("\n  rank {} ({}): {}", alive_[i], host_of(alive_[i]), e.what());
        }
        shards.push_back({i, begin, count});
        slowest_us = std::max(slowest_us, replies[i].compute_us);
      }
      begin += count;
    }
    int64_t go = failures.empty() ? 1 : 0;
    for (int i = 1; i < n; ++i) send_to(alive_[i], kGoTag, &go, 1);
    if (!go) {
      raise(ErrorCode::kRuntime, "request {} failed on {} of {} ranks:{}", q.id,
            std::count(failures.begin(), failures.end(), '\n'), n, failures);
    }
    // Output bytes: per output, per rank, into one buffer; then the shared gather.
    std::vector<std::vector<uint8_t>>& buffers = a.buffers;
    buffers.resize(outputs_.size());
    std::vector<std::vector<parallel::ShardOutput>> per_shard(shards.size());
    for (size_t o = 0; o < outputs_.size(); ++o) {
      std::vector<int> counts(n, 0), displs(n, 0);
      int64_t total = 0;
      for (int i = 0; i < n; ++i) {
        if (q.counts[i] == 0) continue;
        const WireTensor& t = replies[i].outputs[o];
        counts[i] = to_count(checked_numel(t.shape, "an output"),
                             fmt::format("output '{}' of rank {}", outputs_[o].name, alive_[i]));
        displs[i] = to_count(total, fmt::format("output '{}'", outputs_[o].name));
        total += counts[i];
      }
      ElementType type(outputs_[o].dtype);
      buffers[o].resize(
          checked_nbytes(outputs_[o].dtype, Shape{total}, "an output's gathered bytes"));
      const Tensor* own = q.counts[0] > 0 ? &result.outputs[o] : nullptr;
      std::vector<MPI_Request> req(1);
      mpi_check(MPI_Igatherv(own ? own->raw() : nullptr, counts[0], type.get(), buffers[o].data(),
                             counts.data(), displs.data(), type.get(), 0, data_, &req[0]),
                "Igatherv (outputs)");
      wait_data(req, start, "Igatherv (outputs)");
      size_t s = 0;
      for (int i = 0; i < n; ++i) {
        if (q.counts[i] == 0) continue;
        const WireTensor& t = replies[i].outputs[o];
        per_shard[s++].push_back(
            {t.dtype, t.shape,
             buffers[o].data() + static_cast<size_t>(displs[i]) * dtype_size(outputs_[o].dtype)});
      }
    }
    std::vector<Tensor> outputs =
        parallel::gather_outputs(outputs_, parallel::batched_outputs(outputs_, in.fixed_batch),
                                 shards, any_batched ? in.batch : 1, per_shard);
    const auto end = Clock::now();
    auto ms = [](Clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    double wall_ms = ms(end - start);
    stats_.send_ms_total += ms(sent - start);
    stats_.own_compute_ms_total += result.reply.compute_us / 1000.0;
    stats_.wait_ms_total += ms(replied - computed);
    stats_.gather_ms_total += ms(end - replied);
    stats_.overhead_ms_last = std::max(0.0, wall_ms - slowest_us / 1000.0);
    stats_.overhead_ms_total += stats_.overhead_ms_last;
    for (int i = 0; i < n; ++i) {
      if (q.counts[i] == 0) continue;
      MpiRankStats& rs = stats_.ranks[alive_[i]];
      rs.items += q.counts[i];
      rs.busy_ms += replies[i].compute_us / 1000.0;
      double speed = q.counts[i] / std::max(1e-6, replies[i].compute_us / 1e6);
      // The first measurement replaces the guess; later ones move the average.
      rs.items_per_s = rs.items == q.counts[i] ? speed : 0.7 * rs.items_per_s + 0.3 * speed;
    }
    return outputs;
  }

  // Heartbeats and late replies of abandoned attempts are drained; a live rank that has not been
  // heard from for `liveness`, or the request running past the deadline, ends the attempt.
  void watch(Clock::time_point start) {
    RanksLost lost;
    drain_heartbeats(lost);
    auto now = Clock::now();
    for (int r : alive_)
      if (r != 0 && !done_[r] && now - last_seen_[r] > options_.liveness &&
          std::find(lost.ranks.begin(), lost.ranks.end(), r) == lost.ranks.end())
        lost.ranks.push_back(r);
    if (!lost.ranks.empty()) {
      if (lost.why.empty())
        lost.why = fmt::format("no word for {:.1f} s",
                               std::chrono::duration<double>(options_.liveness).count());
      throw lost;
    }
    if (now - start > options_.deadline) {
      broken_ = fmt::format("a request ran past the deadline of {:.0f} s",
                            std::chrono::duration<double>(options_.deadline).count());
      raise(ErrorCode::kRuntime, "{}; the MPI job cannot be used any more", broken_);
    }
  }

  // Tests data collectives once (each one done becomes MPI_REQUEST_NULL); true when all are.
  bool test_data(std::vector<MPI_Request>& reqs, Clock::time_point start, const char* what) {
    for (MPI_Request& req : reqs) {
      if (req == MPI_REQUEST_NULL) continue;
      int done = 0;
      int rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        if (rank_ == 0) stale_after_error(start, what, rc);
        throw MembershipChanged{};  // a rank died under us: rank 0 will say who
      }
      if (!done) return false;
    }
    return true;
  }

  // Waits for data collectives. The ranks are all in them, so it spins (yielding): sleeping
  // between tests would slow a large transfer, which progresses only while tested.
  void wait_data(std::vector<MPI_Request>& reqs, Clock::time_point start, const char* what) {
    auto last_watch = Clock::now();
    while (!test_data(reqs, start, what)) {
      if (Clock::now() - last_watch > std::chrono::milliseconds(5)) {
        if (rank_ == 0)
          watch(start);
        else
          keep_in_touch();
        last_watch = Clock::now();
      }
      std::this_thread::yield();
    }
  }

  // An MPI error in a collective does not say which rank failed: wait (draining heartbeats)
  // until some rank goes stale, and take that one as lost.
  [[noreturn]] void stale_after_error(Clock::time_point start, const char* what, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    for (;;) {
      try {
        watch(start);
      } catch (RanksLost& lost) {
        lost.why += fmt::format(" (after MPI {} failed: {})", what, std::string(text, len));
        throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void receive_reply(int i, int64_t id, Clock::time_point start, Reply& reply,
                     std::string& message) {
    const int r = alive_[i];
    for (;;) {
      MPI_Status st;
      int found = 0;
      auto wait_start = Clock::now();
      for (;;) {
        if (MPI_Iprobe(r, kReplyTag, comm_, &found, &st) != MPI_SUCCESS)
          throw RanksLost{{r}, "MPI reported an error with it"};
        if (found) break;
        watch(start);
        back_off(wait_start);
      }
      std::vector<int64_t> words = receive_words(st, "reply");
      MPI_Status mst;
      do {
        watch(start);
      } while (!probe(r, kMessageTag, mst));
      std::string text(static_cast<size_t>(count_of(mst, MPI_CHAR)), '\0');
      MPI_Recv(text.data(), static_cast<int>(text.size()), MPI_CHAR, r, kMessageTag, comm_,
               MPI_STATUS_IGNORE);
      try {
        reply = distributed::decode_reply(words, options_.local.max_tensor_bytes);
      } catch (const Error& e) {
        // Received, so the protocol is still in step; the request fails at check_reply.
        reply = Reply{};
        reply.ok = false;
        reply.id = id;
        message = e.what();
        return;
      }
      if (reply.id != id) continue;  // a late reply to an abandoned attempt
      message = text.substr(0, kMaxMessageBytes);
      return;
    }
  }

  // The lost ranks leave: the survivors learn the new membership, and every member builds the
  // data communicator over the survivors.
  void drop_ranks(const RanksLost& lost) {
    std::string names;
    for (int r : lost.ranks) {
      names += fmt::format("{}rank {} ({})", names.empty() ? "" : ", ", r, host_of(r));
      alive_.erase(std::remove(alive_.begin(), alive_.end(), r), alive_.end());
      ++stats_.ranks_lost;
    }
    std::string note = fmt::format("{} lost: {}; the request runs again on {} rank{}", names,
                                   lost.why, alive_.size(), alive_.size() == 1 ? "" : "s");
    stats_.lost.push_back(note);
    fmt::print(stderr, "warning: {}\n", note);
    std::vector<int64_t> members(alive_.begin(), alive_.end());
    for (int r : alive_)
      if (r != 0) send_to(r, kMembersTag, members.data(), members.size());
    // A rank taken for lost may only be slow: told the membership without it, it stops instead
    // of waiting for rank 0 forever. Not waited for (it may be dead).
    for (int r : lost.ranks) {
      MPI_Request req;
      if (MPI_Isend(members.data(), static_cast<int>(members.size()), MPI_INT64_T, r, kMembersTag,
                    comm_, &req) == MPI_SUCCESS)
        MPI_Request_free(&req);
    }
    rebuild_data();
    ++stats_.requests_rerun;
  }

  // --- the other ranks ---

  void serve_request(const Request& q) {
    Attempt a;
    try {
      serve_attempt(q, a);
    } catch (const MembershipChanged&) {
      abandoned_.push_back(std::move(a));
      throw;
    }
  }

  void serve_attempt(const Request& q, Attempt& a) {
    const int me = index_of(rank_);
    a.posted = post_inputs(q, {});
    PostedInputs& posted = a.posted;
    wait_inputs(posted, Clock::now());
    a.result = run_local(q, posted.mine, nullptr, Clock::now());
    Local& result = a.result;
    result.reply.id = q.id;
    std::vector<int64_t> words = distributed::encode_reply(result.reply);
    send_to(0, kReplyTag, words.data(), words.size());
    std::string msg = result.message.substr(0, kMaxMessageBytes);
    mpi_check(MPI_Send(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, 0, kMessageTag, comm_),
              "Send (message)");
    // Go or no-go; a new membership instead means the attempt was abandoned.
    MPI_Status st;
    auto start = Clock::now();
    while (!probe(0, kGoTag, st)) {
      keep_in_touch();
      back_off(start);
    }
    int64_t go = 0;
    MPI_Recv(&go, 1, MPI_INT64_T, 0, kGoTag, comm_, MPI_STATUS_IGNORE);
    if (!go) return;
    for (size_t o = 0; o < outputs_.size(); ++o) {
      ElementType type(outputs_[o].dtype);
      int count = q.counts[me] > 0 ? to_count(result.outputs[o].numel(), "an output") : 0;
      std::vector<MPI_Request> req(1);
      mpi_check(MPI_Igatherv(count ? result.outputs[o].raw() : nullptr, count, type.get(), nullptr,
                             nullptr, nullptr, type.get(), 0, data_, &req[0]),
                "Igatherv (outputs)");
      wait_data(req, start, "Igatherv (outputs)");
    }
    int64_t id = q.id;
    send_to(0, kDoneTag, &id, 1);
  }

  // During a request: a heartbeat to rank 0 every `heartbeat`, and a new membership from rank 0
  // abandons the request.
  void keep_in_touch() {
    auto now = Clock::now();
    if (now - last_beat_ >= options_.heartbeat) {
      int64_t beat = 1;
      MPI_Send(&beat, 1, MPI_INT64_T, 0, kHeartbeatTag, comm_);
      last_beat_ = now;
    }
    MPI_Status st;
    if (probe(0, kMembersTag, st)) throw MembershipChanged{};
  }

  void take_membership() {
    MPI_Status st;
    while (!probe(0, kMembersTag, st)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::vector<int64_t> members = receive_words(st, "membership");
    std::vector<int> next;
    for (int64_t r : members) {
      TANDEM_CHECK(r >= 0 && r < size_ && (next.empty() || r > next.back()), ErrorCode::kRuntime,
                   "membership from rank 0: rank {} out of order or range", r);
      next.push_back(static_cast<int>(r));
    }
    TANDEM_CHECK(std::find(next.begin(), next.end(), rank_) != next.end(), ErrorCode::kRuntime,
                 "rank {} ({}) was dropped from the MPI job by rank 0 (it took this rank for "
                 "lost)",
                 rank_, host_);
    alive_ = next;
    rebuild_data();
  }

  // --- both ---

  void rebuild_data() {
    ++epoch_;
    MPI_Group world, members;
    MPI_Comm_group(group_parent_, &world);
    MPI_Group_incl(world, static_cast<int>(alive_.size()), alive_.data(), &members);
    MPI_Comm next;
    mpi_check(MPI_Comm_create_group(group_parent_, members, kGroupTagBase + epoch_, &next),
              "Comm_create_group");
    MPI_Group_free(&members);
    MPI_Group_free(&world);
    MPI_Comm_set_errhandler(next, MPI_ERRORS_RETURN);
    data_ = next;  // the old one may hold abandoned collectives: not freed
  }

  int index_of(int world_rank) const {
    auto it = std::find(alive_.begin(), alive_.end(), world_rank);
    return static_cast<int>(it - alive_.begin());
  }

  std::string host_of(int r) const {
    return r < static_cast<int>(stats_.ranks.size()) ? stats_.ranks[r].host : "?";
  }

  void send_to(int r, int tag, const int64_t* words, size_t n) {
    int rc = MPI_Send(words, static_cast<int>(n), MPI_INT64_T, r, tag, comm_);
    if (rc != MPI_SUCCESS) {
      if (rank_ == 0) throw RanksLost{{r}, "MPI reported an error sending to it"};
      mpi_check(rc, "Send");
    }
  }

  bool probe(int source, int tag, MPI_Status& st) {
    int found = 0;
    mpi_check(MPI_Iprobe(source, tag, comm_, &found, &st), "Iprobe");
    return found != 0;
  }

  static int count_of(const MPI_Status& st, MPI_Datatype type) {
    int n = 0;
    MPI_Get_count(&st, type, &n);
    return std::max(0, n);
  }

  std::vector<int64_t> receive_words(const MPI_Status& st, const char* what) {
    int n = count_of(st, MPI_INT64_T);
    TANDEM_CHECK(n >= 1 && n <= kMaxHeaderWords, ErrorCode::kRuntime, "{} of {} words from rank {}",
                 what, n, st.MPI_SOURCE);
    std::vector<int64_t> words(static_cast<size_t>(n));
    mpi_check(
        MPI_Recv(words.data(), n, MPI_INT64_T, st.MPI_SOURCE, st.MPI_TAG, comm_, MPI_STATUS_IGNORE),
        "Recv");
    return words;
  }

  void drop_message(const MPI_Status& st) {
    std::vector<char> bytes(static_cast<size_t>(count_of(st, MPI_BYTE)));
    MPI_Recv(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG,
             comm_, MPI_STATUS_IGNORE);
  }

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
    for (int r : alive_) speeds.push_back(stats_.ranks[r].items_per_s);
    int64_t unit = fixed_batch > 0 ? fixed_batch : 1;
    int64_t units = (batch + unit - 1) / unit;
    std::vector<int64_t> counts(alive_.size(), 0);
    for (const parallel::ShardPlan& s : parallel::split_batch(units, speeds))
      counts[s.worker] += s.count * unit;
    // The last rank with items ends at the batch, not at a whole unit past it.
    int64_t excess = units * unit - batch;
    for (int r = static_cast<int>(counts.size()) - 1; r >= 0 && excess > 0; --r) {
      int64_t cut = std::min(excess, counts[r]);
      counts[r] -= cut;
      excess -= cut;
    }
    return counts;
  }

  // Posts every input collective of `q` for this rank (see PostedInputs).
  PostedInputs post_inputs(const Request& q, const std::vector<const Tensor*>& given) {
    PostedInputs p;
    int64_t first = 0;
    const int me = index_of(rank_);
    const int n = static_cast<int>(alive_.size());
    for (int i = 0; i < me; ++i) first += q.counts[i];
    const int64_t count = q.counts[me];
    for (size_t i = 0; i < q.inputs.size(); ++i) {
      const WireTensor& t = q.inputs[i];
      std::string name = i < inputs_.size() ? inputs_[i].name : "";
      std::string what = fmt::format("input '{}'", name);
      if (!t.batched) {
        Tensor whole =
            rank_ == 0 ? Tensor::borrow(t.dtype, t.shape, const_cast<void*>(given[i]->raw()), name)
                       : Tensor(t.dtype, t.shape, name);
        auto* bytes = static_cast<uint8_t*>(whole.raw());
        constexpr size_t kPiece = size_t{1} << 30;
        for (size_t off = 0; off < whole.nbytes(); off += kPiece) {
          p.requests.emplace_back();
          mpi_check(
              MPI_Ibcast(bytes + off, static_cast<int>(std::min(kPiece, whole.nbytes() - off)),
                         MPI_BYTE, 0, data_, &p.requests.back()),
              "Ibcast (inputs)");
        }
        p.mine.push_back(whole);
        continue;
      }
      const int64_t row = t.shape.size() > 1 ? numel_of_rows(t.shape, 1, what) : 1;
      p.types.push_back(std::make_unique<ElementType>(t.dtype));
      p.arrays.resize(p.arrays.size() + 2);  // then referred to: no growth until they are filled
      std::vector<int>& counts = p.arrays[p.arrays.size() - 2];
      std::vector<int>& displs = p.arrays.back();
      if (rank_ == 0) {
        int64_t at = 0;
        for (int r = 0; r < n; ++r) {
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
      p.requests.emplace_back();
      mpi_check(MPI_Iscatterv(rank_ == 0 ? given[i]->raw() : nullptr, counts.data(), displs.data(),
                              p.types.back()->get(), rank_ == 0 ? MPI_IN_PLACE : shard.raw(), recv,
                              p.types.back()->get(), 0, data_, &p.requests.back()),
                "Iscatterv (inputs)");
      p.mine.push_back(shard);
    }
    return p;
  }

  // The posted input collectives: tested once, or waited for; done_at set when they complete.
  bool test_inputs(PostedInputs& p, Clock::time_point start) {
    if (p.requests.empty()) return true;
    if (!test_data(p.requests, start, "a collective on the inputs")) return false;
    p.done_at = Clock::now();
    p.requests.clear();
    return true;
  }

  void wait_inputs(PostedInputs& p, Clock::time_point start) {
    wait_data(p.requests, start, "a collective on the inputs");
    test_inputs(p, start);
  }

  // Runs this rank's items on its own runner. Meanwhile this thread keeps in touch with the other
  // ranks and, on rank 0, drives the input collectives still in flight (`posted`): a large
  // transfer progresses only while tested.
  Local run_local(const Request& q, const std::vector<Tensor>& inputs, PostedInputs* posted,
                  Clock::time_point start) {
    Local l;
    if (q.counts[index_of(rank_)] == 0) return l;
    auto t0 = Clock::now();
    try {
      std::future<std::vector<Tensor>> f = local_->submit(inputs);
      for (;;) {
        const bool sending = posted && !posted->requests.empty();
        auto slice = sending ? kRequestPoll : Clock::duration(std::chrono::milliseconds(20));
        if (f.wait_for(slice) == std::future_status::ready) break;
        try {
          if (sending) test_inputs(*posted, start);
          if (rank_ == 0)
            watch_heartbeats_only();
          else
            keep_in_touch();
        } catch (...) {
          f.wait();  // the runner still reads the inputs: not abandoned under it
          throw;
        }
      }
      l.outputs = f.get();
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

  // Rank 0 while its own shard computes: heartbeats are counted, judgement waits for the replies.
  void watch_heartbeats_only() {
    RanksLost ignored;
    drain_heartbeats(ignored);
  }

  // Takes every heartbeat that has arrived, rank by rank: a wildcard (MPI_ANY_SOURCE) probe
  // fails once any rank of the communicator has died, which would hide the live ones' beats. A
  // rank whose probe fails is put in `lost`.
  void drain_heartbeats(RanksLost& lost) {
    for (int r : alive_) {
      if (r == 0) continue;
      for (;;) {
        int found = 0;
        MPI_Status st;
        if (MPI_Iprobe(r, kHeartbeatTag, comm_, &found, &st) != MPI_SUCCESS) {
          lost.ranks.push_back(r);
          lost.why = "MPI reported an error with it";
          break;
        }
        if (!found) break;
        int64_t beat = 0;
        MPI_Recv(&beat, 1, MPI_INT64_T, r, kHeartbeatTag, comm_, MPI_STATUS_IGNORE);
        last_seen_[r] = Clock::now();
      }
      MPI_Status st;
      int found = 0;
      while (MPI_Iprobe(r, kDoneTag, comm_, &found, &st) == MPI_SUCCESS && found) {
        int64_t id = 0;
        MPI_Recv(&id, 1, MPI_INT64_T, r, kDoneTag, comm_, MPI_STATUS_IGNORE);
        if (id == current_id_) done_[r] = true;  // else a request before this one
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
  MPI_Comm comm_ = MPI_COMM_NULL;          // point to point: headers, replies, go, heartbeats
  MPI_Comm group_parent_ = MPI_COMM_NULL;  // only for MPI_Comm_create_group
  MPI_Comm data_ = MPI_COMM_NULL;          // collectives over the live ranks (alive_ order)
  bool owns_mpi_ = false;
  int rank_ = 0, size_ = 1;
  std::string host_;
  std::unique_ptr<ParallelPredictor> local_;
  std::vector<TensorInfo> inputs_, outputs_;
  bool built_ = false, finalized_ = false;
  std::string broken_;  // why the job can no longer be used
  int64_t next_id_ = 0;
  std::vector<int> alive_;                    // world ranks still members, ascending, 0 first
  std::vector<Clock::time_point> last_seen_;  // rank 0: when each rank was last heard from
  std::vector<bool> done_;                    // rank 0: ranks through with the current attempt
  int64_t current_id_ = 0;                    // rank 0: the current attempt's request id
  Clock::time_point last_beat_;               // the others: when the last heartbeat went out
  int epoch_ = 0;                             // memberships since build
  std::vector<Attempt> abandoned_;            // kept to the end: see Attempt
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
std::vector<Tensor> MpiPredictor::predict_on(int rank, const std::vector<Tensor>& inputs) {
  return impl_->predict(inputs, rank);
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
