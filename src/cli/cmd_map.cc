// tandem map: runs a model over every item of an input folder and writes each item's outputs as
// they finish. On one device, over --devices, or over the ranks of an MPI job (--mpi: rank 0
// reads and writes, every rank computes). Items already in the output folder are skipped, so an
// interrupted run picks up where it stopped.
//
// An item is a sub-folder holding one file per model input, named after the input
// (`sample.npy`) or by position (`input_0.pb`, the ONNX test-data layout), or, for a model with
// one input, a plain `.npy` / `.pb` file. Its outputs go to OUTPUT_DIR/<item>/<output>.<ext>, in
// the format of its inputs, written into a temporary folder that is renamed into place only when
// complete: a folder that is there is a finished item.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "cli/cli_common.h"
#include "core/error.h"
#include "format/npy.h"
#include "onnx/safe_file.h"
#include "onnx/tensor_proto.h"

namespace tandem::cli {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

struct MapOptions {
  ModelOptions model;
  DeviceOptions devices;
  std::string inputs;
  std::string output_dir;
  int64_t batch = 4;
};

struct Item {
  std::string name;  // the folder's or file's name (the file's without extension)
  fs::path path;     // inside the input folder
  bool folder = false;
  std::string ext;  // ".npy" or ".pb": how its outputs are written
  std::vector<Tensor> tensors;
  std::string error;
  int64_t rows = 1;  // items along axis 0 of its batched inputs
};

bool tensor_ext(const fs::path& p) {
  return p.extension() == ".npy" || p.extension() == ".pb";
}

Tensor read_tensor(const fs::path& root, const std::string& relative, size_t cap) {
  fs::path p = resolve_inside(root, relative, fmt::format("input file '{}'", relative));
  return p.extension() == ".npy" ? read_npy_file(p.string(), cap)
                                 : read_tensor_file(p.string(), cap);
}

// Every entry of the input folder that is an item, sorted by name. Hidden entries are ignored;
// anything else that is not an item is reported once.
std::vector<Item> list_items(const fs::path& dir, size_t n_inputs) {
  std::error_code ec;
  TANDEM_CHECK(fs::is_directory(dir, ec), ErrorCode::kNotFound, "--inputs '{}' is not a folder",
               dir.string());
  std::vector<Item> items;
  std::vector<std::string> ignored;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    Item it;
    it.path = e.path();
    if (e.is_directory()) {
      it.folder = true;
      it.name = name;
    } else if (e.is_regular_file() && tensor_ext(e.path()) && n_inputs == 1) {
      it.name = e.path().stem().string();
      it.ext = e.path().extension().string();
    } else {
      ignored.push_back(name);
      continue;
    }
    items.push_back(std::move(it));
  }
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.name < b.name; });
  for (size_t i = 1; i < items.size(); ++i)
    TANDEM_CHECK(items[i].name != items[i - 1].name, ErrorCode::kInvalidArgument,
                 "two items are both named '{}' in '{}' (a folder and a file, or a .npy and a "
                 ".pb): their outputs would collide",
                 items[i].name, dir.string());
  if (!ignored.empty())
    fmt::print(stderr, "note: ignoring {} entr{} of '{}' that {} not an item ({}{})\n",
               ignored.size(), ignored.size() == 1 ? "y" : "ies", dir.string(),
               ignored.size() == 1 ? "is" : "are", ignored[0], ignored.size() > 1 ? ", ..." : "");
  return items;
}

