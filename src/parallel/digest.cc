#include "parallel/digest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/hash.h"
#include "format/tandem_format.h"
#include "parallel/unique_fd.h"

namespace tandem::parallel {

std::string file_digest(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  TANDEM_CHECK(fd, ErrorCode::kNotFound, "cannot open model file '{}': {}", path,
               std::strerror(errno));
  struct stat st {};
  TANDEM_CHECK(::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode), ErrorCode::kNotFound,
               "model file '{}' is not a regular file", path);
  // A .tandem file states a checksum of all its bytes, which every load verifies: its header is
  // the digest, so a worker need not read gigabytes of weights twice more to check it.
  uint8_t header[kTandemHeaderSize];
  if (::pread(fd.get(), header, sizeof header, 0) == static_cast<ssize_t>(sizeof header) &&
      has_tandem_magic(header, sizeof header))
    return fmt::format("{}:tandem:{:016x}", st.st_size, tandem_header_checksum(header));
  Hash64 h;
  std::vector<uint8_t> buf(size_t{1} << 20);
  for (;;) {
    size_t filled = 0;
    while (filled < buf.size()) {
      ssize_t n = ::read(fd.get(), buf.data() + filled, buf.size() - filled);
      if (n < 0 && errno == EINTR) continue;
      TANDEM_CHECK(n >= 0, ErrorCode::kRuntime, "reading model file '{}' failed: {}", path,
                   std::strerror(errno));
      if (n == 0) break;
      filled += static_cast<size_t>(n);
    }
    h.update(buf.data(), filled);
    if (filled < buf.size()) break;
  }
  return fmt::format("{}:{:016x}", h.size(), h.digest());
}

}  // namespace tandem::parallel
