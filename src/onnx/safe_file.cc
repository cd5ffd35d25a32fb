#include "onnx/safe_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tandem {

namespace fs = std::filesystem;

RegularFile::RegularFile(const fs::path& path, const std::string& what)
    : what_(what), path_(path.string()) {
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; it is refused below.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  TANDEM_CHECK(fd_ >= 0, ErrorCode::kNotFound, "{}: cannot open '{}': {}", what_, path_,
               std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    raise(ErrorCode::kInvalidModel, "{}: '{}' is not a regular file", what_, path_);
  }
  size_ = static_cast<int64_t>(st.st_size);
  // Back to blocking reads for the data itself.
  int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

void RegularFile::read_at(int64_t offset, int64_t length, void* dst) const {
  int64_t end = 0;
  TANDEM_CHECK(
      offset >= 0 && length >= 0 && !__builtin_add_overflow(offset, length, &end) && end <= size_,
      ErrorCode::kInvalidModel, "{}: '{}' is too short ({} bytes; need {} at offset {})", what_,
      path_, size_, length, offset);
  auto* out = static_cast<char*>(dst);
  int64_t done = 0;
  while (done < length) {
    size_t chunk = static_cast<size_t>(std::min<int64_t>(length - done, int64_t{1} << 30));
    ssize_t r = ::pread(fd_, out + done, chunk, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    TANDEM_CHECK(r > 0, ErrorCode::kInvalidModel, "{}: could not read '{}' ({})", what_, path_,
                 r == 0 ? std::string("the file shrank") : std::string(std::strerror(errno)));
    done += r;
  }
}

bool is_within(const fs::path& root, const fs::path& path) {
  auto r = root.begin(), p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing separator
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

fs::path resolve_inside(const fs::path& root, const std::string& relative,
                        const std::string& what) {
  TANDEM_CHECK(!relative.empty(), ErrorCode::kInvalidModel, "{}: the file name is empty", what);
  TANDEM_CHECK(relative.find('\0') == std::string::npos, ErrorCode::kInvalidModel,
               "{}: the file name contains a NUL byte", what);
  fs::path rel(relative);
  TANDEM_CHECK(!rel.is_absolute() && !rel.has_root_name() && !rel.has_root_directory(),
               ErrorCode::kInvalidModel,
               "{}: file name '{}' is absolute; it must be relative to the model's folder", what,
               relative);
  for (const fs::path& part : rel)
    TANDEM_CHECK(part != "..", ErrorCode::kInvalidModel,
                 "{}: file name '{}' has a '..' component; it must stay inside the model's "
                 "folder",
                 what, relative);
  std::error_code ec;
  fs::path canon_root = fs::canonical(root.empty() ? fs::path(".") : root, ec);
  TANDEM_CHECK(!ec, ErrorCode::kNotFound, "{}: folder '{}' cannot be resolved: {}", what,
               root.string(), ec.message());
  fs::path canon = fs::weakly_canonical(canon_root / rel, ec);
  TANDEM_CHECK(!ec, ErrorCode::kNotFound, "{}: '{}' cannot be resolved: {}", what,
               (canon_root / rel).string(), ec.message());
  TANDEM_CHECK(is_within(canon_root, canon), ErrorCode::kInvalidModel,
               "{}: '{}' resolves to '{}', outside the folder '{}' (a symlink leaving the "
               "folder is refused)",
               what, relative, canon.string(), canon_root.string());
  return canon;
}

}  // namespace tandem