// Reads an item's tensors (named as the model's inputs); sets `error` instead of throwing.
void load_item(Item& it, const std::vector<TensorInfo>& declared, size_t cap) {
  try {
    if (!it.folder) {
      Tensor t = read_tensor(it.path.parent_path(), it.path.filename().string(), cap);
      t.set_name(declared[0].name);
      it.tensors.push_back(t);
    } else {
      for (size_t i = 0; i < declared.size(); ++i) {
        std::vector<std::string> candidates = {declared[i].name + ".npy", declared[i].name + ".pb",
                                               fmt::format("input_{}.npy", i),
                                               fmt::format("input_{}.pb", i)};
        bool found = false;
        for (const std::string& c : candidates) {
          std::error_code ec;
          // Input names come from the model: one that is not a plain file name is not looked up.
          if (c.find('/') != std::string::npos || !fs::exists(it.path / c, ec)) continue;
          Tensor t = read_tensor(it.path, c, cap);
          t.set_name(declared[i].name);
          it.tensors.push_back(t);
          if (it.ext.empty()) it.ext = fs::path(c).extension().string();
          found = true;
          break;
        }
        TANDEM_CHECK(found, ErrorCode::kNotFound, "no file for input '{}' (looked for {})",
                     declared[i].name, fmt::join(candidates, ", "));
      }
    }
    for (size_t i = 0; i < declared.size(); ++i)
      if (!declared[i].shape.empty() && declared[i].shape[0] < 0 && it.tensors[i].rank() > 0) {
        it.rows = it.tensors[i].dim(0);
        break;
      }
  } catch (const std::exception& e) {
    it.error = e.what();
    it.tensors.clear();
  }
}

bool batched_input(const TensorInfo& d) {
  return !d.shape.empty() && d.shape[0] < 0;
}

// Whether `b` can share a request with `a`: batched inputs agree but for axis 0, unbatched ones
// are byte for byte the same (the seed's timestep, say).
bool can_join(const Item& a, const Item& b, const std::vector<TensorInfo>& declared) {
  for (size_t i = 0; i < declared.size(); ++i) {
    const Tensor &x = a.tensors[i], &y = b.tensors[i];
    if (x.dtype() != y.dtype() || x.rank() != y.rank()) return false;
    if (batched_input(declared[i]) && x.rank() > 0) {
      if (!std::equal(x.shape().begin() + 1, x.shape().end(), y.shape().begin() + 1)) return false;
    } else if (x.shape() != y.shape() || std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0) {
      return false;
    }
  }
  return true;
}

std::vector<Tensor> join(const std::vector<Item*>& group, const std::vector<TensorInfo>& declared) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < declared.size(); ++i) {
    const Tensor& first = group[0]->tensors[i];
    if (!batched_input(declared[i]) || first.rank() == 0 || group.size() == 1) {
      out.push_back(first);
      continue;
    }
    Shape shape = first.shape();
    shape[0] = 0;
    for (const Item* it : group) shape[0] += it->tensors[i].dim(0);
    Tensor t(first.dtype(), shape, first.name());
    size_t off = 0;
    for (const Item* it : group) {
      const Tensor& x = it->tensors[i];
      if (x.nbytes() > 0) std::memcpy(static_cast<uint8_t*>(t.raw()) + off, x.raw(), x.nbytes());
      off += x.nbytes();
    }
    out.push_back(t);
  }
  return out;
}

// An output name, from the model, as a file name: anything but letters, digits, '-', '_' and
// '.' becomes '_', and a name of dots only is prefixed.
std::string file_name_of(const std::string& name, size_t index) {
  std::string s = name.empty() ? fmt::format("output_{}", index) : name;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  if (s.find_first_not_of('.') == std::string::npos) s = "_" + s;
  return s;
}

