#include "parallel/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "parallel/digest.h"
#include "parallel/protocol.h"
#include "parallel/shm_buffer.h"
#include "tandem/model.h"

namespace tandem::parallel {

namespace {

ShapeMap parse_shapes(const std::string& text) {
  ShapeMap shapes;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    auto colon = entry.rfind(':');
    if (colon == std::string::npos) continue;
    Shape shape;
    std::stringstream dims(entry.substr(colon + 1));
    std::string dim;
    while (std::getline(dims, dim, ',')) shape.push_back(std::stoll(dim));
    shapes[entry.substr(0, colon)] = shape;
  }
  return shapes;
}

nlohmann::json info_json(const std::vector<TensorInfo>& infos) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& i : infos)
    a.push_back({{"name", i.name},
                 {"dtype", static_cast<int>(i.dtype)},
                 {"shape", i.shape},
                 {"dim_names", i.dim_names}});
  return a;
}

Message error_message(const Message& about, const std::string& text,
                      ErrorCode code = ErrorCode::kRuntime) {
  Message m;
  m.type = MsgType::kError;
  m.request_id = about.request_id;
  m.shard = about.shard;
  m.text = text;
  m.code = code;
  return m;
}

uint8_t* checked_region(ShmBuffer* buf, const TensorDesc& d, const char* what) {
  TANDEM_CHECK(buf, ErrorCode::kRuntime, "{} buffer is unknown to this worker", what);
  size_t bytes = static_cast<size_t>(shape_numel(d.shape)) * dtype_size(d.dtype);
  TANDEM_CHECK(d.offset <= buf->size() && bytes <= buf->size() - d.offset, ErrorCode::kRuntime,
               "{} tensor at offset {} ({} bytes) overruns its {}-byte buffer", what, d.offset,
               bytes, buf->size());
  return buf->data() + d.offset;
}

// Test-only fault injection, so the parent's handling of a misbehaving worker can be tested with
// the real binary: TANDEM_TEST_WORKER_FAULT="<worker index or *>:<kind>[:<arg>]", several joined
// by ';'. A fault fires once per worker process, on the first message it applies to; with
// TANDEM_TEST_WORKER_FAULT_ONCE=<dir> it fires once per <dir> (a marker file created there with
// O_EXCL), so the restarted worker behaves. Kinds:
//   error           PREDICT answered with ERROR
//   delay:<ms>      PREDICT sleeps before computing
//   bad-string      PREDICT reply whose text length wraps a naive bounds check
//   wrong-shard     PREDICT reply naming another shard
//   truncate        PREDICT: try to truncate the output buffer, then answer normally
//   shapes-zero-outputs / shapes-huge / shapes-wrong-dtype   SHAPES reply malformed that way
//   spill-zero-outputs / spill-bad-offset / spill-unsealed   dynamic-output PREDICT reply so
class FaultHook {
 public:
  explicit FaultHook(int index) {
    const char* env = std::getenv("TANDEM_TEST_WORKER_FAULT");
    if (!env) return;
    std::stringstream entries(env);
    std::string entry;
    while (std::getline(entries, entry, ';')) {
      auto c1 = entry.find(':');
      if (c1 == std::string::npos) continue;
      std::string who = entry.substr(0, c1), rest = entry.substr(c1 + 1);
      if (who != "*" && who != std::to_string(index)) continue;
      auto c2 = rest.find(':');
      faults_.push_back({rest.substr(0, c2), c2 == std::string::npos ? "" : rest.substr(c2 + 1)});
    }
  }
  // Whether fault `kind` fires now (and its argument); each fires at most once.
  bool fire(const std::string& kind, std::string* arg = nullptr) {
    for (auto& f : faults_) {
      if (f.kind != kind || f.fired) continue;
      f.fired = true;
      if (const char* dir = std::getenv("TANDEM_TEST_WORKER_FAULT_ONCE")) {
        std::string marker = std::string(dir) + "/" + kind;
        int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0) return false;
        ::close(fd);
      }
      if (arg) *arg = f.arg;
      return true;
    }
    return false;
  }

 private:
  struct Fault {
    std::string kind, arg;
    bool fired = false;
  };
  std::vector<Fault> faults_;
};

