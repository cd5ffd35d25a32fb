// Which build of Tandem this process runs, for keys of what a build writes and a later one reads
// (the conversion cache, runtime/convert.h): a cached .tandem holds the optimiser's output, and
// another build's optimiser may write a different graph, or fused ops it reads differently.
#pragma once

#include <string>

namespace tandem {

// The GNU build ID (the linker's hash of the code) of the binary or shared library this code was
// linked into, in hex; when it has none, the project version and that file's size and
// modification time. Computed once per process.
const std::string& tandem_build_id();

}  // namespace tandem
