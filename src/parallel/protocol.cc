#include "parallel/protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace tandem::parallel {

namespace {

constexpr uint32_t kMagic = 0x544e444d;  // "TNDM"

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_desc(const TensorDesc& d) {
    put<int32_t>(static_cast<int32_t>(d.dtype));
    put<uint32_t>(static_cast<uint32_t>(d.shape.size()));
    for (int64_t x : d.shape) put<int64_t>(x);
    put<uint64_t>(d.offset);
  }
  std::vector<uint8_t> bytes;
};

// Every read is bounds-checked against what is left (never `pos + len`, which a length near
// 2^64 would wrap).
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  T get(const char* field) {
    TANDEM_CHECK(sizeof(T) <= n_ - pos_, ErrorCode::kRuntime,
                 "malformed protocol message: it ends inside field '{}'", field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    uint64_t len = get<uint64_t>("text length");
    TANDEM_CHECK(len <= n_ - pos_, ErrorCode::kRuntime,
                 "malformed protocol message: text length {} exceeds the {} bytes left", len,
                 n_ - pos_);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  TensorDesc get_desc(const char* what, uint32_t index) {
    TensorDesc d;
    d.dtype = static_cast<DataType>(get<int32_t>("dtype"));
    uint32_t rank = get<uint32_t>("rank");
    TANDEM_CHECK(rank <= kMaxRank, ErrorCode::kRuntime,
                 "malformed protocol message: {} {} has rank {} (at most {})", what, index, rank,
                 kMaxRank);
    for (uint32_t i = 0; i < rank; ++i) d.shape.push_back(get<int64_t>("dim"));
    d.offset = get<uint64_t>("offset");
    try {
      tensor_bytes(d.dtype, d.shape);
    } catch (const Error& e) {
      raise(ErrorCode::kRuntime, "malformed protocol message: {} {}: {}", what, index, e.what());
    }
    return d;
  }
  size_t left() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

uint64_t tensor_bytes(DataType dtype, const Shape& shape) {
  const uint64_t elem = dtype_size(dtype);
  TANDEM_CHECK(elem > 0, ErrorCode::kRuntime, "dtype {} has no fixed element size",
               static_cast<int>(dtype));
  uint64_t bytes = elem;
  for (int64_t d : shape) {
    TANDEM_CHECK(d >= 0, ErrorCode::kRuntime, "shape {} has a negative dim", shape_str(shape));
    // bytes * d <= kMaxTensorBytes, tested without multiplying.
    TANDEM_CHECK(d == 0 || bytes <= kMaxTensorBytes / static_cast<uint64_t>(d), ErrorCode::kRuntime,
                 "shape {} of {} exceeds the {}-byte tensor limit", shape_str(shape),
                 dtype_name(dtype), kMaxTensorBytes);
    bytes *= static_cast<uint64_t>(d);
  }
  return bytes;
}

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::kError:
      return "ERROR";
    case MsgType::kPredict:
      return "PREDICT";
    case MsgType::kReply:
      return "REPLY";
    case MsgType::kBuildFinish:
      return "BUILD_FINISH";
    case MsgType::kExit:
      return "EXIT";
    case MsgType::kShapes:
      return "SHAPES";
  }
  return "?";
}

std::vector<uint8_t> encode_message(const Message& m) {
  Writer w;
  w.put<uint32_t>(kMagic);
  w.put<uint32_t>(static_cast<uint32_t>(m.type));
  w.put<uint64_t>(m.request_id);
  w.put<uint32_t>(m.shard);
  w.put<uint64_t>(m.in_buffer);
  w.put<uint64_t>(m.out_buffer);
  w.put<double>(m.compute_ms);
  w.put<uint32_t>(static_cast<uint32_t>(m.inputs.size()));
  for (const auto& d : m.inputs) w.put_desc(d);
  w.put<uint32_t>(static_cast<uint32_t>(m.outputs.size()));
  for (const auto& d : m.outputs) w.put_desc(d);
  w.put_string(m.text);
  w.put<uint32_t>(static_cast<uint32_t>(m.code));
  w.put<uint32_t>(static_cast<uint32_t>(m.fds.size()));
  for (const auto& [id, fd] : m.fds) w.put<uint64_t>(id);
  return std::move(w.bytes);
}