// Writes one item's outputs into a temporary folder and renames it into place.
void write_item(const Item& it, const std::vector<Tensor>& outputs, const fs::path& out_dir) {
  fs::path tmp = out_dir / fmt::format(".{}.partial-{}", it.name, ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (size_t o = 0; o < outputs.size(); ++o) {
    std::string file = (tmp / (file_name_of(outputs[o].name(), o) + it.ext)).string();
    if (it.ext == ".npy")
      write_npy_file(outputs[o], file);
    else
      write_tensor_file(outputs[o], file);
  }
  fs::rename(tmp, out_dir / it.name);
}

// Slices item k's rows out of the gathered outputs: batched outputs (symbolic dim 0 that equals
// the request's rows) by rows, the others whole.
std::vector<Tensor> item_outputs(const std::vector<Tensor>& outs,
                                 const std::vector<TensorInfo>& declared, int64_t first,
                                 int64_t rows, int64_t total) {
  std::vector<Tensor> mine;
  for (size_t o = 0; o < outs.size(); ++o) {
    const Tensor& t = outs[o];
    bool by_rows =
        o < declared.size() && batched_input(declared[o]) && t.rank() > 0 && t.dim(0) == total;
    if (!by_rows) {
      mine.push_back(t);
      continue;
    }
    Shape s = t.shape();
    s[0] = rows;
    size_t row = total > 0 ? t.nbytes() / static_cast<size_t>(total) : 0;
    mine.push_back(Tensor::copy_of(t.dtype(), s, static_cast<const uint8_t*>(t.raw()) + row * first,
                                   t.name()));
  }
  return mine;
}

class Progress {
 public:
  explicit Progress(size_t total) : total_(total), tty_(::isatty(1)), start_(Clock::now()) {}
  void update(size_t done, size_t failed) {
    double s = std::chrono::duration<double>(Clock::now() - start_).count();
    double rate = s > 0 ? done / s : 0;
    double eta = rate > 0 ? (total_ - done) / rate : 0;
    int width = 30, filled = total_ ? static_cast<int>(30.0 * done / total_) : 30;
    std::string line =
        fmt::format("map [{}{}] {}/{} items{}  {:.2f} items/s  ETA {:.0f} s",
                    std::string(filled, '#'), std::string(width - filled, ' '), done, total_,
                    failed ? fmt::format(" ({} failed)", failed) : "", rate, eta);
    if (tty_) {
      fmt::print("\r{}", line);
      std::fflush(stdout);
    } else if (done == total_ || done * 10 / std::max<size_t>(1, total_) > last_decile_) {
      last_decile_ = done * 10 / std::max<size_t>(1, total_);
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
  }
  void end() {
    if (tty_) fmt::print("\n");
  }

 private:
  size_t total_;
  bool tty_;
  Clock::time_point start_;
  size_t last_decile_ = 0;
};

int run_map(const MapOptions& opt) {
  std::unique_ptr<Runner> runner = make_runner(opt.model, opt.devices);
  if (!runner) return 1;  // an MPI rank other than 0 whose build failed: rank 0 said why
  if (!runner->leads()) {
    runner->serve();
    return 0;
  }
  const std::vector<TensorInfo> declared = runner->inputs(), outputs = runner->outputs();
  const fs::path in_dir(opt.inputs), out_dir(opt.output_dir);
  std::vector<Item> items;
  try {
    items = list_items(in_dir, declared.size());
    fs::create_directories(out_dir);
  } catch (...) {
    runner->finalize();
    throw;
  }
  std::vector<Item*> todo;
  size_t skipped = 0;
  for (Item& it : items) {
    std::error_code ec;
    if (fs::exists(out_dir / it.name, ec))
      ++skipped;
    else
      todo.push_back(&it);
  }
  fmt::print("map: {} items in '{}', {} already in '{}', {} to run on {}\n", items.size(),
             in_dir.string(), skipped, out_dir.string(), todo.size(), runner->describe());
  std::fflush(stdout);
  Progress progress(todo.size());
  size_t done = 0, failed = 0;
  std::vector<std::string> failures;
  auto fail = [&](Item& it, const std::string& why) {
    ++failed;
    ++done;
    if (failures.size() < 20) failures.push_back(fmt::format("{}: {}", it.name, why));
    it.tensors.clear();
  };
  for (size_t next = 0; next < todo.size();) {
    // A request: up to --batch rows of items that can share it.
    std::vector<Item*> group;
    int64_t rows = 0;
    while (next < todo.size() && rows < opt.batch) {
      Item& it = *todo[next];
      if (it.tensors.empty() && it.error.empty())
        load_item(it, declared, opt.model.max_tensor_bytes);
      if (!it.error.empty()) {
        fail(it, it.error);
        ++next;
        continue;
      }
      if (!group.empty() && !can_join(*group[0], it, declared)) break;
      group.push_back(&it);
      rows += it.rows;
      ++next;
    }
    if (group.empty()) {
      progress.update(done, failed);
      continue;
    }
    try {
      std::vector<Tensor> outs = runner->predict(join(group, declared));
      int64_t first = 0;
      for (Item* it : group) {
        try {
          write_item(*it, item_outputs(outs, outputs, first, it->rows, rows), out_dir);
          ++done;
        } catch (const std::exception& e) {
          fail(*it, fmt::format("writing its outputs: {}", e.what()));
        }
        first += it->rows;
        it->tensors.clear();
      }
    } catch (const std::exception& e) {
      for (Item* it : group) fail(*it, e.what());
    }
    progress.update(done, failed);
  }
  progress.end();
  runner->finalize();
  fmt::print("map: {} written, {} skipped (already there), {} failed\n", done - failed, skipped,
             failed);
  for (const std::string& f : failures) fmt::print("  failed {}\n", f);
  if (failed > failures.size()) fmt::print("  ... and {} more\n", failed - failures.size());
  return failed == 0 ? 0 : 1;
}

class ModelRunner : public Runner {
 public:
  explicit ModelRunner(const ModelOptions& o) : model_(o.build()) {}
  std::vector<TensorInfo> inputs() const override { return model_.inputs(); }
  std::vector<TensorInfo> outputs() const override { return model_.outputs(); }
  std::vector<Tensor> predict(const std::vector<Tensor>& in) override { return model_.predict(in); }
  std::string describe() const override { return "one device"; }

 private:
  Model model_;
};

class DevicesRunner : public Runner {
 public:
  explicit DevicesRunner(ParallelOptions o) : devices_(o.devices), p_(std::move(o)) { p_.build(); }
  std::vector<TensorInfo> inputs() const override { return p_.inputs(); }
  std::vector<TensorInfo> outputs() const override { return p_.outputs(); }
  std::vector<Tensor> predict(const std::vector<Tensor>& in) override { return p_.predict(in); }
  std::string describe() const override {
    return fmt::format("devices {}", fmt::join(devices_, ","));
  }
  void finalize() override { p_.finalize(); }

 private:
  std::vector<std::string> devices_;
  ParallelPredictor p_;
};

}  // namespace

std::unique_ptr<Runner> make_runner(const ModelOptions& mopt, const DeviceOptions& dopt) {
  if (dopt.mpi) return make_mpi_runner(mopt, dopt);
  if (dopt.devices.empty()) return std::make_unique<ModelRunner>(mopt);
  ParallelOptions p = dopt.to_options(mopt.model, mopt.input_shape);
  p.max_tensor_bytes = mopt.max_tensor_bytes;
  p.max_model_bytes = mopt.max_model_bytes;
  p.verify_checksum = mopt.verify_checksum;
  return std::make_unique<DevicesRunner>(std::move(p));
}

void add_map_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<MapOptions>();
  CLI::App* cmd = app.add_subcommand(
      "map",
      "Run a model over every item of a folder, writing each item's outputs as it finishes; "
      "items already written are skipped.");
  opt->model.add_to(cmd, false);
  cmd->add_option("--inputs", opt->inputs,
                  "folder of items: sub-folders with one file per input (<input>.npy|.pb or "
                  "input_<i>.npy|.pb), or for a one-input model plain .npy/.pb files")
      ->required();
  cmd->add_option("--output-dir", opt->output_dir,
                  "where each item's outputs go (<item>/<output>.npy|.pb, the format of its "
                  "inputs); an item whose folder is there is skipped")
      ->required();
  cmd->add_option("--batch", opt->batch,
                  "rows per request: consecutive items whose inputs can share one (same shapes "
                  "but for axis 0, same unbatched inputs) are joined up to this many (default 4)")
      ->check(int_range(1, 1 << 20));
  opt->devices.add_to(cmd);
  cmd->footer(
      "Examples:\n"
      "  tandem map -m model.onnx --inputs items/ --output-dir out/\n"
      "  mpirun -np 4 --host a,b,c,d tandem map --mpi -m model.onnx --inputs items/ "
      "--output-dir out/");
  cmd->callback([opt, &exit_code] { exit_code = run_map(*opt); });
}

}  // namespace tandem::cli
