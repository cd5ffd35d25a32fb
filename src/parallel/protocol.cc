#include "parallel/protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tandem::parallel {

namespace {

constexpr uint32_t kMagic = 0x544e444d;  // "TNDM"
constexpr size_t kMaxPacket = 1 << 20;
constexpr size_t kMaxFds = 8;

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

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  T get() {
    TANDEM_CHECK(pos_ + sizeof(T) <= n_, ErrorCode::kRuntime, "malformed protocol message");
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    uint64_t len = get<uint64_t>();
    TANDEM_CHECK(pos_ + len <= n_, ErrorCode::kRuntime, "malformed protocol message");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  TensorDesc get_desc() {
    TensorDesc d;
    d.dtype = static_cast<DataType>(get<int32_t>());
    uint32_t rank = get<uint32_t>();
    TANDEM_CHECK(rank <= 64, ErrorCode::kRuntime, "malformed protocol message (rank {})", rank);
    for (uint32_t i = 0; i < rank; ++i) d.shape.push_back(get<int64_t>());
    d.offset = get<uint64_t>();
    return d;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::kError: return "ERROR";
    case MsgType::kPredict: return "PREDICT";
    case MsgType::kReply: return "REPLY";
    case MsgType::kBuildFinish: return "BUILD_FINISH";
    case MsgType::kExit: return "EXIT";
    case MsgType::kShapes: return "SHAPES";
  }
  return "?";
}

bool send_message(int socket_fd, const Message& m) {
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
  w.put<uint32_t>(static_cast<uint32_t>(m.fds.size()));
  for (const auto& [id, fd] : m.fds) w.put<uint64_t>(id);
  TANDEM_CHECK(w.bytes.size() <= kMaxPacket && m.fds.size() <= kMaxFds, ErrorCode::kInternal,
               "protocol message too large ({} bytes, {} fds)", w.bytes.size(), m.fds.size());

  iovec iov{w.bytes.data(), w.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!m.fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * m.fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * m.fds.size());
    int* fds = reinterpret_cast<int*>(CMSG_DATA(c));
    for (size_t i = 0; i < m.fds.size(); ++i) fds[i] = m.fds[i].second;
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) return false;
    raise(ErrorCode::kRuntime, "sending {} failed: {}", msg_type_name(m.type),
          std::strerror(errno));
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
  auto close_fds = [&] {
    for (int fd : fds) ::close(fd);
  };
  try {
    TANDEM_CHECK(!(msg.msg_flags & MSG_TRUNC), ErrorCode::kRuntime, "protocol message truncated");
    Reader r(buf.data(), static_cast<size_t>(n));
    TANDEM_CHECK(r.get<uint32_t>() == kMagic, ErrorCode::kRuntime, "protocol message has a bad magic");
    Message m;
    m.type = static_cast<MsgType>(r.get<uint32_t>());
    m.request_id = r.get<uint64_t>();
    m.shard = r.get<uint32_t>();
    m.in_buffer = r.get<uint64_t>();
    m.out_buffer = r.get<uint64_t>();
    m.compute_ms = r.get<double>();
    uint32_t ni = r.get<uint32_t>();
    TANDEM_CHECK(ni <= 4096, ErrorCode::kRuntime, "malformed protocol message");
    for (uint32_t i = 0; i < ni; ++i) m.inputs.push_back(r.get_desc());
    uint32_t no = r.get<uint32_t>();
    TANDEM_CHECK(no <= 4096, ErrorCode::kRuntime, "malformed protocol message");
    for (uint32_t i = 0; i < no; ++i) m.outputs.push_back(r.get_desc());
    m.text = r.get_string();
    uint32_t nf = r.get<uint32_t>();
    TANDEM_CHECK(nf == fds.size(), ErrorCode::kRuntime,
                 "protocol message announces {} descriptors but carries {}", nf, fds.size());
    for (uint32_t i = 0; i < nf; ++i) m.fds.emplace_back(r.get<uint64_t>(), fds[i]);
    return m;
  } catch (...) {
    close_fds();
    throw;
  }
}

}  // namespace tandem::parallel
