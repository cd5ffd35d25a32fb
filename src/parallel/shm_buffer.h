// Shared-memory buffers: anonymous memfd files mapped into the parent and, through their file
// descriptors, into the workers. A pool keeps them for reuse so a steady stream of requests
// neither re-creates files nor re-faults pages, and so workers can keep their mappings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace tandem::parallel {

class ShmBuffer {
 public:
  // Creates a memfd of `bytes` (rounded up to pages) and maps it read-write.
  ShmBuffer(uint64_t id, size_t bytes);
  // Maps an existing descriptor (worker side); takes ownership of fd.
  ShmBuffer(uint64_t id, int fd);
  ~ShmBuffer();
  ShmBuffer(const ShmBuffer&) = delete;
  ShmBuffer& operator=(const ShmBuffer&) = delete;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint64_t id_;
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Hands out buffers of at least a requested size; a released buffer goes back to the pool (up to
// `max_idle` are kept, the rest are closed). Thread-safe: outputs given to callers release their
// buffer from whatever thread drops the last tensor.
class ShmPool : public std::enable_shared_from_this<ShmPool> {
 public:
  explicit ShmPool(size_t max_idle = 8) : max_idle_(max_idle) {}
  // The buffer returns to the pool when the last shared_ptr copy is dropped.
  std::shared_ptr<ShmBuffer> acquire(size_t bytes);
  size_t idle_count() const;
  // Closes every idle buffer.
  void clear();

 private:
  void release(ShmBuffer* b);

  size_t max_idle_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<ShmBuffer>> idle_;
  uint64_t next_id_ = 1;
};

// Worker side: buffer id -> mapping, least recently used evicted beyond `capacity`.
class ShmCache {
 public:
  explicit ShmCache(size_t capacity = 8) : capacity_(capacity) {}
  void add(uint64_t id, int fd);  // takes ownership of fd
  // nullptr when the id is unknown.
  ShmBuffer* find(uint64_t id);

 private:
  size_t capacity_;
  uint64_t clock_ = 0;
  std::map<uint64_t, std::pair<uint64_t, std::unique_ptr<ShmBuffer>>> entries_;
};

}  // namespace tandem::parallel
