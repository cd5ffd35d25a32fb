// Opening files named by untrusted input (a model's external-data `location`, the .pb files of
// a test-data folder): the name must stay inside its folder, and only regular files are read
// (a FIFO or a device would block or never end).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace tandem {

// An open, read-only regular file; closes on destruction.
class RegularFile {
 public:
  // Opens `path` without blocking (O_NONBLOCK: opening a FIFO returns at once) and refuses
  // anything but a regular file. `what` names the file's role in error messages.
  RegularFile(const std::filesystem::path& path, const std::string& what);
  ~RegularFile();
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  int fd() const { return fd_; }
  int64_t size() const { return size_; }
  // Reads exactly `length` bytes at `offset` into `dst` (offset + length checked against the
  // size), or throws.
  void read_at(int64_t offset, int64_t length, void* dst) const;

 private:
  int fd_ = -1;
  int64_t size_ = 0;
  std::string what_;
  std::string path_;
};

// `relative`, a name read from untrusted data, resolved inside `root`: refuses an empty or
// absolute name, a `..` component, and a name that leaves `root` through a symlink (the check
// is on the canonical paths' components, not on strings). Returns the canonical path.
std::filesystem::path resolve_inside(const std::filesystem::path& root, const std::string& relative,
                                     const std::string& what);

// Whether canonical `path` is `root` or below it (component-wise).
bool is_within(const std::filesystem::path& root, const std::filesystem::path& path);

}  // namespace tandem
