// MpiPredictor: the parallel runner's split, across the ranks of an MPI job (`mpirun -np H`),
// one host or many. Every rank runs a ParallelPredictor over its own devices; rank 0 holds the
// requests. For each one it splits the batch over the ranks in proportion to each rank's
// measured throughput, sends the shards with MPI_Scatterv (unbatched inputs go to every rank
// with MPI_Bcast), every rank computes its shard on its own devices, and the outputs come back
// with MPI_Gatherv. The gathered result equals one device running the whole batch.
//
// Built only where CMake finds MPI (Debian's libopenmpi-dev); TANDEM_HAVE_MPI says so.
//
// Every rank constructs an MpiPredictor and calls build() (collective). Then rank 0 calls
// predict() as often as it likes and finally finalize(); the other ranks call serve(), which
// answers rank 0's requests and returns when rank 0 finalizes.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tandem/parallel.h"

namespace tandem {

struct MpiOptions {
  // Each rank's own devices and runner settings. Where several ranks share a host and `local`
  // names no cores, the host's cores are divided between those ranks first (in local-rank order)
  // and then between each rank's cpu devices, so two ranks never pin to the same core.
  ParallelOptions local;
  // While a request runs, every rank sends rank 0 a heartbeat this often. A rank rank 0 has not
  // heard from for `liveness` is lost: the survivors go on without it and the request runs again
  // on them (the MPI runtime must keep the job when a process dies: Open MPI's
  // `mpirun --enable-recovery`; without it mpirun ends the job and names the rank).
  std::chrono::milliseconds heartbeat{std::chrono::milliseconds(500)};
  std::chrono::milliseconds liveness{std::chrono::seconds(10)};
  // A request running longer than this fails and the job can no longer be used (its ranks are
  // alive but stuck; MPI cannot take them out of a collective).
  std::chrono::milliseconds deadline{std::chrono::seconds(300)};
};

struct MpiRankStats {
  int rank = 0;
  std::string host;
  int devices = 0;         // workers of the rank's ParallelPredictor
  int64_t items = 0;       // batch items it computed
  double busy_ms = 0;      // time inside its local predictor, as it measured it
  double items_per_s = 0;  // the moving average rank 0 splits by
};

struct MpiStats {
  int64_t requests = 0;
  int64_t failed_requests = 0;
  // Per request: rank 0's wall time minus the slowest rank's compute time, i.e. what the MPI hop
  // (header, scatter, gather, and the local runners' own orchestration) added.
  double overhead_ms_last = 0;
  double overhead_ms_total = 0;
  // Where rank 0's time goes, summed over requests: until every rank has its inputs (header,
  // scatter, broadcast; overlapping rank 0's own shard), its own shard, waiting for the other
  // ranks' replies after it, and gathering the outputs (go, gather, assembly).
  double send_ms_total = 0;
  double own_compute_ms_total = 0;
  double wait_ms_total = 0;
  double gather_ms_total = 0;
  int64_t ranks_lost = 0;
  int64_t requests_rerun = 0;     // attempts begun again after a rank was lost
  std::vector<std::string> lost;  // what happened, one line per loss (ranks, hosts, why)
  std::vector<MpiRankStats> ranks;
};

class MpiPredictor {
 public:
  // Initialises MPI if the program has not (and then finalises it in the destructor); works on a
  // duplicate of MPI_COMM_WORLD, so the caller's own MPI traffic is not disturbed.
  explicit MpiPredictor(MpiOptions options);
  ~MpiPredictor();
  MpiPredictor(const MpiPredictor&) = delete;
  MpiPredictor& operator=(const MpiPredictor&) = delete;

  int rank() const;
  int size() const;
  std::string host() const;  // this rank's processor name

  // Collective. Builds every rank's runner; if any rank fails, or a rank's model differs from
  // rank 0's (inputs and outputs), every rank throws the same Error listing each failing rank
  // with its host and message.
  void build();
  std::vector<TensorInfo> inputs() const;
  std::vector<TensorInfo> outputs() const;

  // Rank 0 only: one request over all ranks. Bad input is refused before any rank sees it; a
  // rank that fails its shard fails the request with an Error naming the rank and host, and the
  // job goes on serving. A rank lost meanwhile is dropped and the request runs on the others.
  std::vector<Tensor> predict(const std::vector<Tensor>& inputs);
  // Rank 0 only: one request wholly on world rank `rank` (the others get no items), to measure
  // each rank alone. Fails with an Error if that rank is not (or no longer) a member.
  std::vector<Tensor> predict_on(int rank, const std::vector<Tensor>& inputs);
  // Ranks other than 0: answer requests until rank 0 calls finalize().
  void serve();
  // Rank 0: tells every rank to stop; every rank: finalizes its runner. Idempotent.
  void finalize();

  // This rank's own runner (rank 0 uses it to time one rank alone).
  ParallelPredictor& local();
  MpiStats stats() const;  // rank 0's view

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
