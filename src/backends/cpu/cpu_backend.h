// The fast CPU backend (oneDNN + hand-written loops). Nodes it has no kernel for run on the
// reference backend; a factory may return nullptr to decline a node (an attribute or rank it does
// not handle), which also sends the node to the next backend.
#pragma once

#include "backends/backend.h"

namespace tandem {

const Backend& cpu_backend();

}  // namespace tandem
