#include "runtime/build_id.h"

#include <dlfcn.h>
#include <elf.h>
#include <fmt/format.h>
#include <link.h>
#include <sys/stat.h>

#include <cstring>
#include <string_view>

namespace tandem {

namespace {

struct Search {
  const void* address = nullptr;  // a function of this object
  std::string hex;                // its NT_GNU_BUILD_ID, when found
};

// dl_iterate_phdr callback: in the loaded object whose segments hold `address`, finds the
// NT_GNU_BUILD_ID note.
int find_build_id(dl_phdr_info* info, size_t, void* data) {
  auto* s = static_cast<Search*>(data);
  const auto at = reinterpret_cast<ElfW(Addr)>(s->address);
  bool contains = false;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum && !contains; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const ElfW(Addr) begin = info->dlpi_addr + ph.p_vaddr;
    contains = ph.p_type == PT_LOAD && at >= begin && at < begin + ph.p_memsz;
  }
  if (!contains) return 0;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    // Notes: header, name and descriptor, each padded to 4 bytes.
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, p, sizeof(note));
      const char* name = p + sizeof(note);
      const char* desc = name + ((note.n_namesz + 3) & ~3u);
      const char* next = desc + ((note.n_descsz + 3) & ~3u);
      if (next > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::string_view(name, 3) == "GNU") {
        for (unsigned k = 0; k < note.n_descsz; ++k)
          s->hex += fmt::format("{:02x}", static_cast<unsigned char>(desc[k]));
        return 1;
      }
      p = next;
    }
  }
  return 1;  // the object, without a build ID
}

std::string compute_build_id() {
  Search s;
  s.address = reinterpret_cast<const void*>(&tandem_build_id);
  dl_iterate_phdr(find_build_id, &s);
  if (!s.hex.empty()) return s.hex;
  // No build ID (a linker told not to write one): the file itself stands for the build.
  std::string fallback = fmt::format("v{}", TANDEM_VERSION);
  Dl_info info{};
  struct stat st {};
  if (dladdr(s.address, &info) != 0 && info.dli_fname && ::stat(info.dli_fname, &st) == 0)
    fallback += fmt::format("-{}-{}.{}", st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  return fallback;
}

}  // namespace

const std::string& tandem_build_id() {
  static const std::string id = compute_build_id();
  return id;
}

}  // namespace tandem