// A reply whose text length field is near 2^64: `pos + len <= size` wraps and passes.
std::vector<uint8_t> wrap_text_length(const Message& reply) {
  Message m = reply;
  m.text = "x";
  m.fds.clear();
  std::vector<uint8_t> bytes = encode_message(m);
  // The layout ends with: text length (8), text (1), descriptor count (4).
  uint64_t huge = ~uint64_t{0} - 8;
  std::memcpy(bytes.data() + bytes.size() - 4 - 1 - 8, &huge, 8);
  return bytes;
}

}  // namespace

int run_worker(const WorkerArgs& args) {
  // Die with the parent, whatever way it goes.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (args.parent_pid > 0 && ::getppid() != args.parent_pid) return 1;
  const int fd = args.socket_fd;

  Model model;
  FaultHook faults(args.index);
  try {
    // The model must be the bytes the parent read at build(): checked before and after loading,
    // so a file replaced meanwhile is refused rather than served.
    auto check_digest = [&] {
      if (args.model_digest.empty()) return;
      std::string now = file_digest(args.model);
      TANDEM_CHECK(now == args.model_digest, ErrorCode::kInvalidModel,
                   "model file '{}'{} changed since the predictor was built (content {} , built "
                   "from {}): this worker refuses to run other bytes",
                   args.model,
                   args.source.empty() ? "" : fmt::format(" (converted from '{}')", args.source),
                   now, args.model_digest);
    };
    check_digest();
    Context ctx;
    ctx.device = args.device;
    ctx.thread_num = args.threads;
    ctx.core_list = args.cores;
    ctx.max_tensor_bytes = args.max_tensor_bytes;
    ctx.max_model_bytes = args.max_model_bytes;
    ctx.verify_checksum = !args.checksum_verified;
    model = Model::build_from_file(args.model, ctx, parse_shapes(args.input_shape));
    check_digest();
  } catch (const std::exception& e) {
    Message m;
    m.type = MsgType::kError;
    m.text = e.what();
    m.code = error_code_of(e);
    send_message(fd, m);
    return 1;
  }
  std::vector<TensorInfo> inputs = model.inputs();
  {
    Message m;
    m.type = MsgType::kBuildFinish;
    m.text = nlohmann::json{{"inputs", info_json(inputs)},
                            {"outputs", info_json(model.outputs())},
                            {"pid", ::getpid()},
                            {"model_digest", args.model_digest}}
                 .dump();
    if (!send_message(fd, m)) return 1;
  }

  ShmCache buffers;
  for (;;) {
    std::optional<Message> in;
    try {
      in = recv_message(fd);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tandem worker %d: %s\n", args.index, e.what());
      return 1;
    }
    if (!in) return 0;  // the parent closed the socket
    Message& req = *in;
    for (auto& [id, bfd] : req.fds) {
      if (buffers.find(id))
        ::close(bfd);
      else
        buffers.add(id, bfd);
    }
    Message reply;
    std::unique_ptr<ShmBuffer> spill;  // lives until the reply (and its fd) has been sent
    try {
      switch (req.type) {
        case MsgType::kExit: {
          if (args.verbose)
            std::printf("Receive exit message, worker %d (%s) start to exit\n", args.index,
                        args.device.c_str());
          std::fflush(stdout);
          Message bye;
          bye.type = MsgType::kExit;
          send_message(fd, bye);
          return 0;
        }
        case MsgType::kShapes: {
          std::vector<Shape> shapes;
          for (const auto& d : req.inputs) shapes.push_back(d.shape);
          reply.type = MsgType::kReply;
          try {
            for (const TensorInfo& o : model.output_info_for(shapes))
              reply.outputs.push_back({o.dtype, o.shape, 0});
          } catch (const Error& e) {
            if (e.code() != ErrorCode::kUnsupported) throw;
            // Output shapes that depend on input values: the parent will let each shard
            // return its outputs in a buffer of the worker's own.
            reply.outputs.clear();
            reply.text = kDynamicOutputs;
          }
          if (faults.fire("shapes-zero-outputs")) reply.outputs.clear(), reply.text.clear();
          if (faults.fire("shapes-huge"))
            for (auto& d : reply.outputs) d.shape = {int64_t{1} << 40, int64_t{1} << 40};
          if (faults.fire("shapes-wrong-dtype"))
            for (auto& d : reply.outputs) d.dtype = DataType::kInt8;
          break;
        }
        case MsgType::kPredict: {
          std::string delay;
          if (faults.fire("delay", &delay))
            std::this_thread::sleep_for(std::chrono::milliseconds(std::stoll(delay)));
          if (faults.fire("error")) throw Error(ErrorCode::kRuntime, "injected fault");
          auto start = std::chrono::steady_clock::now();
          ShmBuffer* in_buf = buffers.find(req.in_buffer);
          ShmBuffer* out_buf = buffers.find(req.out_buffer);
          TANDEM_CHECK(req.inputs.size() == inputs.size(), ErrorCode::kRuntime,
                       "PREDICT carries {} inputs, the model has {}", req.inputs.size(),
                       inputs.size());
          std::vector<Tensor> tensors;
          for (size_t i = 0; i < req.inputs.size(); ++i) {
            const TensorDesc& d = req.inputs[i];
            tensors.push_back(Tensor::borrow(d.dtype, d.shape, checked_region(in_buf, d, "input"),
                                             inputs[i].name));
          }
          if (req.out_buffer == 0) {
            std::vector<Tensor> outs = model.predict(tensors);
            // Outputs of unknown size: hand them back in a fresh buffer of our own.
            size_t bytes = 0;
            for (const Tensor& t : outs) bytes += (t.nbytes() + 63) / 64 * 64;
            if (faults.fire("spill-unsealed")) {
              // A buffer the worker could still shrink under the parent's mapping.
              int raw = ::memfd_create("tandem-unsealed", MFD_CLOEXEC);
              if (raw < 0 || ::ftruncate(raw, 1 << 16) != 0)
                throw Error(ErrorCode::kRuntime, "memfd");
              reply.type = MsgType::kReply;
              for (const Tensor& t : outs) reply.outputs.push_back({t.dtype(), t.shape(), 0});
              reply.request_id = req.request_id;
              reply.shard = req.shard;
              reply.fds = {{0, raw}};
              send_message(fd, reply);
              ::close(raw);
              continue;
            }
            spill = std::make_unique<ShmBuffer>(0, std::max<size_t>(bytes, 64));
            size_t off = 0;
            for (const Tensor& t : outs) {
              std::memcpy(spill->data() + off, t.raw(), t.nbytes());
              reply.outputs.push_back({t.dtype(), t.shape(), off});
              off += (t.nbytes() + 63) / 64 * 64;
            }
            reply.fds = {{0, spill->fd()}};
            if (faults.fire("spill-zero-outputs")) reply.outputs.clear();
            if (faults.fire("spill-bad-offset"))
              for (auto& d : reply.outputs) d.offset = ~uint64_t{0} - 16;
            reply.type = MsgType::kReply;
            reply.compute_ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
            break;
          }
          // The outputs are computed straight into their slices of the caller's buffer.
          std::vector<Tensor> outs;
          for (const TensorDesc& d : req.outputs)
            outs.push_back(Tensor::borrow(d.dtype, d.shape, checked_region(out_buf, d, "output")));
          model.predict_into(tensors, outs);
          if (faults.fire("truncate") && out_buf) {
            // Sealed by the parent: this must fail, and the parent must not die reading.
            int rc = ::ftruncate(out_buf->fd(), 0);
            (void)rc;
          }
          reply.type = MsgType::kReply;
          reply.compute_ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count();
          break;
        }
        default:
          reply = error_message(req, fmt::format("unexpected message {}", msg_type_name(req.type)));
      }
    } catch (const std::exception& e) {
      reply = error_message(req, e.what(), error_code_of(e));
    }
    reply.request_id = req.request_id;
    reply.shard = req.shard;
    if (req.type == MsgType::kPredict && reply.type == MsgType::kReply) {
      if (faults.fire("wrong-shard")) reply.shard += 1000;
      if (faults.fire("bad-string")) {
        if (!send_packet(fd, wrap_text_length(reply), {})) return 0;
        continue;
      }
    }
    if (!send_message(fd, reply)) return 0;
  }
}

}  // namespace tandem::parallel
