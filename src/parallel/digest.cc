#include "parallel/digest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "parallel/unique_fd.h"

namespace tandem::parallel {

namespace {
// Four independent multiply-rotate lanes over 8-byte words (xxHash64's structure), so large
// models hash at memory speed; the tail and length are folded in at the end.
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL,
                   kP3 = 0x165667B19E3779F9ULL;
uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}
uint64_t mix_round(uint64_t acc, uint64_t in) {
  return rotl(acc + in * kP2, 31) * kP1;
}

struct Hasher {
  uint64_t lane[4] = {kP1 + kP2, kP2, 0, 0 - kP1};
  uint64_t total = 0;
  uint64_t tail_hash = kP3;
  void add_block(const uint8_t* p, size_t n) {  // n a multiple of 32 except at the very end
    total += n;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
      for (int k = 0; k < 4; ++k) {
        uint64_t w;
        std::memcpy(&w, p + i + 8 * k, 8);
        lane[k] = mix_round(lane[k], w);
      }
    for (; i < n; ++i) tail_hash = rotl(tail_hash ^ (p[i] * kP1), 11) * kP2;
  }
  uint64_t finish() const {
    uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18);
    h ^= tail_hash + total * kP3;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    return h ^ (h >> 32);
  }
};
}  // namespace

std::string file_digest(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  TANDEM_CHECK(fd, ErrorCode::kNotFound, "cannot open model file '{}': {}", path,
               std::strerror(errno));
  struct stat st {};
  TANDEM_CHECK(::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode), ErrorCode::kNotFound,
               "model file '{}' is not a regular file", path);
  Hasher h;
  std::vector<uint8_t> buf(size_t{1} << 20);  // a multiple of 32
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
    h.add_block(buf.data(), filled);
    if (filled < buf.size()) break;
  }
  return fmt::format("{}:{:016x}", h.total, h.finish());
}

}  // namespace tandem::parallel
