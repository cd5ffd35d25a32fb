#include "parallel/shm_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.h"

namespace tandem::parallel {

namespace {
size_t page_round(size_t n) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return std::max(page, (n + page - 1) / page * page);
}

// Maps all `size` bytes of fd, shared and writable; closes fd and throws, naming `what`, when
// it cannot.
uint8_t* map_shared(int fd, size_t size, const std::string& what) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    raise(ErrorCode::kRuntime, "cannot map {}: {}", what, std::strerror(e));
  }
  return static_cast<uint8_t*>(p);
}
}  // namespace

ShmBuffer::ShmBuffer(uint64_t id, size_t bytes) : id_(id), size_(page_round(bytes)) {
  // Sealed against shrinking and growing once sized: the other side of a buffer (a worker, or
  // the parent) can then write into it but never truncate it under a mapping, which would make
  // the next read of the mapping die of SIGBUS.
  fd_ = ::memfd_create("tandem-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  TANDEM_CHECK(fd_ >= 0, ErrorCode::kRuntime, "memfd_create failed: {}", std::strerror(errno));
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 ||
      ::fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    ::close(fd_);
    raise(ErrorCode::kRuntime, "cannot size and seal a {}-byte shared buffer: {}", size_,
          std::strerror(e));
  }
  data_ = map_shared(fd_, size_, fmt::format("a {}-byte shared buffer", size_));
}

ShmBuffer::ShmBuffer(uint64_t id, int fd) : id_(id), fd_(fd) {
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
    ::close(fd_);
    raise(ErrorCode::kRuntime, "shared buffer {} is not a file or has no size", id);
  }
  // Only a buffer its creator can no longer resize is safe to map: one that shrinks under the
  // mapping turns the next read into SIGBUS.
  const int seals = ::fcntl(fd_, F_GET_SEALS);
  if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
    ::close(fd_);
    raise(ErrorCode::kRuntime, "shared buffer {} is not sealed against resizing", id);
  }
  size_ = static_cast<size_t>(st.st_size);
  data_ = map_shared(fd_, size_, fmt::format("shared buffer {}", id));
}

ShmBuffer::~ShmBuffer() {
  if (data_) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

std::shared_ptr<ShmBuffer> ShmPool::acquire(size_t bytes) {
  std::unique_ptr<ShmBuffer> buf;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Smallest idle buffer that fits, but not one wildly larger than needed.
    size_t best = idle_.size();
    for (size_t i = 0; i < idle_.size(); ++i) {
      size_t s = idle_[i]->size();
      if (s >= bytes && s <= 4 * bytes + (1 << 20) &&
          (best == idle_.size() || s < idle_[best]->size()))
        best = i;
    }
    if (best < idle_.size()) {
      buf = std::move(idle_[best]);
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(best));
    }
  }
  if (!buf) {
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = next_id_++;
    }
    buf = std::make_unique<ShmBuffer>(id, bytes);
  }
  std::weak_ptr<ShmPool> pool = weak_from_this();
  return std::shared_ptr<ShmBuffer>(buf.release(), [pool](ShmBuffer* b) {
    if (auto p = pool.lock())
      p->release(b);
    else
      delete b;
  });
}

void ShmPool::release(ShmBuffer* b) {
  std::unique_ptr<ShmBuffer> owned(b);
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(owned));
}

size_t ShmPool::idle_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

void ShmPool::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.clear();
}

void ShmCache::add(uint64_t id, int fd) {
  auto buf = std::make_unique<ShmBuffer>(id, fd);
  entries_[id] = {++clock_, std::move(buf)};
  while (entries_.size() > capacity_) {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second.first < oldest->second.first) oldest = it;
    entries_.erase(oldest);
  }
}

ShmBuffer* ShmCache::find(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return nullptr;
  it->second.first = ++clock_;
  return it->second.second.get();
}

}  // namespace tandem::parallel