bool send_message(int socket_fd, const Message& m) {
  std::vector<int> fds;
  for (const auto& [id, fd] : m.fds) fds.push_back(fd);
  std::vector<uint8_t> bytes = encode_message(m);
  TANDEM_CHECK(bytes.size() <= kMaxPacket && fds.size() <= kMaxFds, ErrorCode::kInternal,
               "protocol message {} too large ({} bytes, {} fds)", msg_type_name(m.type),
               bytes.size(), fds.size());
  return send_packet(socket_fd, bytes, fds);
}

bool send_packet(int socket_fd, const std::vector<uint8_t>& bytes, const std::vector<int>& fds) {
  TANDEM_CHECK(fds.size() <= kMaxFds, ErrorCode::kInternal, "{} fds in one packet", fds.size());
  iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) return false;
    raise(ErrorCode::kRuntime, "sending a {}-byte message failed: {}", bytes.size(),
          std::strerror(errno));
  }
}

Message decode_message(const uint8_t* bytes, size_t size, std::vector<int> fds) {
  try {
    Reader r(bytes, size);
    TANDEM_CHECK(r.get<uint32_t>("magic") == kMagic, ErrorCode::kRuntime,
                 "protocol message has a bad magic");
    Message m;
    uint32_t type = r.get<uint32_t>("type");
    TANDEM_CHECK(type <= static_cast<uint32_t>(MsgType::kShapes), ErrorCode::kRuntime,
                 "malformed protocol message: unknown type {}", type);
    m.type = static_cast<MsgType>(type);
    m.request_id = r.get<uint64_t>("request_id");
    m.shard = r.get<uint32_t>("shard");
    m.in_buffer = r.get<uint64_t>("in_buffer");
    m.out_buffer = r.get<uint64_t>("out_buffer");
    m.compute_ms = r.get<double>("compute_ms");
    // Used for speeds and shares: NaN, infinity or a negative time would poison the splitter.
    TANDEM_CHECK(std::isfinite(m.compute_ms) && m.compute_ms >= 0 && m.compute_ms <= 1e9,
                 ErrorCode::kRuntime, "malformed protocol message: compute_ms is {}", m.compute_ms);
    uint32_t ni = r.get<uint32_t>("input count");
    TANDEM_CHECK(ni <= kMaxTensorsPerMessage, ErrorCode::kRuntime,
                 "malformed protocol message: {} inputs", ni);
    for (uint32_t i = 0; i < ni; ++i) m.inputs.push_back(r.get_desc("input", i));
    uint32_t no = r.get<uint32_t>("output count");
    TANDEM_CHECK(no <= kMaxTensorsPerMessage, ErrorCode::kRuntime,
                 "malformed protocol message: {} outputs", no);
    for (uint32_t i = 0; i < no; ++i) m.outputs.push_back(r.get_desc("output", i));
    m.text = r.get_string();
    const uint32_t code = r.get<uint32_t>("error code");
    TANDEM_CHECK(code <= static_cast<uint32_t>(ErrorCode::kInternal), ErrorCode::kRuntime,
                 "malformed protocol message: error code {}", code);
    m.code = static_cast<ErrorCode>(code);
    uint32_t nf = r.get<uint32_t>("descriptor count");
    TANDEM_CHECK(nf == fds.size(), ErrorCode::kRuntime,
                 "protocol message announces {} descriptors but carries {}", nf, fds.size());
    std::vector<uint64_t> ids;
    for (uint32_t i = 0; i < nf; ++i) ids.push_back(r.get<uint64_t>("descriptor id"));
    TANDEM_CHECK(r.left() == 0, ErrorCode::kRuntime,
                 "malformed protocol message: {} bytes after its end", r.left());
    for (uint32_t i = 0; i < nf; ++i) m.fds.emplace_back(ids[i], fds[i]);
    return m;
  } catch (...) {
    for (int fd : fds) ::close(fd);
    throw;
  }
}

std::optional<Message> recv_message(int socket_fd) {
  static thread_local std::vector<uint8_t> buf(kMaxPacket);
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return std::nullopt;
  if (n < 0) {
    if (errno == ECONNRESET) return std::nullopt;
    raise(ErrorCode::kRuntime, "receiving a message failed: {}", std::strerror(errno));
  }
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
    fds.insert(fds.end(), p, p + count);
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (int fd : fds) ::close(fd);
    raise(ErrorCode::kRuntime, "protocol message truncated");
  }
  return decode_message(buf.data(), static_cast<size_t>(n), std::move(fds));
}

}  // namespace tandem::parallel
